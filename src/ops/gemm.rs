//! Kernel variants of the implicit-GEMM family (convolution forward, transposed
//! convolution, weight gradient, in every mode): one op file (`shaders/conv2d_*.wgsl`)
//! completed by one GEMM skeleton, specialised by override constants. A variant says
//! which skeleton, which tile or register-block shape, and whether naga's runtime
//! checks are compiled in; the tiled kernels (the fallback among them: the heuristic
//! tile, checked) run on every adapter, the others only where
//! [`GemmKernel::supported`] says so. The exact variants ([`GemmKernel::exact`]: tiled,
//! direct, subgroup) sum each output element in ascending K order with one fma per k
//! (split-K chunks aligned the same way), so they give the fallback's bits; Winograd
//! and the cooperative-matrix kernels do not and are accepted within
//! [`GemmKernel::tolerance`]. The autotuner (`crate::gpu::tune`) checks either on the
//! device before it trusts a variant.

use std::fmt;
use std::time::Instant;

use wgpu::util::DeviceExt;

use crate::gpu::shaders::Skeleton;
use crate::gpu::tune::Trial;
use crate::gpu::{grid_1d, Access, Autotune, Binding, GpuContext, Precision, Recorder, ShaderRef};

/// Tile shape of the tiled skeleton (`WG_X`/`WG_Y` in `gemm_tiled.wgsl`): a workgroup
/// of `wg_x × wg_y` threads computes a `4·wg_y × 4·wg_x` tile of C (rows M, columns
/// N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTile {
    pub wg_x: u32,
    pub wg_y: u32,
}

impl GemmTile {
    /// 64×64, 256 threads: the most reuse per loaded value, for large problems.
    pub const LARGE: GemmTile = GemmTile { wg_x: 16, wg_y: 16 };
    /// 32×32, 64 threads: four times the workgroups of `LARGE`.
    pub const SMALL: GemmTile = GemmTile { wg_x: 8, wg_y: 8 };
    /// Every shape: 16, 32 or 64 rows × 16, 32 or 64 columns.
    pub const ALL: [GemmTile; 9] = {
        let mut all = [Self::LARGE; 9];
        let sides = [4, 8, 16];
        let mut i = 0;
        while i < 9 {
            all[i] = GemmTile {
                wg_x: sides[i % 3],
                wg_y: sides[i / 3],
            };
            i += 1;
        }
        all
    };

    /// Parses `ROWSxCOLS` (each 16, 32 or 64), e.g. `64x64`.
    pub fn parse(s: &str) -> Option<GemmTile> {
        let (rows, cols) = s.split_once('x')?;
        let side = |v: &str| match v.trim().parse::<u32>().ok()? {
            v @ (16 | 32 | 64) => Some(v / 4),
            _ => None,
        };
        Some(GemmTile {
            wg_y: side(rows)?,
            wg_x: side(cols)?,
        })
    }

    pub fn rows(self) -> usize {
        4 * self.wg_y as usize
    }

    pub fn cols(self) -> usize {
        4 * self.wg_x as usize
    }

    /// Workgroups this tile needs for `problems` GEMMs of `m × n`, each split `splits`
    /// ways along K.
    pub fn workgroups(self, (m, n): (usize, usize), problems: usize, splits: usize) -> usize {
        m.div_ceil(self.rows()) * n.div_ceil(self.cols()) * problems * splits
    }

    /// The tile for `problems` GEMMs of `m × n` split `splits` ways when nothing was
    /// measured: the fewest of 16, 32 or 64 rows that hold M and columns that hold N
    /// (a 64-wide tile over the 16 pixels of a 4×4 map would be three quarters
    /// padding), then 32×32 instead of 64×64 while the 64×64 grid offers fewer than
    /// `fill` workgroups (the adapter's [`GpuContext::fill_workgroups`]).
    pub fn for_problem(
        (m, n): (usize, usize),
        problems: usize,
        splits: usize,
        fill: usize,
    ) -> GemmTile {
        let side = |len: usize| -> u32 {
            match len {
                0..=16 => 4,
                17..=32 => 8,
                _ => 16,
            }
        };
        let tile = GemmTile {
            wg_x: side(n),
            wg_y: side(m),
        };
        if tile == Self::LARGE && tile.workgroups((m, n), problems, splits) < fill {
            return Self::SMALL;
        }
        tile
    }
}

/// Shape of a large-tile variant (`gemm_large.wgsl`): 16×16 threads, each a `tm × tn`
/// register block, so the workgroup owns a `16·tm × 16·tn` tile of C; K tiles of `bk`;
/// staged rows padded by one vec4 where `pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LargeTile {
    pub tm: u32,
    pub tn: u32,
    pub bk: u32,
    pub pad: bool,
}

