// Winograd F(2×2, 3×3) transforms for a 3×3, stride-1 convolution op file
// (conv2d_fwd.wgsl in MODE 0 or 1), in three passes around the 16 GEMMs of
// winograd_gemm.wgsl; `p.count` holds the pass's count of weight sets, images or
// problems:
//   PASS 0: U = G·g·Gᵀ for every (weight set, c_out, c_in) from the op's `load_a` (so pos(W),
//           min(W, 0) and RSP's per-problem weights come out as the op defines them);
//   PASS 1: V = Bᵀ·d·B for every (image, c_in, 2×2 output tile) from the op's
//           `load_input` (4×4 input patches, zero padding);
//   PASS 2: Y = Aᵀ·m·A for every (problem, c_out, tile) from the GEMMs' products, each
//           of its (up to) four outputs passed to the op's `store_c`, so bias, ReLU
//           and RSP's safe division are the op's own epilogue.
// Fewer multiplications (16 per 4 outputs and input channel instead of 36) at the
// price of the transforms and a different rounding: the autotuner accepts it within a
// tolerance of the direct kernels, like the matrix-unit variants.

override PASS: u32 = 0u;

@group(0) @binding(6) var<storage, read_write> wino: array<f32>;

fn wino_tiles_x() -> u32 {
    return (p.wo + 1u) / 2u;
}

fn wino_tiles() -> u32 {
    return ((p.ho + 1u) / 2u) * wino_tiles_x();
}

fn weight_transform(i: u32) {
    let per_set = p.c_out * p.c_in;
    let wset = i / per_set;
    if (wset >= p.count) {
        return;
    }
    let o = (i / p.c_in) % p.c_out;
    let c = i % p.c_in;
    var g: array<vec3<f32>, 3>;
    for (var u = 0u; u < 3u; u++) {
        let k = c * 9u + u * 3u;
        g[u] = vec3<f32>(load_a(wset, o, k), load_a(wset, o, k + 1u), load_a(wset, o, k + 2u));
    }
    // G·g (rows), then each row times Gᵀ.
    let q = array<vec3<f32>, 4>(g[0], 0.5 * (g[0] + g[1] + g[2]), 0.5 * (g[0] - g[1] + g[2]), g[2]);
    for (var r = 0u; r < 4u; r++) {
        let v = q[r];
        let row = vec4<f32>(v.x, 0.5 * (v.x + v.y + v.z), 0.5 * (v.x - v.y + v.z), v.z);
        for (var col = 0u; col < 4u; col++) {
            wino[((wset * 16u + r * 4u + col) * p.c_out + o) * p.c_in + c] = row[col];
        }
    }
}

fn input_transform(i: u32) {
    let t_count = wino_tiles();
    let img = i / (p.c_in * t_count);
    if (img >= p.count) {
        return;
    }
    let c = (i / t_count) % p.c_in;
    let t = i % t_count;
    let iy0 = i32(2u * (t / wino_tiles_x())) - i32(p.pad);
    let ix0 = i32(2u * (t % wino_tiles_x())) - i32(p.pad);
    var d: array<vec4<f32>, 4>;
    for (var a = 0; a < 4; a++) {
        d[a] = vec4<f32>(
            load_input(img, c, iy0 + a, ix0),
            load_input(img, c, iy0 + a, ix0 + 1),
            load_input(img, c, iy0 + a, ix0 + 2),
            load_input(img, c, iy0 + a, ix0 + 3),
        );
    }
    // Bᵀ·d (rows), then each row times B.
    let q = array<vec4<f32>, 4>(d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]);
    for (var r = 0u; r < 4u; r++) {
        let v = q[r];
        let row = vec4<f32>(v.x - v.z, v.y + v.z, v.z - v.y, v.y - v.w);
        for (var col = 0u; col < 4u; col++) {
            wino[((img * 16u + r * 4u + col) * p.c_in + c) * t_count + t] = row[col];
        }
    }
}

fn output_transform(i: u32) {
    let t_count = wino_tiles();
    let z = i / (p.c_out * t_count);
    if (z >= p.count) {
        return;
    }
    let o = (i / t_count) % p.c_out;
    let t = i % t_count;
    var m: array<vec4<f32>, 4>;
    for (var r = 0u; r < 4u; r++) {
        var row = vec4<f32>(0.0);
        for (var col = 0u; col < 4u; col++) {
            row[col] = wino[((z * 16u + r * 4u + col) * p.c_out + o) * t_count + t];
        }
        m[r] = row;
    }
    // Aᵀ·m (rows), then each row times A.
    let s = array<vec4<f32>, 2>(m[0] + m[1] + m[2], m[1] - m[2] - m[3]);
    let oy0 = 2u * (t / wino_tiles_x());
    let ox0 = 2u * (t % wino_tiles_x());
    for (var dy = 0u; dy < 2u; dy++) {
        let v = s[dy];
        let y = vec2<f32>(v.x + v.y + v.z, v.y - v.z - v.w);
        for (var dx = 0u; dx < 2u; dx++) {
            let oy = oy0 + dy;
            let ox = ox0 + dx;
            if (oy < p.ho && ox < p.wo) {
                store_c(z, 0u, o, oy * p.wo + ox, y[dx]);
            }
        }
    }
}

// One invocation per item, in the engine's 1-D grid of 256-wide workgroups (`grid_1d`).
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (PASS == 0u) {
        weight_transform(i);
    } else if (PASS == 1u) {
        input_transform(i);
    } else {
        output_transform(i);
    }
}
