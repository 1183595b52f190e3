// Relevance rules of a residual addition out = a + b: R is split in proportion to each
// summand's share of the sum.
// MODE 0 RSP:       a' = pos(a) + 1e-9, b' = pos(b) + 1e-9, R_a = R·a'/(a' + b').
// MODE 1 LRP-ε:     R_a = R·a / stab(a + b) with stab(z) = z + EPS·sign(z).
// MODE 2 LRP-α1β0:  R_a = R·pos(a) / (pos(a) + pos(b)), 0 where both are ≤ 0.

override MODE: u32 = 0u;
override EPS: f32 = 0.0;

struct Params {
    numel: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<a_t>;
@group(0) @binding(1) var<storage, read> b: array<b_t>;
@group(0) @binding(2) var<storage, read> r: array<r_t>;
@group(0) @binding(3) var<storage, read_write> r_a: array<r_a_t>;
@group(0) @binding(4) var<storage, read_write> r_b: array<r_b_t>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    var ap = f32(a[idx]);
    var bp = f32(b[idx]);
    if (MODE == 0u) {
        ap = max(ap, 0.0) + 1e-9;
        bp = max(bp, 0.0) + 1e-9;
    } else if (MODE == 2u) {
        ap = max(ap, 0.0);
        bp = max(bp, 0.0);
    }
    var z = ap + bp;
    if (MODE == 1u) {
        z += EPS * sign(z);
    }
    var q = 0.0;
    if (z != 0.0) {
        q = f32(r[idx]) / z;
    }
    r_a[idx] = r_a_t(ap * q);
    r_b[idx] = r_b_t(bp * q);
}
