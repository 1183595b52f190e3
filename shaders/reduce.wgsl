// Per-image reductions, one workgroup per image, in a fixed order (strided partial sums
// per thread, then a tree), so results are bit-identical from run to run.
// MODE 0: out[2n] = Σ a[n], out[2n+1] = #{b[n] ≠ 0}   (RSP shift statistics; a and b
//         may differ in size: per_image_a and per_image_b elements per image)
// MODE 1: out[2n] = min a[n], out[2n+1] = max a[n]     (z^B bounds L and H)

override MODE: u32 = 0u;

struct Params {
    per_image_a: u32,
    per_image_b: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red0: array<f32, 256>;
var<workgroup> red1: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wg.x;
    var s0 = 0.0;
    var s1 = 0.0;
    if (MODE == 1u) {
        s0 = 3.0e38;
        s1 = -3.0e38;
    }
    for (var i = lid; i < p.per_image_a; i += 256u) {
        let v = a[n * p.per_image_a + i];
        if (MODE == 0u) {
            s0 += v;
        } else {
            s0 = min(s0, v);
            s1 = max(s1, v);
        }
    }
    if (MODE == 0u) {
        for (var i = lid; i < p.per_image_b; i += 256u) {
            s1 += select(0.0, 1.0, b[n * p.per_image_b + i] != 0.0);
        }
    }
    red0[lid] = s0;
    red1[lid] = s1;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            if (MODE == 0u) {
                red0[lid] += red0[lid + stride];
                red1[lid] += red1[lid + stride];
            } else {
                red0[lid] = min(red0[lid], red0[lid + stride]);
                red1[lid] = max(red1[lid], red1[lid + stride]);
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[2u * n] = red0[0];
        out[2u * n + 1u] = red1[0];
    }
}
