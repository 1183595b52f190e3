//! Faithfulness curves (Petsiuk, Das, Saenko, RISE, BMVC 2018): pixels ranked by a map
//! are removed from the image (deletion, towards a baseline) or restored into a
//! baseline (insertion, from a blurred copy) a step at a time, and the model's score
//! for the target is read after each step; the area under that curve (trapezoid rule,
//! x from 0 to 1) summarises it. A faithful map makes deletion fall fast (low AUC) and
//! insertion rise fast (high AUC).
//!
//! Region perturbation (Samek, Binder, Montavon, Lapuschkin, Müller, IEEE TNNLS 2017)
//! removes k×k patches instead, ranked by their summed relevance, most relevant first
//! (MoRF) or least relevant first (LeRF), and summarises the fall of the target's logit
//! as AOPC, the mean over steps of f(x) − f(x after k patches): high for MoRF and low
//! for LeRF are faithful.
//!
//! ROAD (Rong, Leemann, Borisov, Kasneci, Kasneci, ICML 2022) removes the top (MoRF) or
//! bottom (LeRF) p% of pixels, p = 10…90, and fills them by noisy linear imputation
//! (each removed pixel the weighted mean of its 8 neighbours, 1/6 for the 4 direct and
//! 1/12 for the diagonal ones, solved over all removed pixels at once, plus Gaussian
//! noise), so that the shape of the removed region leaks less class information than
//! a constant fill; a faithful map keeps the LeRF curve high and the MoRF curve low.
//!
//! The functions here build the perturbed images as one batch and leave scoring to the
//! caller (any model, any engine), so they are tested on models whose exact attribution
//! is known.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use crate::tensor::Tensor;

/// What deleted pixels become (`--baseline`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionBaseline {
    /// Zero after normalisation: the training set's mean colour (RISE).
    #[default]
    Mean,
    /// The same pixels of the blurred image (Gaussian, kernel 11, σ 5).
    Blur,
}

impl DeletionBaseline {
    pub const ALL: [DeletionBaseline; 2] = [DeletionBaseline::Mean, DeletionBaseline::Blur];

    pub fn name(self) -> &'static str {
        match self {
            DeletionBaseline::Mean => "mean",
            DeletionBaseline::Blur => "blur",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            DeletionBaseline::Mean => "zero after normalisation, the mean colour (RISE)",
            DeletionBaseline::Blur => "the blurred image (Gaussian, kernel 11, sigma 5)",
        }
    }
}

/// Kernel size and σ of the blurred image insertion starts from (RISE).
pub const BLUR_KERNEL: usize = 11;
pub const BLUR_SIGMA: f32 = 5.0;

/// How curves are sampled: `step_at_224` pixels per step for a 224×224 image, scaled
/// to the image's area (RISE: 224), and what deletion fills in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurveSettings {
    pub step_at_224: usize,
    pub baseline: DeletionBaseline,
}

impl CurveSettings {
    /// Pixels per step for an `h × w` image (at least 1).
    pub fn step_pixels(&self, h: usize, w: usize) -> usize {
        ((self.step_at_224 * h * w) as f64 / (224.0 * 224.0))
            .round()
            .max(1.0) as usize
    }
}

/// One (image, class) scored: the target's probability after each step of deletion
/// and of insertion (first point: nothing changed yet), and their areas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePair {
    pub class_index: usize,
    pub deletion: Vec<f32>,
    pub insertion: Vec<f32>,
    pub deletion_auc: f64,
    pub insertion_auc: f64,
}

/// Every metric takes an image `[C, H, W]` and a map of one value per pixel.
fn check_image_and_map(metric: &str, image: &Tensor, map: &[f32]) -> Result<()> {
    ensure!(
        image.shape.len() == 3 && image.shape[1] * image.shape[2] == map.len(),
        "{metric}: a map of {} values for an image of shape {:?}",
        map.len(),
        image.shape
    );
    Ok(())
}