impl LargeTile {
    /// The family: 128×128, 128×64 and 64×128 tiles with K tiles of 16 and 32 (rows
    /// padded, but for 128×128 with K 32, whose unpadded 32 KiB is what fits the
    /// larger limits).
    pub const ALL: [LargeTile; 6] = [
        LargeTile::new(8, 8, 16, true),
        LargeTile::new(8, 8, 32, false),
        LargeTile::new(8, 4, 16, true),
        LargeTile::new(8, 4, 32, true),
        LargeTile::new(4, 8, 16, true),
        LargeTile::new(4, 8, 32, true),
    ];

    const fn new(tm: u32, tn: u32, bk: u32, pad: bool) -> Self {
        LargeTile { tm, tn, bk, pad }
    }

    pub fn rows(self) -> usize {
        16 * self.tm as usize
    }

    pub fn cols(self) -> usize {
        16 * self.tn as usize
    }

    /// Bytes of workgroup memory: the two staged tiles, `bk` rows each.
    pub fn workgroup_bytes(self) -> u32 {
        let pad = if self.pad { 4 } else { 0 };
        4 * self.bk * ((self.rows() + self.cols()) as u32 + 2 * pad)
    }
}

/// One kernel variant of the GEMM family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    /// `gemm_tiled.wgsl`: tiles of A and B staged through workgroup memory, a 4×4
    /// register block per thread.
    Tiled { tile: GemmTile, unchecked: bool },
    /// `gemm_large.wgsl`: 256 threads with 8×8, 8×4 or 4×8 register blocks on 128-wide
    /// tiles, the next K tile prefetched into registers; offered on GPUs.
    Large(LargeTile),
    /// `gemm_direct.wgsl`: `lanes` invocations per workgroup along N, each computing
    /// `rows` (4 or 8) × 4 outputs from direct loads (no workgroup memory, no
    /// barriers).
    Direct { rows: u32, lanes: u32 },
    /// `gemm_subgroup.wgsl` after two `gemm_pack.wgsl` passes that write A and B as
    /// padded matrices: a workgroup is one 8-lane subgroup computing a 32×32 block
    /// from vec4 loads and subgroup broadcasts (devices with a fixed subgroup size of
    /// 8; scratch of the packed operands). With `packed_a` false only B is packed and
    /// the kernel reads A through the op's loads (for problems whose N spans one or two
    /// blocks, where packing A costs more than it saves).
    Subgroup { packed_a: bool },
    /// `gemm_coop.wgsl`: 64×64 tiles on the matrix units (cooperative matrices of
    /// 16×16 f16 into f32). With `split` each f32 operand is a sum of two scaled f16
    /// parts and three products keep f32 accuracy; without, operands are rounded to
    /// f16 (`Precision::F16`). Not bit-identical to the others: accepted within a
    /// tolerance ([`GemmKernel::exact`]).
    Coop { split: bool },
    /// Winograd F(2×2, 3×3) for 3×3, stride-1 forward convolutions (`conv2d_fwd` in
    /// modes 0 and 1: inference, z⁺ and RSP's relative contributions):
    /// `gemm_winograd.wgsl` transforms the weights and 4×4 input tiles into scratch,
    /// `winograd_gemm.wgsl` runs the 16 GEMMs on the heuristic tile, and the output
    /// transform hands each result to the op's epilogue. 16 instead of 36
    /// multiplications per 2×2 outputs and input channel; not bit-identical.
    Winograd,
    /// Test hook (`ContextOptions::offer_broken_variant`): the 64×64 tiled kernel on
    /// half of its grid, so it is fast and leaves columns unwritten. The autotuner's
    /// correctness check must reject it.
    #[doc(hidden)]
    BrokenForTests,
}

impl GemmKernel {
    /// The kernel [`GemmKernel::BrokenForTests`] runs on half of its grid.
    const BROKEN_BASE: GemmKernel = GemmKernel::Tiled {
        tile: GemmTile::LARGE,
        unchecked: true,
    };

    /// The module this variant runs for op file `op`.
    pub fn shader(&self, op: &'static str) -> ShaderRef {
        match *self {
            GemmKernel::BrokenForTests => Self::BROKEN_BASE.shader(op),
            GemmKernel::Tiled { unchecked, .. } => ShaderRef {
                name: op,
                skeleton: Skeleton::Tiled,
                unchecked,
            },
            GemmKernel::Large(_) => ShaderRef {
                name: op,
                skeleton: Skeleton::Large,
                unchecked: true,
            },
            GemmKernel::Direct { .. } => ShaderRef {
                name: op,
                skeleton: Skeleton::Direct,
                unchecked: true,
            },
            GemmKernel::Subgroup { .. } => ShaderRef {
                name: op,
                skeleton: Skeleton::Subgroup,
                unchecked: true,
            },
            GemmKernel::Coop { .. } => ShaderRef {
                name: op,
                skeleton: Skeleton::Coop,
                unchecked: true,
            },
            GemmKernel::Winograd => ShaderRef {
                name: op,
                skeleton: Skeleton::Winograd,
                unchecked: false,
            },
        }
    }

