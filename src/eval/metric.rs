//! The benchmarks that score each (image, method) into a log record and sum a method's
//! records into table cells: the Pointing Game, mIoU, and the three faithfulness
//! metrics (deletion/insertion, region perturbation, ROAD). Each is one [`Metric`]; a
//! [`Benchmark`] names one with its settings, as the command line, Python, a merge of
//! shard logs and the Ray workers all describe it.
//!
//! Records travel as JSON ([`RawValue`]) between the metric, the log, a worker and a
//! merge, so a record is serialised once and copied byte for byte from there on.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::dataset::Sample;
use super::difficult::DifficultFlags;
use super::engine::EvalMethod;
use super::faithfulness::{
    curves, region_perturbation, resample, road, CurvePair, CurveSettings, DeletionBaseline,
    RegionFill, RegionPair, RegionSettings, RoadPair, RoadSettings,
};
use super::map::Heatmap;
use super::miou::{self, IouPair, MiouScores, Threshold};
use super::pointing::{saliency_point, PointingGame, PointingPair, PointingScores};
use super::table::ResultTable;
use super::voc::VocGroundTruth;
use crate::error::Param;
use crate::gpu::GpuContext;
use crate::models::gpu::GpuModel;
use crate::models::Readout;
use crate::tensor::Tensor;

/// The model on the GPU, for metrics that score perturbed images with it.
pub struct Scoring<'a> {
    pub ctx: &'a GpuContext,
    pub model: &'a GpuModel,
    pub readout: Readout,
}

impl Scoring<'_> {
    /// The class's probability (softmax or sigmoid, as the model reads out), or with
    /// `logits` its logit, for every image of `batch`.
    pub fn class_scores(&self, batch: &Tensor, class: usize, logits: bool) -> Result<Vec<f32>> {
        let mut scores = self.model.predict(self.ctx, batch)?;
        if !logits {
            scores = self.readout.probabilities(&scores);
        }
        let classes = scores.shape[1];
        Ok((0..scores.shape[0])
            .map(|i| scores.data[i * classes + class])
            .collect())
    }
}

/// Two mean curves of one method (one per summary column), `CurvePlot::x` points each.
pub type Curves = [Vec<f64>; 2];

/// How a faithfulness metric's mean curves are plotted.
#[derive(Clone, Debug)]
pub struct CurvePlot {
    /// The two summaries (table columns; lower-cased, the plot files).
    pub names: [&'static str; 2],
    /// x labels (one per point).
    pub x: Vec<String>,
    pub y_label: &'static str,
    /// y range (`None`: the data's).
    pub y_range: Option<(f64, f64)>,
}

/// A benchmark that scores the maps of each (image, method) into one record (a list with
/// one entry per explained class) and sums a method's records into its table cells.
pub trait Metric: Send + Sync {
    /// File stem of its logs, tables and plots, and the log's `benchmark`.
    fn stem(&self) -> &'static str;
    /// Progress label.
    fn label(&self) -> &'static str;
    /// Whether the Pointing Game's center baseline may be among the methods.
    fn allows_center(&self) -> bool {
        false
    }
    /// The metric's settings, recorded in the log's run line (a rerun with other
    /// settings is refused); `readout` is the model's.
    fn settings(&self, readout: Readout) -> serde_json::Map<String, serde_json::Value>;
    /// Classes of `sample` to explain: by default every class present.
    fn classes(&self, sample: &Sample) -> Vec<usize> {
        sample.class_indices()
    }
    /// The record of one (image, method): `maps` one per class of [`Metric::classes`]
    /// (`None` for the center baseline) of the preprocessed `input` `[3, H, W]` (`None`
    /// where no image was loaded: nothing to explain).
    fn score(
        &self,
        scoring: &Scoring,
        sample: &Sample,
        maps: Option<&[Heatmap]>,
        input: Option<&Tensor>,
    ) -> Result<Box<RawValue>>;
    /// An empty table titled for this metric.
    fn table(&self) -> ResultTable;
    /// Sets the method's cells of column group `dataset`/`model` from its records (in
    /// the split's order); returns its mean curves where the metric plots them.
    fn add_cells(
        &self,
        table: &mut ResultTable,
        method: &str,
        dataset: &str,
        model: &str,
        records: &[&RawValue],
        num_classes: usize,
    ) -> Result<Option<Curves>>;
    /// How its mean curves are plotted, if it has them.
    fn plot(&self) -> Option<&CurvePlot> {
        None
    }
}

/// One record's JSON.
fn encode<T: Serialize>(outcome: &T) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(outcome).context("serialising a record")
}

