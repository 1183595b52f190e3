//! The recordings of the variants that need scratch: Winograd's transforms around
//! its 16 GEMMs, and the padded operands the subgroup kernel reads (`gemm_pack.wgsl`),
//! with the sizes that decide whether a problem fits them.

use super::variants::{GemmKernel, GemmTile};
use super::{record, GemmProblem};
use crate::gpu::shaders::Skeleton;
use crate::gpu::{grid_1d, Access, Binding, Recorder, ShaderRef};

/// The scratch of a Winograd convolution (f32 elements): transformed weights
/// `[sets][16][c_out][c_in]`, transformed input tiles `[images][16][c_in][tiles]` and
/// the GEMMs' products `[z][16][c_out][tiles]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct WinogradSizes {
    mode: u32,
    c_in: usize,
    c_out: usize,
    tiles: usize,
    z: usize,
    sets: usize,
    images: usize,
}

impl WinogradSizes {
    /// The sizes for `p` if Winograd applies to it: `conv2d_fwd` in mode 0 or 1
    /// (mode 2 stacks three weight copies on K), a 3×3 kernel, stride 1, no split-K.
    pub(super) fn of(p: &GemmProblem) -> Option<WinogradSizes> {
        let constant = |name: &str| {
            p.constants
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
        };
        let mode = constant("MODE").unwrap_or(0.0);
        let applies = p.op == "conv2d_fwd"
            && (mode == 0.0 || mode == 1.0)
            && constant("KH") == Some(3.0)
            && constant("KW") == Some(3.0)
            && constant("STRIDE") == Some(1.0)
            && p.splits == 1
            && p.params.len() == 12;
        if !applies {
            return None;
        }
        let (c_in, c_out, ho, wo) = (
            p.params[0] as usize,
            p.params[3] as usize,
            p.params[4] as usize,
            p.params[5] as usize,
        );
        let z = p.mnz.2;
        let mode = mode as u32;
        Some(WinogradSizes {
            mode,
            c_in,
            c_out,
            tiles: ho.div_ceil(2) * wo.div_ceil(2),
            z,
            sets: if mode == 1 { z } else { 1 },
            images: if mode == 1 { z / 2 } else { z },
        })
    }

    fn u_len(&self) -> usize {
        16 * self.sets * self.c_out * self.c_in
    }

    fn v_len(&self) -> usize {
        16 * self.images * self.c_in * self.tiles
    }

    fn m_len(&self) -> usize {
        16 * self.z * self.c_out * self.tiles
    }

    pub(super) fn largest(&self) -> usize {
        self.u_len().max(self.v_len()).max(self.m_len())
    }
}

/// Records a Winograd convolution: weight and input transforms into scratch, the 16
/// GEMMs per problem on the heuristic tile, and the output transform into the op's
/// epilogue.
pub(super) fn record_winograd(rec: &mut Recorder, p: &GemmProblem, bindings: &[Binding]) {
    let sizes = WinogradSizes::of(p).expect("winograd fits the problem");
    let ctx = rec.ctx;
    let u = ctx.empty(&[sizes.u_len()]);
    let v = ctx.empty(&[sizes.v_len()]);
    let m = ctx.empty(&[sizes.m_len()]);
    let transforms = ShaderRef {
        name: p.op,
        skeleton: Skeleton::Winograd,
        unchecked: false,
    };
    let pass = |rec: &mut Recorder, pass: u32, count: usize, items: usize, scratch| {
        let mut constants = p.constants.to_vec();
        constants.push(("PASS", pass as f64));
        let mut params = p.params.to_vec();
        params[11] = count as u32;
        rec.dispatch_with_extra(
            transforms,
            &constants,
            bindings,
            &params,
            &[Binding::write(scratch)],
            grid_1d(items),
        );
    };
    pass(
        rec,
        0,
        sizes.sets,
        sizes.sets * sizes.c_out * sizes.c_in,
        &u,
    );
    pass(
        rec,
        1,
        sizes.images,
        sizes.images * sizes.c_in * sizes.tiles,
        &v,
    );
    let placeholder = Binding::raw(&ctx.placeholder, Access::Read);
    let gemm_bindings = [
        Binding::read(&u),
        Binding::read(&v),
        placeholder,
        placeholder,
        Binding::write(&m),
    ];
    let gemm_constants = [
        ("PER_Z_WEIGHTS", (sizes.mode == 1) as u8 as f64),
        ("Z_PER_IMAGE", if sizes.mode == 1 { 2.0 } else { 1.0 }),
    ];
    let gemm = GemmProblem {
        op: "winograd_gemm",
        constants: &gemm_constants,
        bindings: &gemm_bindings,
        params: p.params,
        mnz: (sizes.c_out, sizes.tiles, 16 * sizes.z),
        k_bound: sizes.c_in,
        k_useful: sizes.c_in,
        splits: 1,
    };
    let tile = GemmKernel::tiled(
        GemmTile::for_problem(
            (sizes.c_out, sizes.tiles),
            16 * sizes.z,
            1,
            ctx.fill_workgroups,
        ),
        true,
    );
    record(rec, tile, &gemm, &gemm_bindings);
    pass(rec, 2, sizes.z, sizes.z * sizes.c_out * sizes.tiles, &m);
}

/// Largest packed operand the subgroup kernel allocates; bigger problems use the
/// other variants (a 224 px batch's first layers would need gigabytes).
pub(super) const MAX_PACKED_BYTES: u64 = 512 << 20;

/// The padded operand shapes gemm_pack.wgsl writes for one problem: A as
/// `[z][mp][kp]`, B as `[z][kp][np]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct PackedSizes {
    z: usize,
    mp: usize,
    kp: usize,
    np: usize,
}

impl PackedSizes {
    /// The sizes for `p` packed for a kernel computing `block`s of C.
    pub(super) fn of(p: &GemmProblem, (rows, cols): (usize, usize)) -> PackedSizes {
        let (m, n, z) = p.mnz;
        PackedSizes {
            z,
            mp: m.next_multiple_of(rows),
            kp: p.k_bound.next_multiple_of(4),
            np: n.next_multiple_of(cols),
        }
    }

    pub(super) fn a_len(&self) -> usize {
        self.z * self.mp * self.kp
    }

    pub(super) fn b_len(&self) -> usize {
        self.z * self.kp * self.np
    }

    /// One invocation per vec4 of a row, 64 per workgroup.
    pub(super) fn pack_a_groups(&self) -> [u32; 3] {
        [
            (self.kp / 4).div_ceil(64) as u32,
            self.mp as u32,
            self.z as u32,
        ]
    }

    pub(super) fn pack_b_groups(&self) -> [u32; 3] {
        [
            (self.np / 4).div_ceil(64) as u32,
            self.kp as u32,
            self.z as u32,
        ]
    }
}