/// The deletion and insertion curves of `map` (`H·W` values) for `image` `[C, H, W]`
/// and class `class_index`: the curve images of both go to `score` as one batch
/// `[N, C, H, W]`, which returns the class's probability per image.
pub fn curves(
    image: &Tensor,
    map: &[f32],
    class_index: usize,
    settings: &CurveSettings,
    score: impl FnOnce(&Tensor) -> Result<Vec<f32>>,
) -> Result<CurvePair> {
    check_image_and_map("faithfulness", image, map)?;
    let (h, w) = (image.shape[1], image.shape[2]);
    let order = ranking(map);
    let step = settings.step_pixels(h, w);
    let blurred = gaussian_blur(image, BLUR_KERNEL, BLUR_SIGMA);
    let baseline = match settings.baseline {
        DeletionBaseline::Mean => Tensor::zeros(&image.shape),
        DeletionBaseline::Blur => blurred.clone(),
    };
    let deletion = curve_images(image, &baseline, &order, step);
    let insertion = curve_images(&blurred, image, &order, step);
    let points = deletion.shape[0];
    let probs = score(&Tensor::concat0(&[&deletion, &insertion]))?;
    ensure!(
        probs.len() == 2 * points,
        "faithfulness: {} scores for {} images",
        probs.len(),
        2 * points
    );
    let (deletion, insertion) = (probs[..points].to_vec(), probs[points..].to_vec());
    Ok(CurvePair {
        class_index,
        deletion_auc: auc(&deletion),
        insertion_auc: auc(&insertion),
        deletion,
        insertion,
    })
}

/// `curve` (evenly spaced over [0, 1]) linearly interpolated at `points` evenly spaced
/// x, so curves of images with different step counts can be averaged.
pub fn resample(curve: &[f32], points: usize) -> Vec<f64> {
    if curve.is_empty() {
        return vec![0.0; points];
    }
    let last = (curve.len() - 1) as f64;
    (0..points)
        .map(|i| {
            let x = if points > 1 {
                i as f64 / (points - 1) as f64 * last
            } else {
                0.0
            };
            let lo = x.floor() as usize;
            let hi = (lo + 1).min(curve.len() - 1);
            let t = x - lo as f64;
            curve[lo] as f64 * (1.0 - t) + curve[hi] as f64 * t
        })
        .collect()
}

/// Pixel indices (`y·W + x`) from the most to the least relevant; ties keep index order.
pub fn ranking(map: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..map.len()).collect();
    idx.sort_by(|&a, &b| map[b].total_cmp(&map[a]));
    idx
}

/// The images of one curve, `[steps + 1, C, H, W]`: image `s` is `from` with the first
/// `s·step` pixels of `order` (every channel) taken from `to` (the last image takes all
/// of them). Deletion: `from` = the image, `to` = the baseline; insertion: the other
/// way round.
pub fn curve_images(from: &Tensor, to: &Tensor, order: &[usize], step: usize) -> Tensor {
    assert_eq!(
        from.shape, to.shape,
        "curve_images: image and baseline shapes"
    );
    assert_eq!(from.shape.len(), 3, "curve_images: expected [C, H, W]");
    let (c, hw) = (from.shape[0], from.shape[1] * from.shape[2]);
    assert_eq!(order.len(), hw, "curve_images: one rank per pixel");
    let step = step.max(1);
    let steps = hw.div_ceil(step);
    let mut images = Vec::with_capacity(steps + 1);
    let mut current = from.clone();
    images.push(current.clone());
    for chunk in order.chunks(step) {
        for &p in chunk {
            for ch in 0..c {
                current.data[ch * hw + p] = to.data[ch * hw + p];
            }
        }
        images.push(current.clone());
    }
    Tensor::stack(&images)
}

/// Area under a curve sampled at evenly spaced x in [0, 1] (trapezoid rule).
pub fn auc(curve: &[f32]) -> f64 {
    if curve.len() < 2 {
        return curve.first().map_or(0.0, |&v| v as f64);
    }
    let dx = 1.0 / (curve.len() - 1) as f64;
    curve
        .windows(2)
        .map(|w| (w[0] as f64 + w[1] as f64) / 2.0 * dx)
        .sum()
}

/// Gaussian blur of every channel of `[C, H, W]` (separable, edges replicated), the
/// insertion metric's starting image (RISE: kernel 11, σ = 5).
pub fn gaussian_blur(img: &Tensor, kernel: usize, sigma: f32) -> Tensor {
    let (c, h, w) = (img.shape[0], img.shape[1], img.shape[2]);
    let r = (kernel / 2) as isize;
    let weights: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|v| v / total).collect();
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0.0f32; img.numel()];
    let mut out = vec![0.0f32; img.numel()];
    for ch in 0..c {
        let plane = &img.data[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                tmp[ch * h * w + y * w + x] = (-r..=r)
                    .zip(&weights)
                    .map(|(d, k)| k * plane[y * w + clamp(x as isize + d, w)])
                    .sum();
            }
        }
        let rows = &tmp[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                out[ch * h * w + y * w + x] = (-r..=r)
                    .zip(&weights)
                    .map(|(d, k)| k * rows[clamp(y as isize + d, h) * w + x])
                    .sum();
            }
        }
    }
    Tensor::new(img.shape.clone(), out)
}

