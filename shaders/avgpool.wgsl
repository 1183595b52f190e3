// Average pooling, adaptive or windowed (layers::AvgPool2d). Along each axis output cell
// i averages the input range [start, end) and divides by `count`:
//   adaptive (PyTorch's bins): [floor(i·len/out), ceil((i+1)·len/out)), count = end − start;
//   window: the padded range [i·stride, min(i·stride + kernel, len + 2·pad)) shifted
//   by −pad and clipped to the input; count is the padded length when padded positions
//   count (count_include_pad), else the clipped one.
// A cell divides by the product of its two axes' counts. Global average pooling is the
// adaptive pool to 1 × 1.
// MODE 0: forward.
// MODE 1: gradient (gather form): every input element collects g/count from each cell
//         whose range contains it, in row-major cell order.

override MODE: u32 = 0u;

struct Params {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    numel: u32,
    // 0: adaptive, 1: window.
    window: u32,
    kernel: u32,
    stride: u32,
    pad: u32,
    count_include_pad: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<src_t>;
@group(0) @binding(1) var<storage, read_write> out: array<out_t>;
@group(0) @binding(2) var<uniform> p: Params;

// (start, end, count) of cell i along an axis of `len` inputs and `bins` cells.
fn bin(i: u32, len: u32, bins: u32) -> vec3<u32> {
    if (p.window == 0u) {
        let start = (i * len) / bins;
        let end = ((i + 1u) * len + bins - 1u) / bins;
        return vec3<u32>(start, end, end - start);
    }
    let s = i * p.stride;
    let e = min(s + p.kernel, len + 2u * p.pad);
    let start = min(u32(max(i32(s) - i32(p.pad), 0)), len);
    let end = min(u32(max(i32(e) - i32(p.pad), 0)), len);
    var count = end - start;
    if (p.count_include_pad != 0u) {
        count = e - s;
    }
    return vec3<u32>(start, end, count);
}

// The cells along an axis whose range may contain input position x: all of them for
// adaptive bins, the windows that cover x otherwise.
fn cells_over(x: u32, bins: u32) -> vec2<u32> {
    if (p.window == 0u) {
        return vec2<u32>(0u, bins);
    }
    let t = i32(x + p.pad);
    let lo = max(0, (t - i32(p.kernel) + i32(p.stride)) / i32(p.stride));
    let hi = min(i32(bins), t / i32(p.stride) + 1);
    return vec2<u32>(u32(lo), u32(max(hi, lo)));
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
        let by = bin(oy, p.h, p.oh);
        let bx = bin(ox, p.w, p.ow);
        var s = 0.0;
        for (var y = by.x; y < by.y; y++) {
            for (var x = bx.x; x < bx.y; x++) {
                s += f32(src[plane + y * p.w + x]);
            }
        }
        out[idx] = out_t(s / f32(by.z * bx.z));
        return;
    }
    let x = idx % p.w;
    let y = (idx / p.w) % p.h;
    let plane = (idx / (p.w * p.h)) * p.oh * p.ow;
    let ys = cells_over(y, p.oh);
    let xs = cells_over(x, p.ow);
    var acc = 0.0;
    for (var oy = ys.x; oy < ys.y; oy++) {
        let by = bin(oy, p.h, p.oh);
        if (y < by.x || y >= by.y) {
            continue;
        }
        for (var ox = xs.x; ox < xs.y; ox++) {
            let bx = bin(ox, p.w, p.ow);
            if (x < bx.x || x >= bx.y) {
                continue;
            }
            acc += f32(src[plane + oy * p.ow + ox]) / f32(by.z * bx.z);
        }
    }
    out[idx] = out_t(acc);
}
