// Top-k class indices per row, by descending score, ties to the lower index.
// If first[row] names a class (not 0xffffffff) it is placed first and the remaining
// k − 1 slots take the best other classes: this is how RSP's comparative
// initialisation gets "the target plus the top competitors" without a host round-trip.
// A second output holds the explained class of the row (first[row] or the argmax).

struct Params {
    classes: u32,
    k: u32,
    rows: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> scores: array<scores_t>;
@group(0) @binding(1) var<storage, read> first: array<u32>;
@group(0) @binding(2) var<storage, read_write> top: array<u32>;
@group(0) @binding(3) var<storage, read_write> target_class: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

const NONE: u32 = 0xffffffffu;

fn taken(row: u32, filled: u32, c: u32) -> bool {
    for (var j = 0u; j < filled; j++) {
        if (top[row * p.k + j] == c) {
            return true;
        }
    }
    return false;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.classes;
    var filled = 0u;
    let forced = first[row];
    if (forced != NONE) {
        top[row * p.k] = forced;
        filled = 1u;
    }
    while (filled < p.k) {
        var best = NONE;
        var best_v = -3.4e38;
        for (var c = 0u; c < p.classes; c++) {
            let v = f32(scores[base + c]);
            if ((best == NONE || v > best_v) && !taken(row, filled, c)) {
                best = c;
                best_v = v;
            }
        }
        top[row * p.k + filled] = best;
        filled++;
    }
    target_class[row] = top[row * p.k];
}