/// What removed patches become in region perturbation (`--fill`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegionFill {
    /// Uniform noise over each channel's range in the image (Samek et al.).
    #[default]
    Noise,
    /// Zero after normalisation: the mean colour.
    Mean,
}

impl RegionFill {
    pub const ALL: [RegionFill; 2] = [RegionFill::Noise, RegionFill::Mean];

    pub fn name(self) -> &'static str {
        match self {
            RegionFill::Noise => "noise",
            RegionFill::Mean => "mean",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            RegionFill::Noise => "uniform noise over each channel's range in the image",
            RegionFill::Mean => "zero after normalisation, the mean colour",
        }
    }
}

/// Region perturbation settings: patch side in pixels, most patches removed, fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionSettings {
    pub patch: usize,
    pub steps: usize,
    pub fill: RegionFill,
}

/// One (image, class) under region perturbation: the target's logit after each of 0..L
/// removed patches, most relevant first and least relevant first, and the AOPC of each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionPair {
    pub class_index: usize,
    pub morf: Vec<f32>,
    pub lerf: Vec<f32>,
    pub aopc_morf: f64,
    pub aopc_lerf: f64,
}

/// The `patch × patch` tiles of an `h × w` map (partial at the right and bottom edges)
/// as pixel lists, from the largest summed relevance to the smallest; ties keep
/// row-major order.
pub fn patch_ranking(map: &[f32], h: usize, w: usize, patch: usize) -> Vec<Vec<usize>> {
    let patch = patch.max(1);
    let mut tiles: Vec<(f64, Vec<usize>)> = Vec::new();
    for y0 in (0..h).step_by(patch) {
        for x0 in (0..w).step_by(patch) {
            let pixels: Vec<usize> = (y0..(y0 + patch).min(h))
                .flat_map(|y| (x0..(x0 + patch).min(w)).map(move |x| y * w + x))
                .collect();
            let sum = pixels.iter().map(|&p| map[p] as f64).sum();
            tiles.push((sum, pixels));
        }
    }
    tiles.sort_by(|a, b| b.0.total_cmp(&a.0));
    tiles.into_iter().map(|(_, p)| p).collect()
}

/// AOPC of a logit curve: the mean of `curve[0] − curve[k]` over every point.
pub fn aopc(curve: &[f32]) -> f64 {
    let Some(&first) = curve.first() else {
        return 0.0;
    };
    curve.iter().map(|&v| (first - v) as f64).sum::<f64>() / curve.len() as f64
}

/// Uniform noise over each channel's `[min, max]` in `image` `[C, H, W]`, from `seed`.
fn channel_noise(image: &Tensor, seed: u64) -> Tensor {
    let hw = image.shape[1] * image.shape[2];
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut data = Vec::with_capacity(image.numel());
    for plane in image.data.chunks(hw) {
        let lo = plane.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = plane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        data.extend((0..hw).map(|_| lo + (hi - lo) * next()));
    }
    Tensor::new(image.shape.clone(), data)
}

/// Region perturbation of `image` `[C, H, W]` by `map` for `class_index`: the MoRF
/// and LeRF images (0 to `steps` patches removed, fill from `seed`) go to `score` as
/// one batch, which returns the class's logit per image.
pub fn region_perturbation(
    image: &Tensor,
    map: &[f32],
    class_index: usize,
    settings: &RegionSettings,
    seed: u64,
    score: impl FnOnce(&Tensor) -> Result<Vec<f32>>,
) -> Result<RegionPair> {
    check_image_and_map("region perturbation", image, map)?;
    let (c, h, w) = (image.shape[0], image.shape[1], image.shape[2]);
    let fill = match settings.fill {
        RegionFill::Noise => channel_noise(image, seed),
        RegionFill::Mean => Tensor::zeros(&image.shape),
    };
    let tiles = patch_ranking(map, h, w, settings.patch);
    let steps = settings.steps.min(tiles.len());
    let walk = |order: &mut dyn Iterator<Item = &Vec<usize>>| {
        let mut current = image.clone();
        let mut images = vec![current.clone()];
        for pixels in order.take(steps) {
            for &p in pixels {
                for ch in 0..c {
                    current.data[ch * h * w + p] = fill.data[ch * h * w + p];
                }
            }
            images.push(current.clone());
        }
        Tensor::stack(&images)
    };
    let morf = walk(&mut tiles.iter());
    let lerf = walk(&mut tiles.iter().rev());
    let logits = score(&Tensor::concat0(&[&morf, &lerf]))?;
    ensure!(
        logits.len() == 2 * (steps + 1),
        "region perturbation: {} scores for {} images",
        logits.len(),
        2 * (steps + 1)
    );
    let (morf, lerf) = (logits[..=steps].to_vec(), logits[steps + 1..].to_vec());
    Ok(RegionPair {
        class_index,
        aopc_morf: aopc(&morf),
        aopc_lerf: aopc(&lerf),
        morf,
        lerf,
    })
}