    /// The skeleton's override constants.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        match *self {
            GemmKernel::BrokenForTests => Self::BROKEN_BASE.constants(),
            GemmKernel::Tiled { tile, .. } => {
                vec![("WG_X", tile.wg_x as f64), ("WG_Y", tile.wg_y as f64)]
            }
            GemmKernel::Large(t) => vec![
                ("TM", t.tm as f64),
                ("TN", t.tn as f64),
                ("BK", t.bk as f64),
                ("PAD4", t.pad as u8 as f64),
            ],
            GemmKernel::Direct { rows, lanes } => {
                vec![("ROWS", rows as f64), ("LANES", lanes as f64)]
            }
            GemmKernel::Subgroup { packed_a } => vec![("PACKED_A", packed_a as u8 as f64)],
            GemmKernel::Coop { split } => vec![("SPLIT", split as u8 as f64)],
            GemmKernel::Winograd => Vec::new(),
        }
    }

    /// Outputs (rows, columns) one workgroup computes.
    pub fn block(&self) -> (usize, usize) {
        match *self {
            GemmKernel::BrokenForTests => Self::BROKEN_BASE.block(),
            GemmKernel::Tiled { tile, .. } => (tile.rows(), tile.cols()),
            GemmKernel::Large(t) => (t.rows(), t.cols()),
            GemmKernel::Direct { rows, lanes } => (rows as usize, 4 * lanes as usize),
            GemmKernel::Subgroup { .. } => (SUBGROUP_BLOCK, SUBGROUP_BLOCK),
            GemmKernel::Coop { .. } => (COOP_BLOCK, COOP_BLOCK),
            // One invocation per output tile of 2×2 pixels (the output transform).
            GemmKernel::Winograd => (1, 4 * WINOGRAD_GROUP),
        }
    }

    /// The dispatch grid for `z` problems of `m × n`, each split `splits` ways.
    pub fn groups(&self, (m, n): (usize, usize), z: usize, splits: usize) -> [u32; 3] {
        let (rows, cols) = self.block();
        let mut x = n.div_ceil(cols) as u32;
        if *self == GemmKernel::BrokenForTests {
            x = x.div_ceil(2);
        }
        [x, m.div_ceil(rows) as u32, (z * splits) as u32]
    }

    /// Whether the adapter can run this variant (workgroup size and memory limits,
    /// features).
    pub fn supported(&self, ctx: &GpuContext) -> bool {
        let (threads, shared) = match *self {
            GemmKernel::BrokenForTests => return Self::BROKEN_BASE.supported(ctx),
            GemmKernel::Subgroup { .. } => return ctx.adapter.fixed_subgroup == Some(8),
            GemmKernel::Tiled { tile, .. } => (
                tile.wg_x * tile.wg_y,
                // Two f32 tiles of 16 × (rows | cols).
                16 * 4 * (tile.rows() + tile.cols()) as u32,
            ),
            GemmKernel::Large(t) => (256, t.workgroup_bytes()),
            GemmKernel::Direct { lanes, .. } => (lanes, 0),
            GemmKernel::Winograd => return true,
            GemmKernel::Coop { .. } => {
                if !ctx.matrix_units {
                    return false;
                }
                // The f32 stage of 64×64 plus hi and lo f16 copies of both operand
                // tiles (64×32 each), and four atomics.
                (128, 4 * 4096 + 4 * 2 * 2048 + 16)
            }
        };
        threads <= ctx.limits.max_compute_invocations_per_workgroup
            && shared <= ctx.limits.max_compute_workgroup_storage_size
    }

    /// Whether the adapter can run this variant on `p`: [`GemmKernel::supported`]; for
    /// the subgroup kernel, packed operands and grids within the limits; for Winograd,
    /// a 3×3 stride-1 forward convolution whose scratch and grid fit.
    pub(crate) fn fits(&self, ctx: &GpuContext, p: &GemmProblem) -> bool {
        if !self.supported(ctx) {
            return false;
        }
        if *self == GemmKernel::Winograd {
            let Some(sizes) = WinogradSizes::of(p) else {
                return false;
            };
            let bytes = 4 * sizes.largest() as u64;
            let dim = ctx.limits.max_compute_workgroups_per_dimension as usize;
            return bytes <= ctx.max_binding
                && bytes <= MAX_PACKED_BYTES
                && grid_1d(sizes.largest()).iter().all(|&g| g as usize <= dim);
        }
        let Some(packed) = PackedSizes::of(*self, p) else {
            return true;
        };
        let dim = ctx.limits.max_compute_workgroups_per_dimension as usize;
        let bytes = 4 * packed.a_len().max(packed.b_len()) as u64;
        let grids = [
            packed.pack_a_groups(),
            packed.pack_b_groups(),
            self.groups((p.mnz.0, p.mnz.1), p.mnz.2, p.splits),
        ];
        bytes <= ctx.max_binding
            && bytes <= MAX_PACKED_BYTES
            && grids.iter().flatten().all(|&g| g as usize <= dim)
    }

    /// Whether the variant gives the same bits as the f32 fallback (every sum in
    /// ascending K order, one fma per k). The others are accepted by the autotuner
    /// only within [`GemmKernel::tolerance`].
    pub fn exact(&self) -> bool {
        !matches!(self, GemmKernel::Coop { .. } | GemmKernel::Winograd)
    }

    /// For an inexact variant, the relative error per output allowed against the f32
    /// fallback on the autotuner's random operands (`rel · (|want| + median |want|)`)
    /// and the fraction of outputs that may exceed it (outputs that are ratios of a
    /// near-cancelling sum, as in RSP's relative contributions, are ill-conditioned
    /// in any arithmetic).
    pub fn tolerance(&self) -> Option<(f32, f64)> {
        match *self {
            // Any change of rounding (Winograd) puts a few near-cancelling sums in a
            // thousand past 1e-4 on random operands; f16-level rounding puts a large
            // share of all outputs there.
            GemmKernel::Coop { split: true } | GemmKernel::Winograd => Some((1e-4, 1e-2)),
            GemmKernel::Coop { split: false } => Some((5e-2, 2e-2)),
            _ => None,
        }
    }

    /// Parses a variant name as [`fmt::Display`] writes it.
    pub fn parse(s: &str) -> Option<GemmKernel> {
        if s == "broken-for-tests" {
            return Some(GemmKernel::BrokenForTests);
        }
        match s {
            "subgroup-32x32" => return Some(GemmKernel::Subgroup { packed_a: true }),
            "subgroup-32x32-packb" => return Some(GemmKernel::Subgroup { packed_a: false }),
            "coop-64x64-split" => return Some(GemmKernel::Coop { split: true }),
            "coop-64x64-f16" => return Some(GemmKernel::Coop { split: false }),
            "winograd-2x2" => return Some(GemmKernel::Winograd),
            _ => {}
        }
        if let Some(t) = LargeTile::ALL
            .iter()
            .find(|t| GemmKernel::Large(**t).to_string() == s)
        {
            return Some(GemmKernel::Large(*t));
        }
        if let Some(rest) = s.strip_prefix("tiled-") {
            let (shape, unchecked) = match rest.strip_suffix("-unchecked") {
                Some(shape) => (shape, true),
                None => (rest, false),
            };
            return Some(GemmKernel::Tiled {
                tile: GemmTile::parse(shape)?,
                unchecked,
            });
        }
        let (rows, lanes) = s.strip_prefix("direct-")?.split_once('x')?;
        let (rows, lanes) = (rows.parse::<u32>().ok()?, lanes.parse::<u32>().ok()?);
        let ok = [4, 8].contains(&rows) && [8, 16, 32, 64].contains(&lanes);
        ok.then_some(GemmKernel::Direct { rows, lanes })
    }
}

