// Per-image reductions in two deterministic stages: stage 1 (FINAL = false) has
// `chunks` workgroups per image, each reducing one fixed slice of the image (strided
// partial sums per thread, then a tree) into a partial pair; stage 2 (FINAL = true)
// has one workgroup per image reducing its partial pairs in the same fixed way. The
// order never depends on timing, so results are bit-identical from run to run.
// MODE (`ops::reduce::Reduction` in Rust):
// SUM_AND_COUNT_NONZERO: out[2n] = Σ a[n], out[2n+1] = #{b[n] ≠ 0} (RSP shift
//         statistics; a and b may differ in size: per_image_a and per_image_b elements
//         per image)
// MIN_MAX: out[2n] = min a[n], out[2n+1] = max a[n]     (z^B bounds L and H)
// SUM_AND_ABS_SUM: out[2n] = Σ a[n], out[2n+1] = Σ |a[n]| (RAP's top normalisation)
const SUM_AND_COUNT_NONZERO: u32 = 0u;
const MIN_MAX: u32 = 1u;
const SUM_AND_ABS_SUM: u32 = 2u;

override MODE: u32 = 0u;
override FINAL: bool = false;

struct Params {
    per_image_a: u32,
    per_image_b: u32,
    chunks: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> a: array<a_t>;
@group(0) @binding(1) var<storage, read> b: array<b_t>;
@group(0) @binding(2) var<storage, read_write> out: array<out_t>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red0: array<f32, 256>;
var<workgroup> red1: array<f32, 256>;

fn combine0(x: f32, y: f32) -> f32 {
    if (MODE != MIN_MAX) {
        return x + y;
    }
    return min(x, y);
}

fn combine1(x: f32, y: f32) -> f32 {
    if (MODE != MIN_MAX) {
        return x + y;
    }
    return max(x, y);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var s0 = 0.0;
    var s1 = 0.0;
    if (MODE == MIN_MAX) {
        s0 = 3.0e38;
        s1 = -3.0e38;
    }
    var slot = 0u;
    if (FINAL) {
        let n = wg.x;
        slot = n;
        for (var i = lid; i < p.chunks; i += 256u) {
            s0 = combine0(s0, f32(a[(n * p.chunks + i) * 2u]));
            s1 = combine1(s1, f32(a[(n * p.chunks + i) * 2u + 1u]));
        }
    } else {
        let c = wg.x;
        let n = wg.y;
        slot = n * p.chunks + c;
        let len_a = (p.per_image_a + p.chunks - 1u) / p.chunks;
        let end_a = min(p.per_image_a, (c + 1u) * len_a);
        for (var i = c * len_a + lid; i < end_a; i += 256u) {
            let v = f32(a[n * p.per_image_a + i]);
            s0 = combine0(s0, v);
            if (MODE == MIN_MAX) {
                s1 = max(s1, v);
            } else if (MODE == SUM_AND_ABS_SUM) {
                s1 += abs(v);
            }
        }
        if (MODE == SUM_AND_COUNT_NONZERO) {
            let len_b = (p.per_image_b + p.chunks - 1u) / p.chunks;
            let end_b = min(p.per_image_b, (c + 1u) * len_b);
            for (var i = c * len_b + lid; i < end_b; i += 256u) {
                s1 += select(0.0, 1.0, f32(b[n * p.per_image_b + i]) != 0.0);
            }
        }
    }
    red0[lid] = s0;
    red1[lid] = s1;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            red0[lid] = combine0(red0[lid], red0[lid + stride]);
            red1[lid] = combine1(red1[lid], red1[lid + stride]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[2u * slot] = out_t(red0[0]);
        out[2u * slot + 1u] = out_t(red1[0]);
    }
}