/// The entries (one per class) of every record, in order.
fn decode<T: DeserializeOwned>(records: &[&RawValue]) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for r in records {
        out.extend(
            serde_json::from_str::<Vec<T>>(r.get())
                .with_context(|| format!("a record that is not this benchmark's: {}", r.get()))?,
        );
    }
    Ok(out)
}

/// The Pointing Game (TorchRay protocol) with an optional "difficult" flag table.
pub struct PointingMetric {
    pub game: PointingGame,
    pub flags: Option<DifficultFlags>,
    /// Whether a flag table was given (recorded in the run line).
    pub difficult: bool,
}

impl Metric for PointingMetric {
    fn stem(&self) -> &'static str {
        "pointing-game"
    }
    fn label(&self) -> &'static str {
        "pointing game"
    }
    fn allows_center(&self) -> bool {
        true
    }
    fn settings(&self, _: Readout) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("tolerance".into(), json!(self.game.tolerance));
        m.insert("difficult".into(), json!(self.difficult));
        m
    }
    fn classes(&self, sample: &Sample) -> Vec<usize> {
        PointingGame::targets(sample)
            .map(|t| t.class_index)
            .collect()
    }
    fn score(
        &self,
        _: &Scoring,
        s: &Sample,
        maps: Option<&[Heatmap]>,
        _: Option<&Tensor>,
    ) -> Result<Box<RawValue>> {
        let flags = self.flags.as_ref();
        let pairs = match maps {
            None => self.game.score_center(s, flags),
            Some(maps) => {
                let mut it = maps.iter();
                self.game.score_sample(s, flags, |_| {
                    let map = it.next().expect("one map per target class");
                    Ok(saliency_point(map, s.width, s.height))
                })?
            }
        };
        encode(&pairs)
    }
    fn table(&self) -> ResultTable {
        ResultTable::new("Pointing Game accuracy (%)")
    }
    fn add_cells(
        &self,
        table: &mut ResultTable,
        method: &str,
        dataset: &str,
        model: &str,
        records: &[&RawValue],
        num_classes: usize,
    ) -> Result<Option<Curves>> {
        let pairs: Vec<PointingPair> = decode(records)?;
        let scores = PointingScores::from_pairs(&pairs, num_classes)?;
        table.add_pointing(method, dataset, model, &scores);
        Ok(None)
    }
}

/// mIoU of the binarised positive part of each map.
pub struct MiouMetric {
    pub threshold: Threshold,
    /// The threshold as the user wrote it (recorded in the run line).
    pub threshold_text: String,
}

impl MiouMetric {
    /// The metric for a threshold written as `mean` or a fraction of the maximum.
    pub fn new(threshold: &str) -> Result<Self> {
        let parsed = match threshold {
            "mean" => Threshold::MeanOfPositive,
            s => match s.parse::<f32>() {
                Ok(f) if f > 0.0 && f <= 1.0 => Threshold::FractionOfMax(f),
                _ => crate::error::bail_option!(
                    Param::Threshold,
                    "must be 'mean' or a fraction of the maximum in (0, 1], got '{s}'"
                ),
            },
        };
        Ok(MiouMetric {
            threshold: parsed,
            threshold_text: threshold.to_owned(),
        })
    }
}

impl Metric for MiouMetric {
    fn stem(&self) -> &'static str {
        "miou"
    }
    fn label(&self) -> &'static str {
        "mIoU"
    }
    fn settings(&self, _: Readout) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("threshold".into(), json!(self.threshold_text));
        m
    }
    fn score(
        &self,
        _: &Scoring,
        s: &Sample,
        maps: Option<&[Heatmap]>,
        _: Option<&Tensor>,
    ) -> Result<Box<RawValue>> {
        let Some(maps) = maps else {
            bail!("mIoU has no center baseline")
        };
        let mut it = maps.iter();
        let pairs = miou::score_sample(s, self.threshold, |_| {
            Ok(it.next().expect("one map per present class").clone())
        })?;
        encode(&pairs)
    }
    fn table(&self) -> ResultTable {
        ResultTable::new("mIoU (%)")
    }
    fn add_cells(
        &self,
        table: &mut ResultTable,
        method: &str,
        dataset: &str,
        model: &str,
        records: &[&RawValue],
        num_classes: usize,
    ) -> Result<Option<Curves>> {
        let pairs: Vec<IouPair> = decode(records)?;
        let scores = MiouScores::from_pairs(&pairs, num_classes)?;
        table.add_miou(method, dataset, model, &scores);
        Ok(None)
    }
}

