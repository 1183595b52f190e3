//! The recordings of the variants that need scratch: Winograd's transforms around
//! its 16 GEMMs, the padded operands the subgroup kernel reads (`gemm_pack.wgsl`) and
//! the f16 planes the cooperative-matrix kernel reads (`gemm_planes.wgsl`),
//! with the sizes that decide whether a problem fits them.

use super::op::{GemmOp, GemmProblem};
use super::variants::{GemmKernel, GemmTile, Recording};
use crate::gpu::shaders::Skeleton;
use crate::gpu::{grid_1d, Access, Binding, GpuTensor, Recorder, ShaderRef};

/// The scratch of a Winograd convolution (f32 elements): transformed weights
/// `[sets][16][c_out][c_in]`, transformed input tiles `[images][16][c_in][tiles]` and
/// the GEMMs' products `[z][16][c_out][tiles]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct WinogradSizes {
    /// RSP's sections: weights per problem, two problems per image.
    sections: bool,
    c_in: usize,
    c_out: usize,
    tiles: usize,
    z: usize,
    sets: usize,
    images: usize,
}

impl WinogradSizes {
    /// The sizes for `p` if Winograd applies to it ([`GemmOp::winograd`]).
    pub(super) fn of(p: &GemmProblem) -> Option<WinogradSizes> {
        let (shape, sections) = p.op.winograd(p.splits)?;
        let g = shape.geom;
        let (ho, wo) = g.out_hw(shape.hw.0, shape.hw.1);
        let z = p.mnz.2;
        Some(WinogradSizes {
            sections,
            c_in: g.c_in,
            c_out: g.c_out,
            tiles: ho.div_ceil(2) * wo.div_ceil(2),
            z,
            sets: if sections { z } else { 1 },
            images: if sections { z / 2 } else { z },
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
        name: p.op.shader(),
        skeleton: Skeleton::Winograd,
        unchecked: false,
    };
    let pass = |rec: &mut Recorder, pass: u32, count: usize, items: usize, scratch| {
        let mut constants = p.constants();
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
    let gemm = GemmProblem {
        op: GemmOp::WinogradGemm {
            sections: sizes.sections,
            c_in: sizes.c_in,
        },
        bindings: &gemm_bindings,
        params: p.params,
        mnz: (sizes.c_out, sizes.tiles, 16 * sizes.z),
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
    gemm.record_with(rec, tile, &gemm_bindings, &[]);
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
            kp: p.op.k_bound().next_multiple_of(4),
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

/// The buffers `gemm_planes.wgsl` writes and `gemm_coop.wgsl` reads for one problem,
/// in u32 words (two f16 per word): per operand a header of block scales padded to 4
/// words, the hi planes of every problem, then (split-fp32) the lo planes. A is
/// `[z][mp][kp]` with one scale per 64 rows, B `[z][kp][np]` with one per 64 columns.
#[derive(Clone, Copy, Debug)]
pub(super) struct PlaneSizes {
    z: usize,
    mp: usize,
    kp: usize,
    np: usize,
    planes: usize,
}

/// Rows of A and columns of B per block scale (`SCALE_BLOCK` in the shaders).
const SCALE_BLOCK: usize = 64;

impl PlaneSizes {
    /// The sizes for `p` run by the cooperative-matrix `kernel`: M padded to its tile
    /// rows (128), K to its K step (32), N to its tile columns.
    pub(super) fn of(p: &GemmProblem, kernel: GemmKernel) -> PlaneSizes {
        let (m, n, z) = p.mnz;
        let (rows, cols) = kernel.block;
        PlaneSizes {
            z,
            mp: m.next_multiple_of(rows),
            kp: p.op.k_bound().next_multiple_of(32),
            np: n.next_multiple_of(cols),
            planes: if kernel.split_planes() { 2 } else { 1 },
        }
    }

    fn words(&self, lines: usize, plane: usize) -> usize {
        (self.z * lines / SCALE_BLOCK).next_multiple_of(4) + self.planes * self.z * plane / 2
    }

    pub(super) fn a_words(&self) -> usize {
        self.words(self.mp, self.mp * self.kp)
    }

    pub(super) fn b_words(&self) -> usize {
        self.words(self.np, self.kp * self.np)
    }

    /// The grids of A's two passes (block scales: one workgroup per block; planes:
    /// one invocation per word, 256 per workgroup), then B's.
    pub(super) fn grids(&self) -> [[u32; 3]; 4] {
        let z = self.z as u32;
        [
            [(self.mp / SCALE_BLOCK) as u32, 1, z],
            [(self.kp / 2).div_ceil(256) as u32, self.mp as u32, z],
            [(self.np / SCALE_BLOCK) as u32, 1, z],
            [(self.np / 2).div_ceil(256) as u32, self.kp as u32, z],
        ]
    }
}

/// Records the cooperative-matrix GEMM: A's and B's block scales and f16 planes into
/// scratch ([`record_operand_planes`]), then `kernel` over them.
pub(super) fn record_planes(
    rec: &mut Recorder,
    kernel: GemmKernel,
    p: &GemmProblem,
    bindings: &[Binding],
) {
    let (a, b) = record_operand_planes(rec, kernel, p, bindings);
    p.record_with(
        rec,
        kernel,
        bindings,
        &[Binding::read(&a), Binding::read(&b)],
    );
}

/// Records `gemm_planes.wgsl`'s two passes (block scales, then planes) for A and for
/// B of `p` as the cooperative-matrix `kernel` reads them; returns the two buffers.
pub(crate) fn record_operand_planes(
    rec: &mut Recorder,
    kernel: GemmKernel,
    p: &GemmProblem,
    bindings: &[Binding],
) -> (GpuTensor, GpuTensor) {
    assert_eq!(
        kernel.recording,
        Recording::Planes,
        "{kernel} reads no planes"
    );
    let sizes = PlaneSizes::of(p, kernel);
    let ctx = rec.ctx;
    let a = ctx.empty(&[sizes.a_words()]);
    let b = ctx.empty(&[sizes.b_words()]);
    let shader = ShaderRef {
        name: p.op.shader(),
        skeleton: Skeleton::Planes,
        unchecked: true,
    };
    for (i, grid) in sizes.grids().into_iter().enumerate() {
        let (operand, pack_b) = if i < 2 { (&a, 0.0) } else { (&b, 1.0) };
        let mut constants = p.constants();
        constants.extend([
            ("PACK_B", pack_b),
            ("PASS", (i % 2) as f64),
            ("SPLIT", kernel.split_planes() as u8 as f64),
            ("COL_PAD", kernel.block.1 as f64),
        ]);
        rec.dispatch_with_extra(
            shader,
            &constants,
            bindings,
            p.params,
            &[Binding::write(operand)],
            grid,
        );
    }
    (a, b)
}
