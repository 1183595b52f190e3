//! The registry of GEMM kernel variants: one table, [`VARIANTS`], one entry per
//! variant with everything the scheduler and the autotuner know about it — its name,
//! skeleton and override constants, the block of C one workgroup computes, what it
//! asks of the adapter, where it is offered, how it is recorded and whether it gives
//! the fallback's bits. Parsing a name, the candidate list of a problem, the cache's
//! record of which variants are inexact and the tests' lists of variants all read this
//! table; adding a variant is one entry here plus its skeleton file
//! (`shaders/gemm_*.wgsl`) and its forced-variant test.

use std::fmt;

use crate::gpu::shaders::Skeleton;
use crate::gpu::{GpuContext, Precision, ShaderRef};

/// Tile shape of the tiled skeleton (`WG_X`/`WG_Y` in `gemm_tiled.wgsl`): a workgroup
/// of `wg_x × wg_y` threads computes a `4·wg_y × 4·wg_x` tile of C (rows M, columns
/// N). The fallback is the tiled kernel on the tile [`GemmTile::for_problem`] picks.
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

/// What a variant asks of the adapter besides its workgroup size and memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// Subgroups of exactly 8 invocations (lavapipe's; `gemm_subgroup.wgsl`).
    Subgroup8,
    /// Cooperative matrices of 16×16 f16 into f32 (`GpuContext::matrix_units`).
    MatrixUnits,
}

/// Where the autotuner offers a variant. Every variant can be forced
/// (`--gemm-kernel NAME`) on an adapter that supports it; the heuristic tile of the
/// tiled skeleton, checked (the fallback) and unchecked, is offered everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Only when forced (or as a problem's heuristic tile).
    Forced,
    /// On GPUs (any device that is not a CPU).
    Gpu,
    /// On GPUs, for problems that fill at least half of the block each way.
    GpuHalfFilled,
    /// On CPU devices (lavapipe, WARP, SwiftShader).
    Cpu,
    /// On every device, for problems with at most [`FEW_COLUMNS`] columns of C (the
    /// fully connected layers at small batch, where the tiles of the other skeletons
    /// are mostly padding).
    FewColumns,
    /// Wherever it fits.
    Everywhere,
    /// Wherever it fits, in runs of this precision.
    AtPrecision(Precision),
    /// Only with `ContextOptions::offer_broken_variant`.
    TestHook,
}

/// How a variant's result relates to the fallback's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accuracy {
    /// Every output summed in ascending K order with one fma per k (split-K chunks
    /// aligned the same way): the fallback's bits.
    Exact,
    /// Another rounding: at most `fraction` of the outputs may differ from the f32
    /// fallback's by more than `rel · (|want| + median |want|)` on the autotuner's
    /// random operands (outputs that are ratios of a near-cancelling sum, as in RSP's
    /// relative contributions, are ill-conditioned in any arithmetic).
    Within { rel: f32, fraction: f64 },
}

/// What recording a variant takes besides its own dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recording {
    /// One dispatch over the grid of blocks.
    Single,
    /// Two `gemm_pack.wgsl` passes (A only where `packed_a`) into scratch padded
    /// matrices, then the GEMM over them.
    Packed { packed_a: bool },
    /// Winograd F(2×2, 3×3): weight and input transforms, 16 GEMMs per problem on the
    /// heuristic tile, the output transform into the op's epilogue.
    Winograd,
    /// Two `gemm_planes.wgsl` passes per operand (block scales, then the f16 planes)
    /// into scratch, then the cooperative-matrix GEMM over them.
    Planes,
    /// The test hook: one dispatch over half of the grid's columns.
    HalfGrid,
}

