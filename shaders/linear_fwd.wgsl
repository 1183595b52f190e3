// Fully connected layer over one row-chunk of the weight (weights larger than a storage
// binding are split by rows), as a GEMM op completed by any GEMM skeleton:
//   C[m, n] = Σ_k W[m, k] · x[n, k],  out[n, row_offset + m] = C[m, n] + b[row_offset + m]
// with M the chunk's rows, N the images and K the input features; one problem (z = 0)
// and no split of K (the bias and ReLU are applied to the whole sum).

// POS_WEIGHTS: x pos(W)^T without bias, the z⁺ of LRP-α1β0; NEG_WEIGHTS: x min(W, 0)^T
// without bias (RAP).

override RELU: bool = false;
override POS_WEIGHTS: bool = false;
override NEG_WEIGHTS: bool = false;

struct LinearParams {
    in_features: u32,
    out_features: u32,
    row_offset: u32,
    rows: u32,
    images: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<x_t>;
@group(0) @binding(1) var<storage, read> w: array<weight_t>;
@group(0) @binding(2) var<storage, read> bias: array<bias_t>;
@group(0) @binding(3) var<storage, read> unused: array<unused_t>;
@group(0) @binding(4) var<storage, read_write> out: array<out_t>;
@group(0) @binding(5) var<uniform> p: LinearParams;

fn gemm_m() -> u32 {
    return p.rows;
}

fn gemm_n() -> u32 {
    return p.images;
}

fn gemm_k() -> u32 {
    return p.in_features;
}

fn gemm_k_splits() -> u32 {
    return 1u;
}

// The direct skeleton's split loads: nothing to hoist but the indices.
struct KTap {
    k: u32,
}

struct Column {
    n: u32,
}

fn k_tap(z: u32, k: u32) -> KTap {
    return KTap(k);
}

fn column(z: u32, n: u32) -> Column {
    return Column(n);
}

fn load_a_at(z: u32, m: u32, kt: KTap) -> f32 {
    let v = f32(w[m * p.in_features + kt.k]);
    if (POS_WEIGHTS) {
        return max(v, 0.0);
    }
    if (NEG_WEIGHTS) {
        return min(v, 0.0);
    }
    return v;
}

fn load_b_at(z: u32, kt: KTap, col: Column) -> f32 {
    return f32(x[col.n * p.in_features + kt.k]);
}

fn load_a(z: u32, m: u32, k: u32) -> f32 {
    return load_a_at(z, m, KTap(k));
}

fn load_b(z: u32, k: u32, n: u32) -> f32 {
    return load_b_at(z, KTap(k), Column(n));
}

fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32) {
    let row = p.row_offset + m;
    var v = acc;
    if (!POS_WEIGHTS && !NEG_WEIGHTS) {
        v += f32(bias[row]);
    }
    if (RELU) {
        v = max(v, 0.0);
    }
    out[n * p.out_features + row] = out_t(v);
}