/// How a faithfulness metric scores one map: the input image `[3, H, W]`, the map, the
/// class and the image's noise seed give one entry.
type ScoreMap<T> = Box<dyn Fn(&Scoring, &Tensor, &[f32], usize, u64) -> Result<T> + Send + Sync>;

/// A faithfulness metric: a curve per (image, class), a table of two summary columns
/// per model and plots of two mean curves per model.
pub struct CurveMetric<T> {
    stem: &'static str,
    title: String,
    /// Cell factor and decimals of the table.
    scale: f64,
    decimals: usize,
    plot: CurvePlot,
    settings: serde_json::Value,
    score_map: ScoreMap<T>,
    /// The two summaries and the two mean curves (`points` each) of one method's
    /// entries (at least one).
    summarise: fn(&[T], usize) -> ([f64; 2], Curves),
}

/// Points of the mean deletion/insertion and region-perturbation curves plotted (0%,
/// 10%, …, 100% of the pixels or regions).
const CURVE_POINTS: usize = 11;

/// `0%`, …, `100%` in `points` steps.
fn percents(points: usize) -> Vec<String> {
    (0..points)
        .map(|i| format!("{}%", 100 * i / (points - 1)))
        .collect()
}

/// The mean over `curves` of each resampled to `points`.
fn mean_curve(curves: impl Iterator<Item = Vec<f32>>, points: usize) -> Vec<f64> {
    let mut sum = vec![0.0; points];
    let mut n = 0usize;
    for curve in curves {
        for (s, v) in sum.iter_mut().zip(resample(&curve, points)) {
            *s += v;
        }
        n += 1;
    }
    sum.iter().map(|s| s / n.max(1) as f64).collect()
}

/// The mean of `v` (NaN when empty).
pub(crate) fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The mean of `f` over `entries`.
fn mean_of<T>(entries: &[T], f: impl Fn(&T) -> f64) -> f64 {
    mean(&entries.iter().map(f).collect::<Vec<_>>())
}

/// f(x) − f(x after k regions) along a region-perturbation curve.
fn logit_drop(curve: &[f32]) -> Vec<f32> {
    curve.iter().map(|v| curve[0] - v).collect()
}

/// A seed from an image id: the noise of a perturbation depends on the image only, so
/// every method meets the same draw.
fn image_seed(id: &str) -> u64 {
    id.bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(b as u64))
}

impl CurveMetric<CurvePair> {
    /// Deletion and insertion (RISE).
    pub fn deletion_insertion(settings: CurveSettings) -> Self {
        CurveMetric {
            stem: "faithfulness",
            title: format!(
                "Deletion AUC (lower is better) and insertion AUC (higher is better), \
                 x100; deletion towards the {} baseline, {} pixels per step at 224x224",
                settings.baseline.name(),
                settings.step_at_224
            ),
            scale: 100.0,
            decimals: 1,
            plot: CurvePlot {
                names: ["deletion", "insertion"],
                x: percents(CURVE_POINTS),
                y_label: "probability",
                y_range: Some((0.0, 1.0)),
            },
            settings: json!({"step": settings.step_at_224, "baseline": settings.baseline.name()}),
            score_map: Box::new(move |sc, image, map, class, _| {
                curves(image, map, class, &settings, |b| {
                    sc.class_scores(b, class, false)
                })
            }),
            summarise: |pairs, points| {
                (
                    [
                        mean_of(pairs, |p| p.deletion_auc),
                        mean_of(pairs, |p| p.insertion_auc),
                    ],
                    [
                        mean_curve(pairs.iter().map(|p| p.deletion.clone()), points),
                        mean_curve(pairs.iter().map(|p| p.insertion.clone()), points),
                    ],
                )
            },
        }
    }
}