impl fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GemmKernel::Tiled { tile, unchecked } => write!(
                f,
                "tiled-{}x{}{}",
                tile.rows(),
                tile.cols(),
                if unchecked { "-unchecked" } else { "" }
            ),
            GemmKernel::Large(t) => write!(f, "large-{}x{}-k{}", t.rows(), t.cols(), t.bk),
            GemmKernel::Direct { rows, lanes } => write!(f, "direct-{rows}x{lanes}"),
            GemmKernel::Subgroup { packed_a } => write!(
                f,
                "subgroup-{SUBGROUP_BLOCK}x{SUBGROUP_BLOCK}{}",
                if packed_a { "" } else { "-packb" }
            ),
            GemmKernel::Coop { split } => write!(
                f,
                "coop-{COOP_BLOCK}x{COOP_BLOCK}-{}",
                if split { "split" } else { "f16" }
            ),
            GemmKernel::Winograd => f.write_str("winograd-2x2"),
            GemmKernel::BrokenForTests => f.write_str("broken-for-tests"),
        }
    }
}

/// Rows and columns of C one subgroup-kernel workgroup computes (gemm_subgroup.wgsl).
const SUBGROUP_BLOCK: usize = 32;

/// Rows and columns of C one cooperative-matrix workgroup computes (gemm_coop.wgsl).
const COOP_BLOCK: usize = 64;

/// Invocations per workgroup of the Winograd transforms (gemm_winograd.wgsl, in
/// [`grid_1d`]'s layout).
const WINOGRAD_GROUP: usize = 256;

