// RSP rule of a residual addition out = a + b: the relevance R (signed) is split in
// proportion to the clamped inputs a' = pos(a) + 1e-9 and b' = pos(b) + 1e-9.

struct Params {
    numel: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> r: array<f32>;
@group(0) @binding(3) var<storage, read_write> r_a: array<f32>;
@group(0) @binding(4) var<storage, read_write> r_b: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    let ap = max(a[idx], 0.0) + 1e-9;
    let bp = max(b[idx], 0.0) + 1e-9;
    let q = r[idx] / (ap + bp);
    r_a[idx] = ap * q;
    r_b[idx] = bp * q;
}