impl CurveMetric<RegionPair> {
    /// Region perturbation, MoRF and LeRF, and their AOPC (Samek et al.).
    pub fn region_perturbation(settings: RegionSettings) -> Self {
        CurveMetric {
            stem: "region-perturbation",
            title: format!(
                "AOPC of the class's logit, MoRF (higher is better) and LeRF (lower \
                 is better); up to {} patches of {}x{} px replaced by {}",
                settings.steps,
                settings.patch,
                settings.patch,
                settings.fill.name()
            ),
            scale: 1.0,
            decimals: 2,
            plot: CurvePlot {
                names: ["MoRF", "LeRF"],
                x: percents(CURVE_POINTS),
                y_label: "logit drop (share of the regions replaced on x)",
                y_range: None,
            },
            settings: json!({
                "patch": settings.patch, "regions": settings.steps, "fill": settings.fill.name(),
            }),
            score_map: Box::new(move |sc, image, map, class, seed| {
                region_perturbation(image, map, class, &settings, seed, |b| {
                    sc.class_scores(b, class, true)
                })
            }),
            summarise: |pairs, points| {
                (
                    [
                        mean_of(pairs, |p| p.aopc_morf),
                        mean_of(pairs, |p| p.aopc_lerf),
                    ],
                    [
                        mean_curve(pairs.iter().map(|p| logit_drop(&p.morf)), points),
                        mean_curve(pairs.iter().map(|p| logit_drop(&p.lerf)), points),
                    ],
                )
            },
        }
    }
}

impl CurveMetric<RoadPair> {
    /// ROAD: 10…90% of the pixels removed by noisy linear imputation (Rong et al.).
    pub fn road(noise: f32) -> Self {
        let settings = RoadSettings {
            percents: (1..=9).map(|k| 10 * k).collect(),
            noise,
        };
        let x = settings.percents.iter().map(|p| format!("{p}%")).collect();
        CurveMetric {
            stem: "road",
            title: format!(
                "ROAD: mean probability of the class with 10..90% of the pixels \
                 removed, MoRF (lower is better) and LeRF (higher is better), x100; \
                 imputation noise {noise}"
            ),
            scale: 100.0,
            decimals: 1,
            plot: CurvePlot {
                names: ["MoRF", "LeRF"],
                x,
                y_label: "probability (share of the pixels removed on x)",
                y_range: Some((0.0, 1.0)),
            },
            settings: json!({"imputation_noise": noise}),
            score_map: Box::new(move |sc, image, map, class, seed| {
                road(image, map, class, &settings, seed, |b| {
                    sc.class_scores(b, class, false)
                })
            }),
            // Every entry has one point per percentage.
            summarise: |pairs, points| {
                (
                    [
                        mean_of(pairs, |p| p.morf_mean),
                        mean_of(pairs, |p| p.lerf_mean),
                    ],
                    [
                        mean_curve(pairs.iter().map(|p| p.morf.clone()), points),
                        mean_curve(pairs.iter().map(|p| p.lerf.clone()), points),
                    ],
                )
            },
        }
    }
}

impl<T: Serialize + DeserializeOwned> Metric for CurveMetric<T> {
    fn stem(&self) -> &'static str {
        self.stem
    }
    fn label(&self) -> &'static str {
        self.stem
    }
    fn settings(&self, readout: Readout) -> serde_json::Map<String, serde_json::Value> {
        let mut m = self.settings.as_object().cloned().unwrap_or_default();
        m.insert("readout".into(), json!(readout.name()));
        m
    }
    fn score(
        &self,
        scoring: &Scoring,
        s: &Sample,
        maps: Option<&[Heatmap]>,
        input: Option<&Tensor>,
    ) -> Result<Box<RawValue>> {
        let Some(maps) = maps else {
            bail!("{} has no center baseline", self.stem)
        };
        let mut entries = Vec::with_capacity(maps.len());
        if let Some(input) = input {
            let seed = image_seed(&s.id);
            for (map, class) in maps.iter().zip(self.classes(s)) {
                entries.push((self.score_map)(scoring, input, map.values(), class, seed)?);
            }
        }
        encode(&entries)
    }
    fn table(&self) -> ResultTable {
        let mut table = ResultTable::new(&self.title);
        table.scale = self.scale;
        table.decimals = self.decimals;
        table
    }
    fn add_cells(
        &self,
        table: &mut ResultTable,
        method: &str,
        dataset: &str,
        model: &str,
        records: &[&RawValue],
        _: usize,
    ) -> Result<Option<Curves>> {
        let entries: Vec<T> = decode(records)?;
        let summary = (!entries.is_empty()).then(|| (self.summarise)(&entries, self.plot.x.len()));
        for (i, name) in self.plot.names.iter().enumerate() {
            let column = format!("{dataset}/{model} {name}");
            table.set(method, &column, summary.as_ref().map(|s| s.0[i]));
        }
        Ok(summary.map(|s| s.1))
    }
    fn plot(&self) -> Option<&CurvePlot> {
        Some(&self.plot)
    }
}