/// The scratch of a Winograd convolution (f32 elements): transformed weights
/// `[sets][16][c_out][c_in]`, transformed input tiles `[images][16][c_in][tiles]` and
/// the GEMMs' products `[z][16][c_out][tiles]`.
#[derive(Clone, Copy, Debug)]
struct WinogradSizes {
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
    fn of(p: &GemmProblem) -> Option<WinogradSizes> {
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

    fn largest(&self) -> usize {
        self.u_len().max(self.v_len()).max(self.m_len())
    }
}

/// Records a Winograd convolution: weight and input transforms into scratch, the 16
/// GEMMs per problem on the heuristic tile, and the output transform into the op's
/// epilogue.
fn record_winograd(rec: &mut Recorder, p: &GemmProblem, bindings: &[Binding]) {
    let sizes = WinogradSizes::of(p).expect("winograd fits the problem");
    let ctx = rec.ctx;
    let u = ctx.empty(&[sizes.u_len()]);
    let v = ctx.empty(&[sizes.v_len()]);
    let m = ctx.empty(&[sizes.m_len()]);
    let transforms = GemmKernel::Winograd.shader(p.op);
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
    let tile = GemmKernel::Tiled {
        tile: GemmTile::for_problem(
            (sizes.c_out, sizes.tiles),
            16 * sizes.z,
            1,
            ctx.fill_workgroups,
        ),
        unchecked: true,
    };
    record(rec, tile, &gemm, &gemm_bindings);
    pass(rec, 2, sizes.z, sizes.z * sizes.c_out * sizes.tiles, &m);
}

/// Largest packed operand the subgroup kernel allocates; bigger problems use the
/// other variants (a 224 px batch's first layers would need gigabytes).
const MAX_PACKED_BYTES: u64 = 512 << 20;

/// The padded operand shapes gemm_pack.wgsl writes for one problem: A as
/// `[z][mp][kp]`, B as `[z][kp][np]`.
#[derive(Clone, Copy, Debug)]
struct PackedSizes {
    z: usize,
    mp: usize,
    kp: usize,
    np: usize,
}

impl PackedSizes {
    /// The sizes for `kernel` on `p` (`None` unless it is the subgroup kernel).
    fn of(kernel: GemmKernel, p: &GemmProblem) -> Option<PackedSizes> {
        matches!(kernel, GemmKernel::Subgroup { .. }).then(|| {
            let (m, n, z) = p.mnz;
            PackedSizes {
                z,
                mp: m.next_multiple_of(SUBGROUP_BLOCK),
                kp: p.k_bound.next_multiple_of(4),
                np: n.next_multiple_of(SUBGROUP_BLOCK),
            }
        })
    }

    fn a_len(&self) -> usize {
        self.z * self.mp * self.kp
    }

    fn b_len(&self) -> usize {
        self.z * self.kp * self.np
    }

    /// One invocation per vec4 of a row, 64 per workgroup.
    fn pack_a_groups(&self) -> [u32; 3] {
        [
            (self.kp / 4).div_ceil(64) as u32,
            self.mp as u32,
            self.z as u32,
        ]
    }

    fn pack_b_groups(&self) -> [u32; 3] {
        [
            (self.np / 4).div_ceil(64) as u32,
            self.kp as u32,
            self.z as u32,
        ]
    }
}

/// Every variant the adapter could run for `p`, the fallback first: the heuristic tile
/// with runtime checks, the same tile without them, then on GPUs the unchecked 64×64,
/// 32×32, 64×32 and 32×64 tiles, on CPU devices the direct kernels and the subgroup
/// kernels (where the subgroup size is 8; on lavapipe they won nearly every problem
/// and the tiles none); then Winograd (3×3 stride-1 forward convolutions) and the
/// cooperative-matrix kernel (split-fp32, or plain f16 under `--precision f16`) where
/// they fit. Inexact variants are left out under `--exact-kernels`. The list stays
/// short because each candidate costs a pipeline compilation and a timing when a
/// problem is tuned.
pub(crate) fn candidates(ctx: &GpuContext, p: &GemmProblem) -> Vec<GemmKernel> {
    let (m, n, z) = p.mnz;
    let tile = GemmTile::for_problem((m, n), z, p.splits, ctx.fill_workgroups);
    let cpu = ctx.adapter.device_type == wgpu::DeviceType::Cpu;
    let mut all = vec![
        GemmKernel::Tiled {
            tile,
            unchecked: false,
        },
        GemmKernel::Tiled {
            tile,
            unchecked: true,
        },
    ];
    let wide = GemmTile { wg_x: 16, wg_y: 8 };
    let tall = GemmTile { wg_x: 8, wg_y: 16 };
    if !cpu {
        for t in [GemmTile::LARGE, GemmTile::SMALL, wide, tall] {
            all.push(GemmKernel::Tiled {
                tile: t,
                unchecked: true,
            });
        }
        // Large tiles only where the problem fills at least a few of them.
        for t in LargeTile::ALL {
            if m >= t.rows() / 2 && n >= t.cols() / 2 {
                all.push(GemmKernel::Large(t));
            }
        }
    } else {
        all.push(GemmKernel::Direct { rows: 8, lanes: 8 });
        all.push(GemmKernel::Direct { rows: 8, lanes: 32 });
        all.push(GemmKernel::Subgroup { packed_a: true });
        all.push(GemmKernel::Subgroup { packed_a: false });
    }
    all.push(GemmKernel::Winograd);
    // Matrix units: split-fp32 products keep f32 accuracy; plain f16 operands only
    // where the run asked for half precision.
    all.push(GemmKernel::Coop {
        split: ctx.precision == Precision::F32,
    });
    if ctx.offer_broken_variant {
        all.push(GemmKernel::BrokenForTests);
    }
    let mut out: Vec<GemmKernel> = Vec::new();
    for k in all {
        if k.fits(ctx, p) && !out.contains(&k) && (k.exact() || !ctx.exact_kernels) {
            out.push(k);
        }
    }
    out
}

/// One GEMM dispatch as the op records it, before a variant is chosen.
pub(crate) struct GemmProblem<'a, 'b> {
    pub op: &'static str,
    /// The op's own override constants (mode, kernel size, stride, phase).
    pub constants: &'a [(&'static str, f64)],
    pub bindings: &'a [Binding<'b>],
    pub params: &'a [u32],
    pub mnz: (usize, usize, usize),
    /// At least the op's K (`gemm_k()`), for sizing packed operands.
    pub k_bound: usize,
    /// The op's K exactly (the products each output sums), for the profile's flops.
    pub k_useful: usize,
    pub splits: usize,
}