/// ROAD settings: the percentages removed and the imputation noise (σ, in normalised
/// units).
#[derive(Clone, Debug, PartialEq)]
pub struct RoadSettings {
    pub percents: Vec<u32>,
    pub noise: f32,
}

/// One (image, class) under ROAD: the class's probability with each percentage of
/// pixels removed, most relevant first and least relevant first, and the means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoadPair {
    pub class_index: usize,
    pub percents: Vec<u32>,
    pub morf: Vec<f32>,
    pub lerf: Vec<f32>,
    pub morf_mean: f64,
    pub lerf_mean: f64,
}

/// Gauss–Seidel sweeps of the imputation's linear system: a fixed count, so the cost is
/// bounded; the largest holes are smoothed towards the solution rather than solved.
const IMPUTATION_SWEEPS: usize = 300;

/// `image` `[C, H, W]` with the pixels where `removed` is true replaced by the linear
/// imputation from their 8 neighbours (weights 1/6 direct, 1/12 diagonal, those outside
/// the image left out) plus N(0, noise²) drawn from `seed`.
pub fn impute(image: &Tensor, removed: &[bool], noise: f32, seed: u64) -> Tensor {
    let (c, h, w) = (image.shape[0], image.shape[1], image.shape[2]);
    let hw = h * w;
    let mut out = image.clone();
    let holes: Vec<usize> = (0..hw).filter(|&p| removed[p]).collect();
    let neighbours: Vec<Vec<(usize, f32)>> = holes
        .iter()
        .map(|&p| {
            let (y, x) = ((p / w) as isize, (p % w) as isize);
            let mut n = Vec::with_capacity(8);
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let (ny, nx) = (y + dy, x + dx);
                    if (dy, dx) == (0, 0)
                        || ny < 0
                        || nx < 0
                        || ny >= h as isize
                        || nx >= w as isize
                    {
                        continue;
                    }
                    let weight = if dy == 0 || dx == 0 {
                        1.0 / 6.0
                    } else {
                        1.0 / 12.0
                    };
                    n.push((ny as usize * w + nx as usize, weight));
                }
            }
            n
        })
        .collect();
    for ch in 0..c {
        let plane = &mut out.data[ch * hw..(ch + 1) * hw];
        let kept: Vec<f32> = (0..hw).filter(|&p| !removed[p]).map(|p| plane[p]).collect();
        let start = if kept.is_empty() {
            0.0
        } else {
            kept.iter().sum::<f32>() / kept.len() as f32
        };
        for &p in &holes {
            plane[p] = start;
        }
        for _ in 0..IMPUTATION_SWEEPS {
            for (&p, n) in holes.iter().zip(&neighbours) {
                let total: f32 = n.iter().map(|&(_, wt)| wt).sum();
                plane[p] = n.iter().map(|&(q, wt)| wt * plane[q]).sum::<f32>() / total;
            }
        }
    }
    if noise > 0.0 {
        let mut state = seed ^ 0xd1b5_4a32_d192_ed03;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 + 0.5) / (1u64 << 24) as f32
        };
        for ch in 0..c {
            for &p in &holes {
                // Box–Muller.
                let (u1, u2) = (uniform(), uniform());
                let g = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
                out.data[ch * hw + p] += noise * g;
            }
        }
    }
    out
}