/// One kernel variant (see the module doc).
#[derive(Debug, PartialEq)]
pub struct Variant {
    /// The name `--gemm-kernel`, the autotune cache and profiles use.
    pub name: &'static str,
    pub skeleton: Skeleton,
    /// Built without naga's runtime checks (the skeleton's own guards keep every
    /// access in bounds).
    pub unchecked: bool,
    constants: [(&'static str, f64); 4],
    constant_count: usize,
    /// Rows and columns of C one workgroup computes.
    pub block: (usize, usize),
    /// Invocations per workgroup and bytes of workgroup memory.
    pub threads: u32,
    pub workgroup_bytes: u32,
    pub needs: Needs,
    pub offer: Offer,
    pub accuracy: Accuracy,
    pub recording: Recording,
    /// Run, on the devices it is offered to, for a problem the autotuner left
    /// unmeasured because the run's budget was spent: its device class's usual winner.
    pub untuned: bool,
}

/// Accuracy of the variants whose rounding differs only in the order of f32 sums
/// (Winograd) or that keep f32 operands through split f16 parts: any change of
/// rounding puts a few near-cancelling sums in a thousand past 1e-4 on random
/// operands.
const F32_LEVEL: Accuracy = Accuracy::Within {
    rel: 1e-4,
    fraction: 1e-2,
};

/// f16-rounded operands put a large share of all outputs past 1e-4.
const F16_LEVEL: Accuracy = Accuracy::Within {
    rel: 5e-2,
    fraction: 2e-2,
};

const fn constants<const N: usize>(
    given: [(&'static str, f64); N],
) -> ([(&'static str, f64); 4], usize) {
    let mut all = [("", 0.0); 4];
    let mut i = 0;
    while i < N {
        all[i] = given[i];
        i += 1;
    }
    (all, N)
}

impl Variant {
    const fn new<const N: usize>(
        name: &'static str,
        skeleton: Skeleton,
        given: [(&'static str, f64); N],
        block: (usize, usize),
        (threads, workgroup_bytes): (u32, u32),
    ) -> Variant {
        let (constants, constant_count) = constants(given);
        Variant {
            name,
            skeleton,
            unchecked: true,
            constants,
            constant_count,
            block,
            threads,
            workgroup_bytes,
            needs: Needs::Nothing,
            offer: Offer::Forced,
            accuracy: Accuracy::Exact,
            recording: Recording::Single,
            untuned: false,
        }
    }

    /// `gemm_tiled.wgsl` on a `rows × cols` tile: `cols/4 × rows/4` threads with a 4×4
    /// register block each, two f32 tiles of 16 × (rows | cols) staged.
    const fn tiled(name: &'static str, rows: usize, cols: usize, unchecked: bool) -> Variant {
        let wg = [("WG_X", (cols / 4) as f64), ("WG_Y", (rows / 4) as f64)];
        let threads = (rows / 4 * (cols / 4)) as u32;
        let bytes = (16 * 4 * (rows + cols)) as u32;
        let mut v = Variant::new(name, Skeleton::Tiled, wg, (rows, cols), (threads, bytes));
        v.unchecked = unchecked;
        v
    }

    /// `gemm_large.wgsl`: 16×16 threads with a `tm × tn` register block each, K tiles
    /// of `bk`, staged rows padded by one vec4 where `pad`; the two staged tiles are
    /// `bk` rows each.
    const fn large(name: &'static str, tm: usize, tn: usize, bk: usize, pad: bool) -> Variant {
        let (rows, cols) = (16 * tm, 16 * tn);
        let pad4 = if pad { 4 } else { 0 };
        let bytes = (4 * bk * (rows + cols + 2 * pad4)) as u32;
        let c = [
            ("TM", tm as f64),
            ("TN", tn as f64),
            ("BK", bk as f64),
            ("PAD4", pad as u8 as f64),
        ];
        Variant::new(name, Skeleton::Large, c, (rows, cols), (256, bytes))
            .offered(Offer::GpuHalfFilled)
    }

    /// `gemm_direct.wgsl`: `lanes` invocations along N, each `rows × 4` outputs from
    /// direct loads (no workgroup memory).
    const fn direct(name: &'static str, rows: usize, lanes: usize) -> Variant {
        let c = [("ROWS", rows as f64), ("LANES", lanes as f64)];
        Variant::new(
            name,
            Skeleton::Direct,
            c,
            (rows, 4 * lanes),
            (lanes as u32, 0),
        )
    }

    const fn offered(mut self, offer: Offer) -> Variant {
        self.offer = offer;
        self
    }

    /// The skeleton's override constants.
    pub fn constants(&self) -> &[(&'static str, f64)] {
        &self.constants[..self.constant_count]
    }
}

/// Every variant. The order is the candidates' order after the fallback pair (ties
/// in tuning go to the earlier one).
pub static VARIANTS: &[Variant] = &[
    Variant::tiled("tiled-16x16", 16, 16, false),
    Variant::tiled("tiled-16x16-unchecked", 16, 16, true),
    Variant::tiled("tiled-16x32", 16, 32, false),
    Variant::tiled("tiled-16x32-unchecked", 16, 32, true),
    Variant::tiled("tiled-16x64", 16, 64, false),
    Variant::tiled("tiled-16x64-unchecked", 16, 64, true),
    Variant::tiled("tiled-32x16", 32, 16, false),
    Variant::tiled("tiled-32x16-unchecked", 32, 16, true),
    Variant::tiled("tiled-32x32", 32, 32, false),
    Variant::tiled("tiled-32x32-unchecked", 32, 32, true).offered(Offer::Gpu),
    Variant::tiled("tiled-32x64", 32, 64, false),
    Variant::tiled("tiled-32x64-unchecked", 32, 64, true).offered(Offer::Gpu),
    Variant::tiled("tiled-64x16", 64, 16, false),
    Variant::tiled("tiled-64x16-unchecked", 64, 16, true),
    Variant::tiled("tiled-64x32", 64, 32, false),
    Variant::tiled("tiled-64x32-unchecked", 64, 32, true).offered(Offer::Gpu),
    Variant::tiled("tiled-64x64", 64, 64, false),
    Variant::tiled("tiled-64x64-unchecked", 64, 64, true).offered(Offer::Gpu),
    // Rows padded but for 128×128 with K 32, whose unpadded 32 KiB is what fits the
    // larger limits.
    Variant::large("large-128x128-k16", 8, 8, 16, true),
    Variant::large("large-128x128-k32", 8, 8, 32, false),
    Variant::large("large-128x64-k16", 8, 4, 16, true),
    Variant::large("large-128x64-k32", 8, 4, 32, true),
    Variant::large("large-64x128-k16", 4, 8, 16, true),
    Variant::large("large-64x128-k32", 4, 8, 32, true),
    Variant::direct("direct-4x8", 4, 8),
    Variant::direct("direct-4x16", 4, 16),
    Variant::direct("direct-4x32", 4, 32),
    Variant::direct("direct-4x64", 4, 64),
    Variant::direct("direct-8x8", 8, 8).offered(Offer::Cpu),
    Variant::direct("direct-8x16", 8, 16),
    Variant::direct("direct-8x32", 8, 32).offered(Offer::Cpu),
    Variant::direct("direct-8x64", 8, 64),
    // Few columns of C: one invocation per output in ascending K (exact; before the
    // subgroup kernels, so that it is the untuned default of such problems), or one
    // workgroup per output with a tree sum (coalesced loads along K).
    Variant {
        untuned: true,
        ..Variant::new("dot-64", Skeleton::Dot, [], (64, 1), (64, 0)).offered(Offer::FewColumns)
    },
    Variant {
        accuracy: F32_LEVEL,
        ..Variant::new("tree-256", Skeleton::Tree, [], (1, 1), (256, 1024))
            .offered(Offer::FewColumns)
    },
    // One 8-lane subgroup per workgroup computing 32×32 from vec4 loads of the packed
    // operands and subgroup broadcasts; on lavapipe these won nearly every problem, so
    // they also run the problems a first run cannot afford to time.
    Variant {
        needs: Needs::Subgroup8,
        recording: Recording::Packed { packed_a: true },
        untuned: true,
        ..Variant::new(
            "subgroup-32x32",
            Skeleton::Subgroup,
            [("PACKED_A", 1.0)],
            (32, 32),
            (8, 0),
        )
        .offered(Offer::Cpu)
    },
    // B packed only: for problems whose N spans one or two blocks, where packing A
    // costs more than it saves.
    Variant {
        needs: Needs::Subgroup8,
        recording: Recording::Packed { packed_a: false },
        untuned: true,
        ..Variant::new(
            "subgroup-32x32-packb",
            Skeleton::Subgroup,
            [("PACKED_A", 0.0)],
            (32, 32),
            (8, 0),
        )
        .offered(Offer::Cpu)
    },
    // Matrix units on 128-row tiles over f16 planes (`gemm_planes.wgsl`), 8 subgroups
    // of 32. Split-fp32 (two planes, three products) on 128×64, whose 16 accumulators
    // per subgroup still fit the registers; plain f16 operands, only where the run
    // asked for half precision, on 128×128 and 128×64.
    Variant {
        needs: Needs::MatrixUnits,
        accuracy: F32_LEVEL,
        recording: Recording::Planes,
        ..Variant::new(
            "coop-128x64-split",
            Skeleton::Coop,
            [("SPLIT", 1.0), ("BN", 64.0)],
            (128, 64),
            (256, COOP_WORKGROUP_BYTES),
        )
        .offered(Offer::AtPrecision(Precision::F32))
    },
    Variant {
        needs: Needs::MatrixUnits,
        accuracy: F16_LEVEL,
        recording: Recording::Planes,
        ..Variant::new(
            "coop-128x128-f16",
            Skeleton::Coop,
            [("SPLIT", 0.0), ("BN", 128.0)],
            (128, 128),
            (256, COOP_WORKGROUP_BYTES),
        )
        .offered(Offer::AtPrecision(Precision::F16))
    },
    Variant {
        needs: Needs::MatrixUnits,
        accuracy: F16_LEVEL,
        recording: Recording::Planes,
        ..Variant::new(
            "coop-128x64-f16",
            Skeleton::Coop,
            [("SPLIT", 0.0), ("BN", 64.0)],
            (128, 64),
            (256, COOP_WORKGROUP_BYTES),
        )
        .offered(Offer::AtPrecision(Precision::F16))
    },
    // One output-transform invocation per 2×2 output tile, 256 per workgroup; 16
    // instead of 36 multiplications per 2×2 outputs and input channel.
    Variant {
        unchecked: false,
        accuracy: F32_LEVEL,
        recording: Recording::Winograd,
        ..Variant::new(
            "winograd-2x2",
            Skeleton::Winograd,
            [],
            (1, 4 * WINOGRAD_GROUP),
            (WINOGRAD_GROUP as u32, 0),
        )
        .offered(Offer::Everywhere)
    },
    // The unchecked 64×64 tiled kernel on half of its grid: fast, and it leaves
    // columns unwritten, so the autotuner's check must reject it.
    Variant {
        recording: Recording::HalfGrid,
        ..Variant::tiled("broken-for-tests", 64, 64, true).offered(Offer::TestHook)
    },
];

/// Workgroup memory of `gemm_coop.wgsl`: hi and lo f16 tiles of A (128 rows of 32 + 8)
/// and B (32 rows of 128 + 8), and one f32 16×16 block per subgroup for the store.
const COOP_WORKGROUP_BYTES: u32 = 2 * 2 * (128 * 40 + 32 * 136) + 4 * 8 * 256;

/// Columns of C up to which [`Offer::FewColumns`] variants are offered.
pub const FEW_COLUMNS: usize = 8;

/// Invocations per workgroup of the Winograd transforms (in `grid_1d`'s layout).
pub(crate) const WINOGRAD_GROUP: usize = 256;

/// One kernel variant of the GEMM family: a handle on its [`VARIANTS`] entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GemmKernel(u8);

impl GemmKernel {
    /// Every variant, in table order.
    pub fn all() -> impl Iterator<Item = GemmKernel> {
        (0..VARIANTS.len()).map(|i| GemmKernel(i as u8))
    }

    /// The variant named `s`.
    pub fn parse(s: &str) -> Option<GemmKernel> {
        Self::all().find(|k| k.name == s)
    }

    /// The tiled kernel on `tile`, with or without runtime checks.
    pub fn tiled(tile: GemmTile, unchecked: bool) -> GemmKernel {
        Self::all()
            .find(|k| {
                k.skeleton == Skeleton::Tiled
                    && k.recording == Recording::Single
                    && k.block == (tile.rows(), tile.cols())
                    && k.unchecked == unchecked
            })
            .expect("every tile has a checked and an unchecked entry")
    }

    /// Its table entry.
    pub fn variant(self) -> &'static Variant {
        &VARIANTS[self.0 as usize]
    }

    /// The module this variant runs for op file `op`.
    pub fn shader(self, op: &'static str) -> ShaderRef {
        ShaderRef {
            name: op,
            skeleton: self.skeleton,
            unchecked: self.unchecked,
        }
    }

    /// The dispatch grid for `z` problems of `m × n`, each split `splits` ways.
    pub fn groups(self, (m, n): (usize, usize), z: usize, splits: usize) -> [u32; 3] {
        let (rows, cols) = self.block;
        let mut x = n.div_ceil(cols) as u32;
        if self.recording == Recording::HalfGrid {
            x = x.div_ceil(2);
        }
        [x, m.div_ceil(rows) as u32, (z * splits) as u32]
    }

    /// Whether the adapter can run this variant (workgroup size and memory limits,
    /// features).
    pub fn supported(self, ctx: &GpuContext) -> bool {
        let needs = match self.needs {
            Needs::Nothing => true,
            Needs::Subgroup8 => ctx.adapter.fixed_subgroup == Some(8),
            Needs::MatrixUnits => ctx.matrix_units,
        };
        needs
            && self.threads <= ctx.limits.max_compute_invocations_per_workgroup
            && self.workgroup_bytes <= ctx.limits.max_compute_workgroup_storage_size
    }

    /// Whether a cooperative-matrix variant multiplies split-fp32 operands (hi and lo
    /// f16 planes) rather than plain f16 ones.
    pub fn split_planes(self) -> bool {
        self.constants()
            .iter()
            .any(|&(name, v)| name == "SPLIT" && v == 1.0)
    }

    /// Whether the variant gives the same bits as the f32 fallback.
    pub fn exact(self) -> bool {
        self.accuracy == Accuracy::Exact
    }

    /// For an inexact variant, the relative error per output and the fraction of
    /// outputs allowed past it ([`Accuracy::Within`]).
    pub fn tolerance(self) -> Option<(f32, f64)> {
        match self.accuracy {
            Accuracy::Exact => None,
            Accuracy::Within { rel, fraction } => Some((rel, fraction)),
        }
    }
}

impl std::ops::Deref for GemmKernel {
    type Target = Variant;
    fn deref(&self) -> &Variant {
        self.variant()
    }
}

impl fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Debug for GemmKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names follow one pattern per skeleton, so a typo in a new entry's name (or
    /// a name that disagrees with its numbers) fails here.
    #[test]
    fn names_agree_with_the_entries() {
        let mut seen = std::collections::BTreeSet::new();
        for k in GemmKernel::all() {
            assert!(seen.insert(k.name), "{} is listed twice", k.name);
            let (rows, cols) = k.block;
            let c = |name: &str| {
                k.constants()
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| *v as usize)
                    .unwrap_or_else(|| panic!("{}: no {name}", k.name))
            };
            let want = match (k.skeleton, k.recording) {
                (_, Recording::HalfGrid) => "broken-for-tests".to_string(),
                (Skeleton::Tiled, _) => {
                    assert_eq!((4 * c("WG_Y"), 4 * c("WG_X")), k.block, "{}", k.name);
                    let suffix = if k.unchecked { "-unchecked" } else { "" };
                    format!("tiled-{rows}x{cols}{suffix}")
                }
                (Skeleton::Large, _) => {
                    assert_eq!((16 * c("TM"), 16 * c("TN")), k.block, "{}", k.name);
                    format!("large-{rows}x{cols}-k{}", c("BK"))
                }
                (Skeleton::Direct, _) => {
                    assert_eq!((c("ROWS"), 4 * c("LANES")), k.block, "{}", k.name);
                    format!("direct-{rows}x{}", c("LANES"))
                }
                (Skeleton::Subgroup, Recording::Packed { packed_a }) => {
                    assert_eq!(c("PACKED_A") == 1, packed_a, "{}", k.name);
                    format!(
                        "subgroup-{rows}x{cols}{}",
                        if packed_a { "" } else { "-packb" }
                    )
                }
                (Skeleton::Coop, _) => {
                    let split = c("SPLIT") == 1;
                    assert_eq!(c("BN"), cols, "{}", k.name);
                    assert_eq!(k.recording, Recording::Planes, "{}", k.name);
                    assert_eq!(k.accuracy == F32_LEVEL, split, "{}", k.name);
                    format!("coop-{rows}x{cols}-{}", if split { "split" } else { "f16" })
                }
                (Skeleton::Winograd, _) => "winograd-2x2".to_string(),
                (Skeleton::Dot, _) => format!("dot-{}", k.threads),
                (Skeleton::Tree, _) => format!("tree-{}", k.threads),
                other => panic!("{}: unexpected {other:?}", k.name),
            };
            assert_eq!(k.name, want);
            assert_eq!(GemmKernel::parse(k.name), Some(k));
        }
        for tile in GemmTile::ALL {
            for unchecked in [false, true] {
                let k = GemmKernel::tiled(tile, unchecked);
                assert_eq!(k.block, (tile.rows(), tile.cols()));
            }
        }
    }
}