/// The fallback: the heuristic tile with runtime checks.
fn fallback(ctx: &GpuContext, p: &GemmProblem) -> GemmKernel {
    let (m, n, z) = p.mnz;
    GemmKernel::Tiled {
        tile: GemmTile::for_problem((m, n), z, p.splits, ctx.fill_workgroups),
        unchecked: false,
    }
}

/// Records `kernel` for `p` with the op's `bindings`: one dispatch; for the subgroup
/// kernel the packing passes into scratch and the GEMM over them; for Winograd the
/// transforms, the 16 GEMMs and the output transform ([`record_winograd`]).
pub(crate) fn record(
    rec: &mut Recorder,
    kernel: GemmKernel,
    p: &GemmProblem,
    bindings: &[Binding],
) {
    if kernel == GemmKernel::Winograd {
        record_winograd(rec, p, bindings);
        return;
    }
    let (m, n, z) = p.mnz;
    let mut constants = p.constants.to_vec();
    constants.extend(kernel.constants());
    let groups = kernel.groups((m, n), z, p.splits);
    let Some(packed) = PackedSizes::of(kernel, p) else {
        rec.dispatch(kernel.shader(p.op), &constants, bindings, p.params, groups);
        rec.note_gemm(m, n, p.k_useful, z);
        return;
    };
    let ctx = rec.ctx;
    let packed_a = kernel == GemmKernel::Subgroup { packed_a: true };
    let a = ctx.empty(&[if packed_a { packed.a_len() } else { 0 }]);
    let b = ctx.empty(&[packed.b_len()]);
    let pack = ShaderRef {
        name: p.op,
        skeleton: Skeleton::Pack,
        unchecked: true,
    };
    let mut passes = vec![(&b, 1.0, packed.pack_b_groups())];
    if packed_a {
        passes.insert(0, (&a, 0.0, packed.pack_a_groups()));
    }
    for (operand, pack_b, grid) in passes {
        let mut c = p.constants.to_vec();
        c.push(("PACK_B", pack_b));
        rec.dispatch_with_extra(
            pack,
            &c,
            bindings,
            p.params,
            &[Binding::write(operand)],
            grid,
        );
    }
    rec.dispatch_with_extra(
        kernel.shader(p.op),
        &constants,
        bindings,
        p.params,
        &[Binding::read(&a), Binding::read(&b)],
        groups,
    );
    rec.note_gemm(m, n, p.k_useful, z);
}

/// What a tuned choice is remembered by: the adapter and precision, the op with its
/// constants (mode, kernel size, stride) and binding types, and the problem's sizes
/// anchored to the next power of two, so that problems of similar shape (images of
/// other sizes, `rsp eval --size 0`) share one choice instead of each being timed.
/// Every exact variant gives the same bits on any shape, so sharing only changes
/// speed; the inexact ones were checked on a problem of the same op and mode.
struct TuneKey {
    adapter: String,
    precision: Precision,
    op: &'static str,
    constants: Vec<(&'static str, f64)>,
    /// M, N, K, problems, K splits, each anchored.
    sizes: [usize; 5],
    dtypes: Vec<&'static str>,
}

impl TuneKey {
    fn of(ctx: &GpuContext, p: &GemmProblem) -> TuneKey {
        let (m, n, z) = p.mnz;
        TuneKey {
            adapter: ctx.adapter_key(),
            precision: ctx.precision,
            op: p.op,
            constants: p.constants.to_vec(),
            sizes: [m, n, p.k_bound, z, p.splits].map(usize::next_power_of_two),
            dtypes: p.bindings.iter().map(|b| b.dtype.wgsl()).collect(),
        }
    }
}

impl fmt::Display for TuneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let constants: Vec<String> = self
            .constants
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let [m, n, k, z, splits] = self.sizes;
        write!(
            f,
            "{} | {}{} {} | m~{m} n~{n} k~{k} z~{z} splits~{splits} | {}",
            self.adapter,
            match self.precision {
                Precision::F32 => "",
                Precision::F16 => "precision f16 | ",
            },
            self.op,
            constants.join(" "),
            self.dtypes.join(",")
        )
    }
}

