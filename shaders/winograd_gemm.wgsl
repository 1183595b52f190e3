// The 16 element-wise products of a Winograd F(2×2, 3×3) convolution as GEMMs
// (completed by any GEMM skeleton): problem zz = 16·z + ξ multiplies U[ξ]
// (C_out × C_in: the transformed 3×3 kernels, per z in RSP's MODE 1, where every z has
// its own weights) by V[ξ] (C_in × tiles: the transformed 4×4 input tiles of z's
// image) into M[zz]. gemm_winograd.wgsl writes U and V and turns M into the output.
// Bindings 2 and 3 are unused; they keep the uniform at binding 5 as in every
// convolution op.

override PER_Z_WEIGHTS: bool = false;
override Z_PER_IMAGE: u32 = 1u;

@group(0) @binding(0) var<storage, read> u_t: array<f32>;
@group(0) @binding(1) var<storage, read> v_t: array<f32>;
@group(0) @binding(2) var<storage, read> unused_2: array<f32>;
@group(0) @binding(3) var<storage, read> unused_3: array<f32>;
@group(0) @binding(4) var<storage, read_write> m_t: array<f32>;

fn tiles() -> u32 {
    return ((p.ho + 1u) / 2u) * ((p.wo + 1u) / 2u);
}

fn gemm_m() -> u32 {
    return p.c_out;
}

fn gemm_n() -> u32 {
    return tiles();
}

fn gemm_k() -> u32 {
    return p.c_in;
}

// What a k and a column share across rows and columns (the direct skeleton hoists
// them): here just the indices.
struct KTap {
    k: u32,
}

struct Column {
    n: u32,
}

fn k_tap(zz: u32, k: u32) -> KTap {
    return KTap(k);
}

fn column(zz: u32, n: u32) -> Column {
    return Column(n);
}

fn load_a_at(zz: u32, m: u32, kt: KTap) -> f32 {
    var wset = 0u;
    if (PER_Z_WEIGHTS) {
        wset = zz / 16u;
    }
    return u_t[((wset * 16u + zz % 16u) * p.c_out + m) * p.c_in + kt.k];
}

fn load_b_at(zz: u32, kt: KTap, col: Column) -> f32 {
    let img = zz / 16u / Z_PER_IMAGE;
    return v_t[((img * 16u + zz % 16u) * p.c_in + kt.k) * tiles() + col.n];
}

fn load_a(zz: u32, m: u32, k: u32) -> f32 {
    return load_a_at(zz, m, KTap(k));
}

fn load_b(zz: u32, k: u32, n: u32) -> f32 {
    return load_b_at(zz, KTap(k), Column(n));
}

fn store_c(zz: u32, split: u32, m: u32, n: u32, acc: f32) {
    m_t[(zz * p.c_out + m) * tiles() + n] = acc;
}
