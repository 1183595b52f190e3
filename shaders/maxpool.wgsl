// Max pooling. The window maximum is the first strictly greatest element in row-major
// window order; padding never wins.
// MODE 0: forward, out[row, c, oy, ox] = max of the window.
// MODE 1: routing (gather form, deterministic): every input element receives the r of
//         each output whose window maximum of (x + eps) it is. eps = 0 gives the
//         gradient; eps = 1e-9 the RSP winner-take-all rule. r may hold several rows per
//         image (`rows_per_image`), e.g. gradient seeds of several classes.

override MODE: u32 = 0u;

struct Params {
    channels: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    kernel: u32,
    stride: u32,
    pad: u32,
    rows_per_image: u32,
    numel: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<x_t>;
@group(0) @binding(1) var<storage, read> r: array<r_t>;
@group(0) @binding(2) var<storage, read_write> out: array<out_t>;
@group(0) @binding(3) var<uniform> p: Params;

// Flat input index (within one image plane) of the window maximum of output (oy, ox).
fn window_argmax(plane: u32, oy: u32, ox: u32) -> u32 {
    var best = -3.4e38;
    var best_at = 0u;
    var found = false;
    for (var u = 0u; u < p.kernel; u++) {
        let iy = i32(oy * p.stride + u) - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) {
            continue;
        }
        for (var v = 0u; v < p.kernel; v++) {
            let ix = i32(ox * p.stride + v) - i32(p.pad);
            if (ix < 0 || ix >= i32(p.w)) {
                continue;
            }
            let at = u32(iy) * p.w + u32(ix);
            let val = f32(x[plane + at]) + p.eps;
            if (!found || val > best) {
                best = val;
                best_at = at;
                found = true;
            }
        }
    }
    return best_at;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    if (MODE == 0u) {
        let ox = idx % p.wo;
        let oy = (idx / p.wo) % p.ho;
        let plane_id = idx / (p.wo * p.ho);
        let plane = plane_id * p.h * p.w;
        out[idx] = out_t(f32(x[plane + window_argmax(plane, oy, ox)]));
        return;
    }
    let ix = idx % p.w;
    let iy = (idx / p.w) % p.h;
    let c = (idx / (p.w * p.h)) % p.channels;
    let row = idx / (p.w * p.h * p.channels);
    let plane = ((row / p.rows_per_image) * p.channels + c) * p.h * p.w;
    let rplane = (row * p.channels + c) * p.ho * p.wo;
    let at = iy * p.w + ix;
    // Outputs whose window covers (iy, ix): oy·stride − pad ≤ iy ≤ oy·stride − pad + k − 1.
    let ty = i32(iy + p.pad);
    let tx = i32(ix + p.pad);
    let oy_lo = max(0, (ty - i32(p.kernel) + i32(p.stride)) / i32(p.stride));
    let ox_lo = max(0, (tx - i32(p.kernel) + i32(p.stride)) / i32(p.stride));
    let oy_hi = min(i32(p.ho) - 1, ty / i32(p.stride));
    let ox_hi = min(i32(p.wo) - 1, tx / i32(p.stride));
    var acc = 0.0;
    for (var oy = oy_lo; oy <= oy_hi; oy++) {
        for (var ox = ox_lo; ox <= ox_hi; ox++) {
            if (window_argmax(plane, u32(oy), u32(ox)) == at) {
                acc += f32(r[rplane + u32(oy) * p.wo + u32(ox)]);
            }
        }
    }
    out[idx] = out_t(acc);
}
