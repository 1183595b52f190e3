// Bilinear resize of maps [N, h, w] → [N, H, W] with half-pixel centres (torch's
// interpolate(mode='bilinear', align_corners=False)): source coordinate
// (dst + 0.5)·(in/out) − 0.5, clamped at 0, neighbours clamped at the last row/column.

struct Params {
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    numel: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<src_t>;
@group(0) @binding(1) var<storage, read_write> out: array<out_t>;
@group(0) @binding(2) var<uniform> p: Params;

fn source_index(dst: u32, in_len: u32, out_len: u32) -> vec3<f32> {
    let pos = max((f32(dst) + 0.5) * f32(in_len) / f32(out_len) - 0.5, 0.0);
    let i0 = min(u32(floor(pos)), in_len - 1u);
    let i1 = min(i0 + 1u, in_len - 1u);
    return vec3<f32>(f32(i0), f32(i1), pos - f32(i0));
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    let plane = p.out_h * p.out_w;
    let n = idx / plane;
    let y = (idx % plane) / p.out_w;
    let x = idx % p.out_w;
    let sy = source_index(y, p.in_h, p.out_h);
    let sx = source_index(x, p.in_w, p.out_w);
    let base = n * p.in_h * p.in_w;
    let r0 = base + u32(sy.x) * p.in_w;
    let r1 = base + u32(sy.y) * p.in_w;
    let top = mix(f32(src[r0 + u32(sx.x)]), f32(src[r0 + u32(sx.y)]), sx.z);
    let bottom = mix(f32(src[r1 + u32(sx.x)]), f32(src[r1 + u32(sx.y)]), sx.z);
    out[idx] = out_t(mix(top, bottom, sy.z));
}
