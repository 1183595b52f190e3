//! The autotuner's trial of one candidate on one problem: buffers shaped like the
//! problem's bindings, filled with fixed pseudo-random values; the candidate's output
//! checked against the fallback's (bit for bit, or within its tolerance); then timed.

use std::time::Instant;

use wgpu::util::DeviceExt;

use super::op::GemmProblem;
#[cfg(test)]
use super::op::{GemmOp, Weights};
use super::record::record;
use super::variants::{GemmKernel, Recording};
use crate::gpu::tune::Trial;
use crate::gpu::{Access, Binding, GpuContext, Recorder};
use crate::rng::SplitMix64;

/// Whether a candidate's output `got` (f32 bit patterns) agrees with the fallback's
/// `want`: bit for bit, or for an inexact variant within `tolerance` (see
/// [`GemmKernel::tolerance`]); non-finite outputs must match in kind.
pub(super) fn agrees(
    want: &[u32],
    got: &[u32],
    tolerance: Option<(f32, f64)>,
) -> Result<(), String> {
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
pub(super) struct TrialBench {
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
    pub(super) fn new(ctx: &GpuContext, p: &GemmProblem) -> Self {
        let mut rng = SplitMix64(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.unit_f32() * 2.0 - 1.0;
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
    /// Records `reps` dispatches of `kernel` on `p` (the whole problem or a slice),
    /// submits them and waits: milliseconds per dispatch, on the device's clock where
    /// it has one, else by the wall clock around submission and wait.
    fn run(&self, ctx: &GpuContext, p: &GemmProblem, kernel: GemmKernel, reps: usize) -> f64 {
        let bindings: Vec<Binding> = p
            .bindings
            .iter()
            .zip(&self.buffers)
            .map(|(b, buffer)| Binding { buffer, ..*b })
            .collect();
        let mut rec = match &ctx.clock {
            Some(clock) => Recorder::detached_clocked(ctx, clock),
            None => Recorder::detached(ctx),
        };
        for _ in 0..reps {
            record(&mut rec, kernel, p, &bindings);
        }
        let t = Instant::now();
        rec.submit();
        let _ = ctx.synchronize();
        let wall = t.elapsed().as_secs_f64() * 1e3;
        let ms = match &ctx.clock {
            Some(clock) => ctx
                .read_raw(clock.resolved(), 4)
                .map_or(wall, |words| clock.elapsed_ms(&words)),
            None => wall,
        };
        ms.max(1e-6) / reps as f64
    }

    /// Checks `kernel` against the reference output on the whole problem (the run
    /// that also builds its pipeline), then times it on [`timed_slice`] of the
    /// problem: samples of enough dispatches to take about 3 ms, the median of five,
    /// scaled to the whole grid. A candidate whose first two samples are both 1.5×
    /// the best median so far is dropped early with its faster sample, since it
    /// cannot win.
    pub(super) fn trial(&mut self, ctx: &GpuContext, p: &GemmProblem, kernel: GemmKernel) -> Trial {
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
        let (slice, scale) = timed_slice(ctx.fill_workgroups, p, kernel);
        let first = self.run(ctx, &slice, kernel, 1) * scale;
        let reps = ((3.0 / first).ceil() as usize).clamp(1, 64);
        let mut times = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            times.push(self.run(ctx, &slice, kernel, reps) * scale);
            let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
            if times.len() == 2 && self.best.is_some_and(|best| fastest > 1.5 * best) {
                return Trial::Timed(fastest);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[SAMPLES / 2];
        self.best = Some(self.best.map_or(median, |b| b.min(median)));
        Trial::Timed(median)
    }
}

/// Timed samples per candidate.
const SAMPLES: usize = 5;

/// Columns of C a sliced trial covers are a multiple of this: of every block width in
/// the registry, so each variant's slice holds whole blocks of the same outputs.
const SLICE_COLUMNS: usize = 1024;

/// The part of `p` a candidate is timed on, and the factor from its time to the whole
/// problem's. A problem with many columns of C (a convolution over a large image: N is
/// its pixels) is timed on its first columns only: at least a sixteenth of them and
/// enough workgroups of the largest block (128×128) to fill the device four times,
/// scaled by the kernel's own ratio of grid columns. Variants that pack or transform
/// their operands (their scratch passes cover the whole problem) and problems without
/// four such slices are timed whole.
fn timed_slice<'a, 'b>(
    fill_workgroups: usize,
    p: &GemmProblem<'a, 'b>,
    kernel: GemmKernel,
) -> (GemmProblem<'a, 'b>, f64) {
    let (m, n, z) = p.mnz;
    let whole = (*p, 1.0);
    if !matches!(kernel.recording, Recording::Single | Recording::HalfGrid) {
        return whole;
    }
    let per_128_columns = m.div_ceil(128) * z * p.splits;
    let to_fill = (4 * fill_workgroups).div_ceil(per_128_columns.max(1)) * 128;
    let columns = to_fill.max(n.div_ceil(16)).next_multiple_of(SLICE_COLUMNS);
    if 4 * columns > n {
        return whole;
    }
    let slice = GemmProblem {
        mnz: (m, columns, z),
        ..*p
    };
    let grid_columns = |q: &GemmProblem| kernel.groups((q.mnz.0, q.mnz.1), z, p.splits)[0];
    let scale = grid_columns(p) as f64 / grid_columns(&slice) as f64;
    (slice, scale)
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
    fn large_problems_are_timed_on_a_slice_that_fills_the_device() {
        let problem = |mnz| GemmProblem {
            op: GemmOp::LinearForward {
                relu: false,
                weights: Weights::Signed,
                in_features: 27,
            },
            bindings: &[],
            params: &[],
            mnz,
            splits: 1,
        };
        let kernel = |name| GemmKernel::parse(name).expect("a variant");
        // VGG16's first convolution at 224 px on a 2-core CPU device (fill 4): a
        // sixteenth of the 50176 pixels, rounded up to whole slices of 1024 columns.
        let conv1 = problem((64, 50176, 1));
        let (slice, scale) = timed_slice(4, &conv1, kernel("tiled-64x64-unchecked"));
        assert_eq!(slice.mnz, (64, 4096, 1));
        assert_eq!(scale, 784.0 / 64.0);
        let (_, scale) = timed_slice(4, &conv1, kernel("direct-8x64"));
        assert_eq!(scale, 196.0 / 16.0);
        // On a GPU (fill 256) the slice would not fill the device four times.
        assert_eq!(timed_slice(256, &conv1, kernel("large-128x128-k16")).1, 1.0);
        // Small images and packed or transformed operands are timed whole.
        let late = problem((512, 196, 1));
        assert_eq!(timed_slice(4, &late, kernel("tiled-64x64")).0.mnz, late.mnz);
        for whole in ["subgroup-32x32", "winograd-2x2"] {
            let (slice, scale) = timed_slice(4, &conv1, kernel(whole));
            assert_eq!((slice.mnz, scale), (conv1.mnz, 1.0), "{whole}");
        }
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
        let kernel = |name| GemmKernel::parse(name).expect("a variant");
        let tol = kernel("coop-128x64-split").tolerance();
        assert!(tol.is_some() && kernel("coop-128x128-f16").tolerance().is_some());
        assert!(kernel("tiled-64x64-unchecked").tolerance().is_none());
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
