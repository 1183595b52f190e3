// Adaptive average pooling with PyTorch's bins: output cell i of an H-long axis covers
// [floor(i·H/oh), ceil((i+1)·H/oh)). Global average pooling is oh = ow = 1.
// MODE 0: forward.
// MODE 1: gradient (gather form): every input element collects g/|bin| from each bin
//         that contains it.

override MODE: u32 = 0u;

struct Params {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    numel: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<src_t>;
@group(0) @binding(1) var<storage, read_write> out: array<out_t>;
@group(0) @binding(2) var<uniform> p: Params;

fn bin_start(i: u32, len: u32, bins: u32) -> u32 {
    return (i * len) / bins;
}

fn bin_end(i: u32, len: u32, bins: u32) -> u32 {
    return ((i + 1u) * len + bins - 1u) / bins;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    if (MODE == 0u) {
        let ox = idx % p.ow;
        let oy = (idx / p.ow) % p.oh;
        let plane = (idx / (p.ow * p.oh)) * p.h * p.w;
        let y0 = bin_start(oy, p.h, p.oh);
        let y1 = bin_end(oy, p.h, p.oh);
        let x0 = bin_start(ox, p.w, p.ow);
        let x1 = bin_end(ox, p.w, p.ow);
        var s = 0.0;
        for (var y = y0; y < y1; y++) {
            for (var x = x0; x < x1; x++) {
                s += f32(src[plane + y * p.w + x]);
            }
        }
        out[idx] = out_t(s / f32((y1 - y0) * (x1 - x0)));
        return;
    }
    let x = idx % p.w;
    let y = (idx / p.w) % p.h;
    let plane = (idx / (p.w * p.h)) * p.oh * p.ow;
    var acc = 0.0;
    for (var oy = 0u; oy < p.oh; oy++) {
        let y0 = bin_start(oy, p.h, p.oh);
        let y1 = bin_end(oy, p.h, p.oh);
        if (y < y0 || y >= y1) {
            continue;
        }
        for (var ox = 0u; ox < p.ow; ox++) {
            let x0 = bin_start(ox, p.w, p.ow);
            let x1 = bin_end(ox, p.w, p.ow);
            if (x < x0 || x >= x1) {
                continue;
            }
            acc += f32(src[plane + oy * p.ow + ox]) / f32((y1 - y0) * (x1 - x0));
        }
    }
    out[idx] = out_t(acc);
}