/// The variant to run: the one forced by the context, else the autotuner's choice
/// (measured on first use), else the heuristic tile with runtime checks.
pub(crate) fn select(ctx: &GpuContext, p: &GemmProblem) -> GemmKernel {
    if let Some(k) = ctx.gemm_kernel.as_deref().and_then(GemmKernel::parse) {
        return if k.fits(ctx, p) { k } else { fallback(ctx, p) };
    }
    if ctx.tuner.mode() == Autotune::Off {
        return fallback(ctx, p);
    }
    let cands = candidates(ctx, p);
    let names: Vec<String> = cands.iter().map(|k| k.to_string()).collect();
    let key = TuneKey::of(ctx, p).to_string();
    let mut bench: Option<TrialBench> = None;
    let chosen = ctx.tuner.choose(&key, &names, |name| {
        let kernel = GemmKernel::parse(name).expect("candidate names parse");
        bench
            .get_or_insert_with(|| TrialBench::new(ctx, p))
            .trial(ctx, p, kernel)
    });
    GemmKernel::parse(&chosen).unwrap_or(cands[0])
}

/// Whether a candidate's output `got` (f32 bit patterns) agrees with the fallback's
/// `want`: bit for bit, or for an inexact variant within `tolerance` (see
/// [`GemmKernel::tolerance`]); non-finite outputs must match in kind.
fn agrees(want: &[u32], got: &[u32], tolerance: Option<(f32, f64)>) -> Result<(), String> {
    let pairs = want
        .iter()
        .zip(got)
        .map(|(a, b)| (f32::from_bits(*a), f32::from_bits(*b)));
    let Some((rel, fraction)) = tolerance else {
        let bad = pairs
            .filter(|(a, b)| !(a == b || (a.is_nan() && b.is_nan())))
            .count();
        return match bad {
            0 => Ok(()),
            _ => Err(format!(
                "{bad} of {} outputs differ from the fallback's",
                want.len()
            )),
        };
    };
    let mut mags: Vec<f32> = want
        .iter()
        .map(|a| f32::from_bits(*a).abs())
        .filter(|a| a.is_finite())
        .collect();
    let median = if mags.is_empty() {
        0.0
    } else {
        let mid = mags.len() / 2;
        *mags.select_nth_unstable_by(mid, f32::total_cmp).1
    };
    let mut far = 0usize;
    for (a, b) in pairs {
        if !a.is_finite() || !b.is_finite() {
            let same_kind = (a.is_nan() && b.is_nan()) || a == b;
            if !same_kind {
                return Err(format!("output {b} where the fallback has {a}"));
            }
        } else if (a - b).abs() > rel * (a.abs() + median) {
            far += 1;
        }
    }
    if far as f64 > fraction * want.len() as f64 {
        return Err(format!(
            "{far} of {} outputs differ from the fallback's by more than {rel} relative",
            want.len()
        ));
    }
    Ok(())
}

/// Buffers shaped like a problem's bindings, filled with fixed pseudo-random values,
/// on which candidates are timed and compared (the real inputs may not exist yet: they
/// are outputs of commands recorded but not submitted).
struct TrialBench {
    buffers: Vec<wgpu::Buffer>,
    /// The binding the kernel writes, its length in 32-bit words and its element type.
    out: usize,
    out_words: usize,
    out_dtype: crate::gpu::DType,
    /// The first candidate's (the fallback's) output.
    reference: Option<Vec<u32>>,
    /// The fastest median timed so far (ms).
    best: Option<f64>,
}

