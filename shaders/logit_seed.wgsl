// Relevance (or gradient) seeds at the logits, one row per explained class:
// MODE 0 ONE_HOT:          out[r, c] = [c = t]                  (gradient, LRP, Grad-CAM)
// MODE 1 CONTRASTIVE:      out[r, c] = [c = t] − [c ≠ t]/(C − 1) (CLRP: target minus the
//                          dual concept "all other classes" with the same total)
// MODE 2 SOFTMAX_GRADIENT: out[r, c] = ∂softmax_t/∂z_c = y_t([c = t] − y_c) (SGLRP)
// where t = classes[r] and y = scores (the softmax of the logits, MODE 2 only).
// TIMES_LOGIT (MODES 0 and 1): the row is scaled by the target's logit z_t (scores =
// the logits), as LRP starts from the prediction itself.

override MODE: u32 = 0u;
override TIMES_LOGIT: bool = false;

struct Params {
    classes: u32,
    numel: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> class_of_row: array<u32>;
@group(0) @binding(1) var<storage, read> scores: array<scores_t>;
@group(0) @binding(2) var<storage, read_write> out: array<out_t>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    let row = idx / p.classes;
    let t = class_of_row[row];
    let is_target = idx % p.classes == t;
    var v = select(0.0, 1.0, is_target);
    if (MODE == 1u && !is_target) {
        v = -1.0 / f32(max(p.classes, 2u) - 1u);
    }
    if (MODE == 2u) {
        let yt = f32(scores[row * p.classes + t]);
        v = yt * (v - f32(scores[idx]));
    } else if (TIMES_LOGIT) {
        v *= f32(scores[row * p.classes + t]);
    }
    out[idx] = out_t(v);
}
