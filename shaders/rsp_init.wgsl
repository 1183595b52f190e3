// RSP initial relevance at the explanation layer (spec §2), one workgroup per image.
// `grad` holds k gradient rows per image (∂y_class/∂A for the classes chosen by topk,
// target first); `cams` is scratch of the same shape.
// GRAD_CAM: R = cam / (max(cam) + 1e-9), cam = A · mean_hw(g) per channel;
//         if max(cam) ≤ 0 it divides by max|cam| instead.
// COMPARATIVE: relative split of the k max-normalised cams (spec §2b), each
//         normalised like the Grad-CAM one (same fallback).
// Every sum runs in a fixed order, so the result is deterministic.

// MODE (`ops::rsp::InitialRelevance` in Rust).
const GRAD_CAM: u32 = 0u;
const COMPARATIVE: u32 = 1u;

override MODE: u32 = 0u;

struct Params {
    channels: u32,
    hw: u32,
    k: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> act: array<act_t>;
@group(0) @binding(1) var<storage, read> grad: array<grad_t>;
@group(0) @binding(2) var<storage, read_write> cams: array<cams_t>;
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;
@group(0) @binding(4) var<uniform> p: Params;

const EPS: f32 = 1e-9;

var<workgroup> red: array<f32, 256>;

fn reduce_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// cams[row] = act[n] · mean_hw(grad[row]) per channel; returns (max, max|·|) of it.
fn build_cam(n: u32, row: u32, lid: u32) -> vec2<f32> {
    let len = p.channels * p.hw;
    var m = -3.4e38;
    var ma = 0.0;
    for (var c = lid; c < p.channels; c += 256u) {
        var g = 0.0;
        for (var s = 0u; s < p.hw; s++) {
            g += f32(grad[row * len + c * p.hw + s]);
        }
        g = g / f32(p.hw);
        for (var s = 0u; s < p.hw; s++) {
            let v = f32(act[n * len + c * p.hw + s]) * g;
            cams[row * len + c * p.hw + s] = cams_t(v);
            m = max(m, v);
            ma = max(ma, abs(v));
        }
    }
    let r = vec2<f32>(reduce_max(m, lid), reduce_max(ma, lid));
    storageBarrier();
    return r;
}

// max(cam) + 1e-9, or max|cam| where max(cam) ≤ 0 (no positive evidence, where the
// authors' normalisation breaks down); 0 only for an all-zero cam.
fn cam_denominator(stats: vec2<f32>) -> f32 {
    if (stats.x <= 0.0) {
        return stats.y;
    }
    return stats.x + EPS;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wg.x;
    let len = p.channels * p.hw;
    let base = n * len;
    if (MODE == GRAD_CAM) {
        let denom = cam_denominator(build_cam(n, n * p.k, lid));
        for (var e = lid; e < len; e += 256u) {
            var v = 0.0;
            if (denom > 0.0) {
                v = f32(cams[n * p.k * len + e]) / denom;
            }
            out[base + e] = out_t(v);
        }
        return;
    }

    // 1. D = (k − 1)·cam_t − Σ_{c ≠ t} cam_c over max-normalised cams; D goes to row 0.
    let row0 = n * p.k * len;
    for (var j = 0u; j < p.k; j++) {
        let denom = cam_denominator(build_cam(n, n * p.k + j, lid));
        for (var e = lid; e < len; e += 256u) {
            var v = 0.0;
            if (denom > 0.0) {
                v = f32(cams[(n * p.k + j) * len + e]) / denom;
            }
            if (j == 0u) {
                cams[row0 + e] = cams_t(f32(p.k - 1u) * v);
            } else {
                cams[row0 + e] = cams_t(f32(cams[row0 + e]) - v);
            }
        }
        storageBarrier();
    }
    // 2. P = pos(D)/(Σ pos(D) + ε);  N = neg(D)/max neg(D), rescaled to Σ P.
    var sp = 0.0;
    var mn = 0.0;
    for (var e = lid; e < len; e += 256u) {
        let d = f32(cams[row0 + e]);
        sp += max(d, 0.0);
        mn = max(mn, max(-d, 0.0));
    }
    let sum_pos = reduce_sum(sp, lid);
    let max_neg = reduce_max(mn, lid);
    var spn = 0.0;
    var sn = 0.0;
    for (var e = lid; e < len; e += 256u) {
        let d = f32(cams[row0 + e]);
        spn += max(d, 0.0) / (sum_pos + EPS);
        if (max_neg > 0.0) {
            sn += max(-d, 0.0) / max_neg;
        }
    }
    let sum_p = reduce_sum(spn, lid);
    let sum_n = reduce_sum(sn, lid);
    for (var e = lid; e < len; e += 256u) {
        let d = f32(cams[row0 + e]);
        var neg = 0.0;
        if (max_neg > 0.0) {
            neg = max(-d, 0.0) / max_neg / (sum_n + EPS) * sum_p;
        }
        cams[row0 + e] = cams_t(max(d, 0.0) / (sum_pos + EPS) - neg);
    }
    storageBarrier();
    // 3. d = Σ_c D'; target locations d > 0 get mass 2, hostile ones mass −1.
    let drow = row0 + len;
    var st = 0.0;
    var sh = 0.0;
    for (var s = lid; s < p.hw; s += 256u) {
        var d = 0.0;
        for (var c = 0u; c < p.channels; c++) {
            d += f32(cams[row0 + c * p.hw + s]);
        }
        cams[drow + s] = cams_t(d);
        if (d > 0.0) {
            st += d;
        } else {
            sh += d;
        }
    }
    let sum_t = reduce_sum(st, lid);
    let sum_h = reduce_sum(sh, lid);
    storageBarrier();
    // 4. Spread uniformly over channels.
    for (var e = lid; e < len; e += 256u) {
        let d = f32(cams[drow + e % p.hw]);
        var r = 0.0;
        if (d > 0.0) {
            r = d / (sum_t + EPS) * 2.0;
        } else {
            r = -(d / (sum_h + EPS));
        }
        out[base + e] = out_t(r / f32(p.channels));
    }
}