/// ROAD for `image` `[C, H, W]`, `map` and `class_index`: the MoRF and LeRF images at
/// every percentage go to `score` as one batch, which returns the class's probability
/// per image.
pub fn road(
    image: &Tensor,
    map: &[f32],
    class_index: usize,
    settings: &RoadSettings,
    seed: u64,
    score: impl FnOnce(&Tensor) -> Result<Vec<f32>>,
) -> Result<RoadPair> {
    check_image_and_map("ROAD", image, map)?;
    let order = ranking(map);
    let hw = map.len();
    let mut images = Vec::new();
    for most_relevant_first in [true, false] {
        for &pct in &settings.percents {
            let count = (hw * pct as usize).div_ceil(100).min(hw);
            let mut removed = vec![false; hw];
            let chosen: Box<dyn Iterator<Item = &usize>> = if most_relevant_first {
                Box::new(order.iter().take(count))
            } else {
                Box::new(order.iter().rev().take(count))
            };
            for &p in chosen {
                removed[p] = true;
            }
            images.push(impute(image, &removed, settings.noise, seed ^ pct as u64));
        }
    }
    let probs = score(&Tensor::stack(&images))?;
    let n = settings.percents.len();
    ensure!(
        probs.len() == 2 * n,
        "ROAD: {} scores for {} images",
        probs.len(),
        2 * n
    );
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
    let (morf, lerf) = (probs[..n].to_vec(), probs[n..].to_vec());
    Ok(RoadPair {
        class_index,
        percents: settings.percents.clone(),
        morf_mean: mean(&morf),
        lerf_mean: mean(&lerf),
        morf,
        lerf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A linear "model" `Σ w·x` whose exact attribution per pixel is `Σ_c w·x`.
    fn linear_score(w: &Tensor, batch: &Tensor) -> Vec<f32> {
        let per = w.numel();
        batch
            .data
            .chunks(per)
            .map(|img| img.iter().zip(&w.data).map(|(a, b)| a * b).sum())
            .collect()
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// A random `[c, h, w]` image, the weights of a linear "model" `Σ w·x` (seeds
    /// `seed`, `seed + 1`) and its exact attribution per pixel, `Σ_c w·x`.
    fn linear_case(c: usize, h: usize, w: usize, seed: u32) -> (Tensor, Tensor, Vec<f32>) {
        let img = Tensor::new(vec![c, h, w], pseudo_random(c * h * w, seed));
        let weights = Tensor::new(vec![c, h, w], pseudo_random(c * h * w, seed + 1));
        let exact = (0..h * w)
            .map(|p| {
                (0..c)
                    .map(|ch| img.data[ch * h * w + p] * weights.data[ch * h * w + p])
                    .sum()
            })
            .collect();
        (img, weights, exact)
    }

    #[test]
    fn curves_rank_an_exact_attribution_above_a_random_map() {
        let (h, w) = (6, 5);
        let (img, weights, exact) = linear_case(2, h, w, 7);
        let random = pseudo_random(h * w, 9);
        let settings = CurveSettings {
            step_at_224: 224 * 224 / (h * w), // one pixel per step
            baseline: DeletionBaseline::Mean,
        };
        assert_eq!(settings.step_pixels(h, w), 1);
        let run = |map: &[f32]| {
            curves(&img, map, 0, &settings, |b| Ok(linear_score(&weights, b))).unwrap()
        };
        let (good, bad) = (run(&exact), run(&random));
        assert_eq!(good.deletion.len(), h * w + 1);
        assert_eq!(good.insertion.len(), h * w + 1);
        // Deletion ends at the baseline (0), insertion at the image's score.
        assert_eq!(*good.deletion.last().unwrap(), 0.0);
        let full = linear_score(&weights, &img)[0];
        assert!((good.deletion[0] - full).abs() < 1e-5);
        assert!((good.insertion.last().unwrap() - full).abs() < 1e-5);
        assert!(good.deletion_auc < bad.deletion_auc, "{good:?} vs {bad:?}");
        assert!(
            good.insertion_auc > bad.insertion_auc,
            "{good:?} vs {bad:?}"
        );
        // A score function that returns the wrong count is an error, not a panic.
        assert!(curves(&img, &exact, 0, &settings, |_| Ok(vec![0.0])).is_err());
        assert!(curves(&img, &exact[1..], 0, &settings, |_| Ok(vec![])).is_err());
    }

    #[test]
    fn resample_interpolates_and_keeps_the_ends() {
        assert_eq!(resample(&[0.0, 1.0], 5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(resample(&[3.0, 1.0, 2.0], 3), vec![3.0, 1.0, 2.0]);
        assert_eq!(resample(&[4.0], 3), vec![4.0, 4.0, 4.0]);
    }

    #[test]
    fn patches_are_ranked_by_summed_relevance_with_partial_edges() {
        // 3×5 map, 2×2 patches: tiles (0,0) (0,2) (0,4) (2,0) (2,2) (2,4).
        let mut map = vec![0.0f32; 15];
        map[4] = 5.0; // tile (0,4): column 4 of rows 0-1
        map[12] = 3.0; // tile (2,2): row 2, column 2
        map[0] = -1.0; // tile (0,0)
        let tiles = patch_ranking(&map, 3, 5, 2);
        assert_eq!(tiles.len(), 6);
        assert_eq!(tiles[0], vec![4, 9]);
        assert_eq!(tiles[1], vec![12, 13]);
        assert_eq!(tiles[5], vec![0, 1, 5, 6]);
        let covered: usize = tiles.iter().map(Vec::len).sum();
        assert_eq!(covered, 15);
    }

    #[test]
    fn aopc_of_a_hand_computed_curve() {
        assert!((aopc(&[2.0, 1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(aopc(&[]), 0.0);
    }

    #[test]
    fn region_perturbation_separates_morf_from_lerf_on_a_linear_model() {
        let (h, w) = (8, 8);
        let (img, weights, exact) = linear_case(2, h, w, 11);
        for fill in RegionFill::ALL {
            let settings = RegionSettings {
                patch: 2,
                steps: 100,
                fill,
            };
            let run = |map: &[f32]| {
                region_perturbation(&img, map, 0, &settings, 5, |b| {
                    Ok(linear_score(&weights, b))
                })
                .unwrap()
            };
            let exact_pair = run(&exact);
            let random_pair = run(&pseudo_random(h * w, 13));
            // 16 patches of 2×2: 17 points per curve (fewer than the 100 asked for).
            assert_eq!(exact_pair.morf.len(), 17);
            assert_eq!(exact_pair.lerf.len(), 17);
            if fill == RegionFill::Mean {
                // Removing patches towards 0 takes away exactly their summed
                // attribution, so the exact map's MoRF drops fastest of all orders.
                assert!(exact_pair.aopc_morf > random_pair.aopc_morf, "{fill:?}");
                assert!(exact_pair.aopc_lerf < random_pair.aopc_lerf, "{fill:?}");
            }
            assert!(exact_pair.aopc_morf > exact_pair.aopc_lerf, "{fill:?}");
            // Everything removed: both orders end on the same image.
            assert_eq!(exact_pair.morf.last(), exact_pair.lerf.last());
        }
    }

    #[test]
    fn imputation_reproduces_a_plane_and_fills_every_hole() {
        // The symmetric neighbour average of a linear ramp is the ramp itself.
        let (h, w) = (9, 11);
        let ramp: Vec<f32> = (0..h * w).map(|p| 0.3 * (p % w) as f32 + 0.1).collect();
        let img = Tensor::new(vec![1, h, w], ramp.clone());
        let mut removed = vec![false; h * w];
        for y in 3..6 {
            for x in 4..8 {
                removed[y * w + x] = true;
            }
        }
        let filled = impute(&img, &removed, 0.0, 1);
        for (p, (got, want)) in filled.data.iter().zip(&ramp).enumerate() {
            assert!((got - want).abs() < 1e-3, "pixel {p}: {got} vs {want}");
        }
        // With noise, only the holes change, by about the noise.
        let noisy = impute(&img, &removed, 0.05, 1);
        for (p, hole) in removed.iter().enumerate() {
            let d = (noisy.data[p] - filled.data[p]).abs();
            if *hole {
                assert!(d < 0.5, "pixel {p}: {d}");
            } else {
                assert_eq!(d, 0.0);
            }
        }
        assert!(noisy.data != filled.data);
    }

    #[test]
    fn road_removes_the_ranked_share_and_orders_morf_below_lerf_on_a_linear_model() {
        let (h, w) = (10, 10);
        let (img, weights, exact) = linear_case(2, h, w, 21);
        let settings = RoadSettings {
            percents: (1..=9).map(|k| 10 * k).collect(),
            noise: 0.0,
        };
        let mut seen = None;
        let pair = road(&img, &exact, 0, &settings, 3, |batch| {
            seen = Some(batch.clone());
            Ok(linear_score(&weights, batch))
        })
        .unwrap();
        let batch = seen.unwrap();
        assert_eq!(batch.shape, vec![18, 2, h, w]);
        // MoRF at 10%: exactly the 10 most relevant pixels changed.
        let order = ranking(&exact);
        let first = batch.index0(0);
        let changed: Vec<usize> = (0..h * w)
            .filter(|&p| (0..2).any(|c| first.data[c * h * w + p] != img.data[c * h * w + p]))
            .collect();
        let mut top: Vec<usize> = order[..10].to_vec();
        top.sort();
        assert_eq!(changed, top);
        assert_eq!(pair.morf.len(), 9);
        assert!(pair.morf_mean < pair.lerf_mean, "{pair:?}");
        assert!(road(&img, &exact, 0, &settings, 3, |_| Ok(vec![0.0])).is_err());
    }

    #[test]
    fn auc_of_hand_computed_curves() {
        assert!((auc(&[1.0, 0.5, 0.0]) - 0.5).abs() < 1e-12);
        assert!((auc(&[0.0, 1.0, 1.0, 1.0]) - (0.5 / 3.0 + 2.0 / 3.0)).abs() < 1e-12);
        assert_eq!(auc(&[0.7]), 0.7f32 as f64);
    }

    #[test]
    fn curve_images_move_pixels_in_rank_order() {
        let from = Tensor::new(vec![2, 1, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let to = Tensor::zeros(&[2, 1, 3]);
        let imgs = curve_images(&from, &to, &ranking(&[0.1, 0.9, 0.5]), 2);
        assert_eq!(imgs.shape, vec![3, 2, 1, 3]);
        assert_eq!(imgs.index0(0).data, from.data);
        // Pixels 1 and 2 (the two most relevant) go first, in both channels.
        assert_eq!(imgs.index0(1).data, vec![1.0, 0.0, 0.0, 4.0, 0.0, 0.0]);
        assert_eq!(imgs.index0(2).data, vec![0.0; 6]);
    }

    #[test]
    fn exact_attribution_beats_a_random_map_on_a_linear_model() {
        let (c, h, w) = (3, 8, 8);
        let (image, weights, exact) = linear_case(c, h, w, 1);
        let random = pseudo_random(h * w, 3);
        let zero = Tensor::zeros(&[c, h, w]);
        let curve = |map: &[f32], from: &Tensor, to: &Tensor| {
            linear_score(&weights, &curve_images(from, to, &ranking(map), 4))
        };
        // Deletion by the exact attribution removes the largest contributions first:
        // its curve lies on or below any other order's, so its AUC is lower.
        let (del_exact, del_random) = (curve(&exact, &image, &zero), curve(&random, &image, &zero));
        for (a, b) in del_exact.iter().zip(&del_random) {
            assert!(a <= &(b + 1e-5), "deletion curve {a} above {b}");
        }
        assert!(auc(&del_exact) < auc(&del_random));
        // Insertion from the baseline restores them first: a higher AUC.
        let (ins_exact, ins_random) = (curve(&exact, &zero, &image), curve(&random, &zero, &image));
        assert!(auc(&ins_exact) > auc(&ins_random));
        // Both curves end where they must: the baseline's score, the image's score.
        assert!(del_exact.last().unwrap().abs() < 1e-6);
        let full = linear_score(&weights, &image)[0];
        assert!((ins_exact.last().unwrap() - full).abs() < 1e-5);
    }

    #[test]
    fn blur_keeps_constants_and_smooths_an_impulse() {
        let flat = Tensor::new(vec![1, 5, 5], vec![2.0; 25]);
        let b = gaussian_blur(&flat, 11, 5.0);
        assert!(b.data.iter().all(|v| (v - 2.0).abs() < 1e-5));
        // An impulse away from the edges spreads into the normalised 2-D kernel.
        let n = 31;
        let mut impulse = vec![0.0f32; n * n];
        impulse[15 * n + 15] = 1.0;
        let b = gaussian_blur(&Tensor::new(vec![1, n, n], impulse), 11, 5.0);
        assert!((b.data.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let w0 = 1.0
            / (-5i32..=5)
                .map(|i| (-(i * i) as f32 / 50.0).exp())
                .sum::<f32>();
        assert!((b.data[15 * n + 15] - w0 * w0).abs() < 1e-6);
        assert_eq!(b.data[15 * n + 21], 0.0, "the kernel reaches 5 pixels");
    }
}