impl TrialBench {
    fn new(ctx: &GpuContext, p: &GemmProblem) -> Self {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut out = 0;
        let buffers = p
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let words = (b.size / 4) as usize;
                let contents: Vec<u8> = if b.access == Access::ReadWrite {
                    out = i;
                    vec![0; b.size as usize]
                } else if b.dtype == crate::gpu::DType::F16 {
                    let halves: Vec<half::f16> = (0..2 * words)
                        .map(|_| half::f16::from_f32(next()))
                        .collect();
                    bytemuck::cast_slice(&halves).to_vec()
                } else {
                    let v: Vec<f32> = (0..words).map(|_| next()).collect();
                    bytemuck::cast_slice(&v).to_vec()
                };
                ctx.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("rsp autotune"),
                        contents: &contents,
                        usage: wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_SRC
                            | wgpu::BufferUsages::COPY_DST,
                    })
            })
            .collect();
        TrialBench {
            buffers,
            out,
            out_words: (p.bindings[out].size / 4) as usize,
            out_dtype: p.bindings[out].dtype,
            reference: None,
            best: None,
        }
    }

    /// Records `reps` dispatches of `kernel`, submits them and waits.
    fn run(&self, ctx: &GpuContext, p: &GemmProblem, kernel: GemmKernel, reps: usize) -> f64 {
        let bindings: Vec<Binding> = p
            .bindings
            .iter()
            .zip(&self.buffers)
            .map(|(b, buffer)| Binding { buffer, ..*b })
            .collect();
        let mut rec = Recorder::detached(ctx);
        for _ in 0..reps {
            record(&mut rec, kernel, p, &bindings);
        }
        let t = Instant::now();
        rec.submit();
        let _ = ctx.synchronize();
        t.elapsed().as_secs_f64() * 1e3
    }

    /// Checks `kernel` against the reference output, then times it: the median of
    /// three submissions, each of enough dispatches to take about 5 ms.
    fn trial(&mut self, ctx: &GpuContext, p: &GemmProblem, kernel: GemmKernel) -> Trial {
        let out = &self.buffers[self.out];
        ctx.queue
            .write_buffer(out, 0, &vec![0u8; self.out_words * 4]);
        // Compiles the pipeline and warms caches; its output is checked. A variant the
        // driver cannot build or run (the experimental cooperative matrices most of
        // all) is rejected here instead of ending the process.
        let internal = ctx.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let validation = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.run(ctx, p, kernel, 1);
        let errors = [
            pollster::block_on(validation.pop()),
            pollster::block_on(internal.pop()),
        ];
        if let Some(e) = errors.into_iter().flatten().next() {
            return Trial::Rejected(format!("the device refused it: {e}"));
        }
        let got = match ctx.read_raw(out, self.out_words) {
            Ok(v) => as_f32_bits(v, self.out_dtype),
            Err(e) => return Trial::Rejected(format!("readback failed: {e:#}")),
        };
        match &self.reference {
            None => self.reference = Some(got),
            Some(want) => {
                if let Err(why) = agrees(want, &got, kernel.tolerance()) {
                    return Trial::Rejected(why);
                }
            }
        }
        let once = self.run(ctx, p, kernel, 1).max(1e-3);
        // A candidate three times slower than the best in one run cannot win; timing
        // it properly would only lengthen tuning (slow kernels cost the most).
        if self.best.is_some_and(|best| once > 3.0 * best) {
            return Trial::Timed(once);
        }
        let reps = ((5.0 / once).ceil() as usize).clamp(1, 64);
        let mut times: Vec<f64> = (0..3)
            .map(|_| self.run(ctx, p, kernel, reps) / reps as f64)
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[1];
        self.best = Some(self.best.map_or(median, |b| b.min(median)));
        Trial::Timed(median)
    }
}

/// The outputs in `words` (stored as `dtype`) as f32 bit patterns, for [`agrees`].
fn as_f32_bits(words: Vec<u32>, dtype: crate::gpu::DType) -> Vec<u32> {
    match dtype {
        crate::gpu::DType::F32 => words,
        crate::gpu::DType::F16 => bytemuck::cast_slice::<u32, half::f16>(&words)
            .iter()
            .map(|h| h.to_f32().to_bits())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_outputs_are_compared_as_values() {
        let halves = [1.0f32, -2.5, 0.0, 65504.0].map(half::f16::from_f32);
        let words = bytemuck::cast_slice::<half::f16, u32>(&halves).to_vec();
        let f32_bits = as_f32_bits(words, crate::gpu::DType::F16);
        assert_eq!(f32_bits, bits(&[1.0, -2.5, 0.0, 65504.0]));
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn exact_variants_must_match_bit_for_bit() {
        let want = bits(&[1.0, -2.0, f32::NAN, 0.5]);
        assert!(agrees(&want, &want, None).is_ok());
        let off = bits(&[1.0, -2.0, f32::NAN, 0.5 + f32::EPSILON]);
        let err = agrees(&want, &off, None).unwrap_err();
        assert!(err.contains("1 of 4"), "{err}");
    }

    #[test]
    fn inexact_variants_are_judged_by_tolerance_and_fraction() {
        let tol = GemmKernel::Coop { split: true }.tolerance();
        assert!(tol.is_some() && GemmKernel::Coop { split: false }.tolerance().is_some());
        assert!(GemmKernel::Tiled {
            tile: GemmTile::LARGE,
            unchecked: true
        }
        .tolerance()
        .is_none());
        let want: Vec<f32> = (0..4000).map(|i| (i as f32 * 0.37).sin()).collect();
        // Relative noise of 1e-6: accepted.
        let close: Vec<f32> = want.iter().map(|v| v * (1.0 + 1e-6)).collect();
        assert!(agrees(&bits(&want), &bits(&close), tol).is_ok());
        // Two ill-conditioned outputs far off (0.05% of 4000): within the fraction.
        let mut two = close.clone();
        two[10] = 100.0;
        two[20] = -3.0;
        assert!(agrees(&bits(&want), &bits(&two), tol).is_ok());
        // Columns shifted by one (a layout bug): nearly every output is off.
        let mut shifted = want.clone();
        shifted.rotate_left(1);
        let err = agrees(&bits(&want), &bits(&shifted), tol).unwrap_err();
        assert!(err.contains("by more than"), "{err}");
        // A NaN where the fallback is finite is never tolerated.
        let mut nan = close;
        nan[5] = f32::NAN;
        assert!(agrees(&bits(&want), &bits(&nan), tol).is_err());
    }
}