/// A benchmark with its settings: what `rsp eval METRIC`, Python's `rsp.eval_*` and a
/// shard log's run line name.
#[derive(Clone, Debug, PartialEq)]
pub enum Benchmark {
    /// The Pointing Game: hit radius in pixels, and the EBP "difficult" flag table.
    PointingGame {
        tolerance: f64,
        difficult: Option<PathBuf>,
    },
    /// mIoU with a binarisation threshold (`mean` or a fraction of the maximum).
    Miou { threshold: String },
    /// Deletion and insertion (RISE).
    DeletionInsertion(CurveSettings),
    /// Region perturbation (AOPC).
    RegionPerturbation(RegionSettings),
    /// ROAD with its imputation noise.
    Road { imputation_noise: f32 },
}

impl Benchmark {
    /// The metric, ready to score (reads the difficult flag table of `num_classes`).
    pub fn metric(&self, num_classes: usize) -> Result<Box<dyn Metric>> {
        Ok(match self {
            Benchmark::PointingGame {
                tolerance,
                difficult,
            } => Box::new(PointingMetric {
                game: PointingGame::new(*tolerance),
                flags: difficult
                    .as_ref()
                    .map(|p| DifficultFlags::read(p, num_classes))
                    .transpose()?,
                difficult: difficult.is_some(),
            }),
            Benchmark::Miou { threshold } => Box::new(MiouMetric::new(threshold)?),
            Benchmark::DeletionInsertion(s) => Box::new(CurveMetric::deletion_insertion(*s)),
            Benchmark::RegionPerturbation(s) => Box::new(CurveMetric::region_perturbation(*s)),
            Benchmark::Road { imputation_noise } => Box::new(CurveMetric::road(*imputation_noise)),
        })
    }

    /// The ground truth it reads.
    pub fn truth(&self) -> VocGroundTruth {
        match self {
            Benchmark::Miou { .. } => VocGroundTruth::Segmentation,
            _ => VocGroundTruth::Boxes,
        }
    }

    /// The metric as it sums a log into a table (no flag table is read: the records
    /// hold what it decided).
    pub fn summing(&self) -> Result<Box<dyn Metric>> {
        match self {
            Benchmark::PointingGame { tolerance, .. } => Ok(Box::new(PointingMetric {
                game: PointingGame::new(*tolerance),
                flags: None,
                difficult: false,
            })),
            other => other.metric(0),
        }
    }

    /// The benchmark a log's run line describes (`benchmark` and the settings).
    pub fn from_run_line(line: &serde_json::Value) -> Result<Benchmark> {
        let text = |key: &str| line.get(key).and_then(|v| v.as_str());
        let number = |key: &str| line.get(key).and_then(|v| v.as_f64());
        let missing = |key: &str| anyhow::anyhow!("the run line has no {key}: {line}");
        let stem = text("benchmark").ok_or_else(|| missing("benchmark"))?;
        Ok(match stem {
            "pointing-game" => Benchmark::PointingGame {
                tolerance: number("tolerance").ok_or_else(|| missing("tolerance"))?,
                difficult: None,
            },
            "miou" => Benchmark::Miou {
                threshold: text("threshold")
                    .ok_or_else(|| missing("threshold"))?
                    .to_owned(),
            },
            "faithfulness" => Benchmark::DeletionInsertion(CurveSettings {
                step_at_224: number("step").ok_or_else(|| missing("step"))? as usize,
                baseline: match text("baseline") {
                    Some("mean") => DeletionBaseline::Mean,
                    Some("blur") => DeletionBaseline::Blur,
                    _ => return Err(missing("baseline")),
                },
            }),
            "region-perturbation" => Benchmark::RegionPerturbation(RegionSettings {
                patch: number("patch").ok_or_else(|| missing("patch"))? as usize,
                steps: number("regions").ok_or_else(|| missing("regions"))? as usize,
                fill: match text("fill") {
                    Some("noise") => RegionFill::Noise,
                    Some("mean") => RegionFill::Mean,
                    _ => return Err(missing("fill")),
                },
            }),
            "road" => Benchmark::Road {
                imputation_noise: number("imputation_noise")
                    .ok_or_else(|| missing("imputation_noise"))?
                    as f32,
            },
            other => bail!("the run line names an unknown benchmark '{other}'"),
        })
    }
}

/// Whether `method` may be scored by `metric`.
pub fn check_methods(metric: &dyn Metric, methods: &[EvalMethod]) -> Result<()> {
    if !metric.allows_center() && methods.contains(&EvalMethod::Center) {
        crate::error::bail_option!(
            Param::Methods,
            "names '{}', a Pointing Game baseline only",
            EvalMethod::Center.name()
        );
    }
    Ok(())
}
