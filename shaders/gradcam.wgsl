// Grad-CAM (Selvaraju et al. 2017, eq. 1–2) at the explanation layer A [N, C, h, w]:
// MODE 0 WEIGHTS: alpha[n, c] = mean over pixels of ∂y/∂A[n, c]   (one thread per (n, c))
// MODE 1 MAP:     cam[n, p] = ReLU(Σ_c alpha[n, c] · A[n, c, p])     (one thread per (n, p))
// Both loops run in a fixed order, so the map is deterministic.

override MODE: u32 = 0u;

struct Params {
    channels: u32,
    hw: u32,
    numel: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> act: array<act_t>;
@group(0) @binding(1) var<storage, read> src: array<src_t>;
@group(0) @binding(2) var<storage, read_write> out: array<out_t>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    var s = 0.0;
    if (MODE == 0u) {
        for (var j = 0u; j < p.hw; j++) {
            s += f32(src[idx * p.hw + j]);
        }
        out[idx] = out_t(s / f32(p.hw));
        return;
    }
    let n = idx / p.hw;
    let pix = idx % p.hw;
    for (var c = 0u; c < p.channels; c++) {
        s = fma(f32(src[n * p.channels + c]), f32(act[(n * p.channels + c) * p.hw + pix]), s);
    }
    out[idx] = out_t(max(s, 0.0));
}
