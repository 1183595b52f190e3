//! `rsp eval pointing-game|miou|sensitivity|faithfulness`: the benchmarks end to end —
//! dataset, preprocessing, batched GPU maps for every method, scoring, a resumable JSONL
//! log per (benchmark, dataset, model), and the final table (text, CSV, Markdown) or
//! curves.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use super::args::DeviceArgs;
use super::output::{check_output_dir, create_output_dir};
use super::plot::{line_chart, Series};
use crate::eval::dataset::{Dataset, Sample};
use crate::eval::difficult::DifficultFlags;
use crate::eval::engine::{EvalMethod, MapEngine};
use crate::eval::faithfulness::{
    curves, region_perturbation, resample, road, CurvePair, CurveSettings, DeletionBaseline,
    RegionFill, RegionPair, RegionSettings, RoadPair, RoadSettings,
};
use crate::eval::map::Heatmap;
use crate::eval::pointing::{PointingGame, DEFAULT_TOLERANCE};
use crate::eval::results::{Record, ResultsLog};
use crate::eval::runner::{
    self, load_model, model_label, parse_methods, run_map_metric, walk_dataset, MapMetric,
    MapOutcome, MapRun, MiouMetric, PointingMetric, Progress, RunOptions, Scorer, Walked,
};
use crate::eval::similarity;
use crate::eval::table::ResultTable;
use crate::eval::voc::VocGroundTruth;
use crate::explain::Method;
use crate::files::write_atomic;
use crate::gpu::GpuContext;
use crate::models::gpu::GpuModel;
use crate::models::randomize::{cascade_order, reinitialise};
use crate::models::Readout;
use crate::preprocess::{load_image, preprocess_whole, Normalisation};
use crate::tensor::{top_k, Tensor};

/// `rsp eval`'s arguments.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub benchmark: Benchmark,
}

/// The benchmarks.
#[derive(Subcommand, Debug)]
pub enum Benchmark {
    /// Pointing Game (TorchRay protocol): for each (image, present class), is the map's
    /// maximum within --tolerance px of the class's ground truth? Mean over classes.
    PointingGame(PointingArgs),
    /// mIoU of each map's positive part, binarised, against the class's segmentation.
    Miou(MiouArgs),
    /// Model sensitivity (Adebayo et al. 2018): re-initialise layers from the logits
    /// down, and measure how much each method's maps change.
    Sensitivity(SensitivityArgs),
    /// Deletion and insertion (Petsiuk et al., RISE, 2018): for each (image, present
    /// class), pixels ranked by the map are deleted towards a baseline, or restored
    /// into a blurred image, a step at a time; the class's probability after each step
    /// (softmax or sigmoid, as the model reads out) and the area under each curve.
    /// Lower deletion AUC and higher insertion AUC are more faithful. With --metric
    /// region-perturbation (Samek et al. 2017): --patch-sized patches ranked by summed
    /// relevance are replaced (--fill) most relevant first (MoRF) or least relevant
    /// first (LeRF), up to --regions of them; AOPC is the mean drop of the class's
    /// logit. Higher MoRF and lower LeRF AOPC are more faithful. With --metric road
    /// (Rong et al. 2022): the top (MoRF) or bottom (LeRF) 10…90% of pixels removed and
    /// filled by noisy linear imputation from their neighbours; the class's probability.
    /// Lower MoRF and higher LeRF are more faithful.
    Faithfulness(FaithfulnessArgs),
}

/// Arguments every benchmark shares.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// voc07, coco14, or a directory in VOC layout (e.g. written by `rsp synth`).
    #[arg(long)]
    pub dataset: String,
    /// Dataset root: voc07 — the VOC2007 folder (JPEGImages, Annotations, ImageSets);
    /// coco14 — the folder holding annotations/instances_val2014.json and val2014/.
    /// Not needed when --dataset is a directory.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Image list of VOC layouts: ImageSets/Main/SPLIT.txt.
    #[arg(long, default_value = runner::DEFAULT_SPLIT)]
    pub split: String,
    /// Classifier weights (safetensors, torchvision naming) whose outputs are the
    /// dataset's classes; repeat for several models (one column group each).
    #[arg(long, required = true)]
    pub weights: Vec<PathBuf>,
    #[arg(long, help = methods_help(), default_value_t = all_methods())]
    pub methods: String,
    /// Resize each image's shorter side to this many pixels (aspect kept, no crop);
    /// 0 keeps the original size.
    #[arg(long, default_value_t = RunOptions::DEFAULT.size)]
    pub size: u32,
    /// Pixel normalisation of the model's training.
    #[arg(long, value_enum, default_value_t = RunOptions::DEFAULT.norm)]
    pub norm: Normalisation,
    /// (image, class) pairs per GPU batch.
    #[arg(long, default_value_t = RunOptions::DEFAULT.batch)]
    pub batch: usize,
    /// Evaluate only the first N images of the split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Directory for the JSONL logs (a rerun resumes from them), tables and plots.
    #[arg(long, default_value = runner::DEFAULT_OUT)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Stop after this many newly scored images, without a table (simulates an
    /// interrupted run; used by the resume test).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

/// `--methods`' help: the names of [`Method::ALL`], and the Pointing Game's extra.
fn methods_help() -> String {
    format!(
        "Comma-separated methods ({}; pointing-game also {})",
        Method::ALL.map(Method::name).join(", "),
        EvalMethod::Center.name()
    )
}

/// `--methods`' default: every method of [`Method::ALL`].
fn all_methods() -> String {
    Method::ALL.map(Method::name).join(",")
}

/// `rsp eval pointing-game`.
#[derive(Args, Debug)]
pub struct PointingArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// EBP "difficult" flag table (one row per image: id, then one 0/1 per class), for
    /// the "difficult" column; read in place.
    #[arg(long)]
    pub difficult: Option<PathBuf>,
    /// Hit radius in pixels of the original image (strict).
    #[arg(long, default_value_t = DEFAULT_TOLERANCE)]
    pub tolerance: f64,
}

/// `rsp eval miou`.
#[derive(Args, Debug)]
pub struct MiouArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Binarisation threshold: "mean" (the mean of the map's positive values) or a
    /// fraction of the map's maximum, e.g. 0.5.
    #[arg(long, default_value = runner::DEFAULT_THRESHOLD)]
    pub threshold: String,
}

/// `rsp eval sensitivity`.
#[derive(Args, Debug)]
pub struct SensitivityArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Images explained (the first N of the split), each for the original model's
    /// top-1 class.
    #[arg(long, default_value_t = 16)]
    pub images: usize,
    /// Seed of the re-initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `rsp eval faithfulness`.
#[derive(Args, Debug)]
pub struct FaithfulnessArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Pixels changed per step for a 224×224 image, scaled to the image's area (RISE:
    /// 224, i.e. 224 steps).
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u64).range(1..))]
    pub step: u64,
    /// What deleted pixels become: mean (zero after normalisation, RISE) or blur.
    #[arg(long, value_enum, default_value_t = DeletionBaseline::Mean)]
    pub baseline: DeletionBaseline,
    /// deletion-insertion (RISE), region-perturbation (AOPC) or road (ROAD); each has its
    /// own log, table and plots.
    #[arg(long, value_enum, default_value_t = FaithfulnessMetric::DeletionInsertion)]
    pub metric: FaithfulnessMetric,
    /// Region perturbation: patch side in pixels.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub patch: u64,
    /// Region perturbation: most patches replaced.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub regions: u64,
    /// Region perturbation: what replaced patches become.
    #[arg(long, value_enum, default_value_t = RegionFill::Noise)]
    pub fill: RegionFill,
    /// ROAD: standard deviation of the noise added to imputed pixels (normalised units).
    #[arg(long, default_value_t = 0.01)]
    pub imputation_noise: f32,
}

/// `rsp eval faithfulness --metric`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FaithfulnessMetric {
    /// Deletion and insertion curves and their AUC (RISE).
    DeletionInsertion,
    /// MoRF and LeRF region perturbation and their AOPC (Samek et al.).
    RegionPerturbation,
    /// ROAD: MoRF and LeRF removal with noisy linear imputation (Rong et al.).
    Road,
}

/// Runs one benchmark.
pub fn run(args: &EvalArgs) -> Result<()> {
    match &args.benchmark {
        Benchmark::PointingGame(a) => run_pointing(a),
        Benchmark::Miou(a) => run_miou(a),
        Benchmark::Sensitivity(a) => run_sensitivity(a),
        Benchmark::Faithfulness(a) => run_faithfulness(a),
    }
}

/// The dataset behind `--dataset`/`--root`/`--split`, and its label in tables.
fn open_dataset(c: &CommonArgs, truth: VocGroundTruth) -> Result<(Box<dyn Dataset>, String)> {
    runner::open_dataset(&c.dataset, c.root.as_deref(), &c.split, truth)
}

/// What the dataset walk needs of the common arguments.
fn run_options(c: &CommonArgs) -> RunOptions {
    RunOptions {
        size: c.size,
        norm: c.norm,
        batch: c.batch,
        limit: c.limit,
        stop_after: c.stop_after,
    }
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// The dataset walk's progress as a bar on the terminal.
#[derive(Default)]
struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn begin(&mut self, images: usize, label: &str) {
        self.0 = Some(progress(images, label));
    }
    fn advance(&mut self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }
    fn end(&mut self, stopped: bool) {
        if let Some(bar) = self.0.take() {
            if stopped {
                bar.abandon();
            } else {
                bar.finish_and_clear();
            }
        }
    }
}

/// Says that `--stop-after` cut the run short, naming the log a rerun resumes from.
fn say_stopped(images: usize, log: &Path) {
    println!(
        "stopped after {images} new images (--stop-after); rerun to resume from {}",
        log.display()
    );
}

/// The model on the GPU as a faithfulness metric scores perturbed images with it.
struct Scoring<'a> {
    ctx: &'a GpuContext,
    model: &'a GpuModel,
    readout: Readout,
}

impl Scoring<'_> {
    /// The class's probability (softmax or sigmoid, as the model reads out), or with
    /// `logits` its logit, for every image of `batch`.
    fn class_scores(&self, batch: &Tensor, class: usize, logits: bool) -> Result<Vec<f32>> {
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

/// How a faithfulness metric scores one map: the input image `[3, H, W]`, the map, the
/// class and the image's noise seed give one record.
type ScoreMap<T> = Box<dyn Fn(&Scoring, &Tensor, &[f32], usize, u64) -> Result<T>>;

/// Faithfulness scoring into its log: one record per (present class) map.
struct CurveScorer<'a, T> {
    scoring: Scoring<'a>,
    score_map: &'a ScoreMap<T>,
    log: ResultsLog<Vec<T>>,
}

impl<T: Serialize + DeserializeOwned> Scorer for CurveScorer<'_, T> {
    fn is_done(&self, image: &str, method: &str) -> bool {
        self.log.is_done(image, method)
    }
    fn score(
        &mut self,
        s: &Sample,
        m: EvalMethod,
        maps: Option<&[Heatmap]>,
        input: Option<&Tensor>,
    ) -> Result<()> {
        let maps = maps.expect("faithfulness has no center baseline");
        let mut records = Vec::with_capacity(maps.len());
        if let Some(input) = input {
            // Noise depends on the image only, so every method meets the same draw.
            let seed = image_seed(&s.id);
            for (map, class) in maps.iter().zip(self.classes(s)) {
                records.push((self.score_map)(
                    &self.scoring,
                    input,
                    map.values(),
                    class,
                    seed,
                )?);
            }
        }
        self.log.append(Record {
            image: s.id.clone(),
            method: m.name().into(),
            outcome: records,
        })
    }
}

/// A seed from an image id.
fn image_seed(id: &str) -> u64 {
    id.bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(b as u64))
}

/// A method's two summary values (table cells) and two mean curves (plots).
type Summary = ([f64; 2], [Vec<f64>; 2]);

/// One faithfulness metric as `rsp eval faithfulness` runs it: a log, a table of two
/// summary columns per model and plots of two mean curves per model.
struct CurveMetric<T> {
    /// File stem of its logs, tables and plots.
    stem: &'static str,
    title: String,
    /// Cell factor and decimals of the table.
    scale: f64,
    decimals: usize,
    /// The two summaries (table columns, and lower-cased the plot files).
    names: [&'static str; 2],
    /// x labels of the plotted mean curves (one per point).
    x: Vec<String>,
    /// What the plotted curves are, and their y range (`None`: the data's).
    y_label: &'static str,
    y_range: Option<(f64, f64)>,
    /// Settings recorded in the log's run line.
    settings: serde_json::Value,
    score_map: ScoreMap<T>,
    /// The two summaries and the two mean curves (`x.len()` points) of one method's
    /// records (at least one).
    summarise: fn(&[&T], usize) -> Summary,
}

/// Points of the mean deletion/insertion and region-perturbation curves plotted (0%,
/// 10%, …, 100% of the pixels or regions).
const CURVE_POINTS: usize = 11;

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

/// The mean of `f` over `records`.
fn mean_of<T>(records: &[&T], f: impl Fn(&T) -> f64) -> f64 {
    mean(&records.iter().map(|r| f(r)).collect::<Vec<_>>())
}

/// f(x) − f(x after k regions) along a region-perturbation curve.
fn logit_drop(curve: &[f32]) -> Vec<f32> {
    curve.iter().map(|v| curve[0] - v).collect()
}

fn run_faithfulness(a: &FaithfulnessArgs) -> Result<()> {
    let percents_of = |points: usize| -> Vec<String> {
        (0..points)
            .map(|i| format!("{}%", 100 * i / (points - 1)))
            .collect()
    };
    match a.metric {
        FaithfulnessMetric::DeletionInsertion => {
            let settings = CurveSettings {
                step_at_224: a.step as usize,
                baseline: a.baseline,
            };
            run_curve_metric(
                &a.common,
                CurveMetric {
                    stem: "faithfulness",
                    title: format!(
                        "Deletion AUC (lower is better) and insertion AUC (higher is better), \
                         x100; deletion towards the {} baseline, {} pixels per step at 224x224",
                        a.baseline.name(),
                        a.step
                    ),
                    scale: 100.0,
                    decimals: 1,
                    names: ["deletion", "insertion"],
                    x: percents_of(CURVE_POINTS),
                    y_label: "probability",
                    y_range: Some((0.0, 1.0)),
                    settings: json!({"step": a.step, "baseline": a.baseline.name()}),
                    score_map: Box::new(move |sc, image, map, class, _| {
                        curves(image, map, class, &settings, |b| {
                            sc.class_scores(b, class, false)
                        })
                    }),
                    summarise: |pairs: &[&CurvePair], points| {
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
                },
            )
        }
        FaithfulnessMetric::RegionPerturbation => {
            let settings = RegionSettings {
                patch: a.patch as usize,
                steps: a.regions as usize,
                fill: a.fill,
            };
            run_curve_metric(
                &a.common,
                CurveMetric {
                    stem: "region-perturbation",
                    title: format!(
                        "AOPC of the class's logit, MoRF (higher is better) and LeRF (lower \
                         is better); up to {} patches of {}x{} px replaced by {}",
                        a.regions,
                        a.patch,
                        a.patch,
                        a.fill.name()
                    ),
                    scale: 1.0,
                    decimals: 2,
                    names: ["MoRF", "LeRF"],
                    x: percents_of(CURVE_POINTS),
                    y_label: "logit drop (share of the regions replaced on x)",
                    y_range: None,
                    settings: json!({
                        "patch": a.patch, "regions": a.regions, "fill": a.fill.name(),
                    }),
                    score_map: Box::new(move |sc, image, map, class, seed| {
                        region_perturbation(image, map, class, &settings, seed, |b| {
                            sc.class_scores(b, class, true)
                        })
                    }),
                    summarise: |pairs: &[&RegionPair], points| {
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
                },
            )
        }
        FaithfulnessMetric::Road => {
            let settings = RoadSettings {
                percents: (1..=9).map(|k| 10 * k).collect(),
                noise: a.imputation_noise,
            };
            let x = settings.percents.iter().map(|p| format!("{p}%")).collect();
            run_curve_metric(
                &a.common,
                CurveMetric {
                    stem: "road",
                    title: format!(
                        "ROAD: mean probability of the class with 10..90% of the pixels \
                         removed, MoRF (lower is better) and LeRF (higher is better), x100; \
                         imputation noise {}",
                        a.imputation_noise
                    ),
                    scale: 100.0,
                    decimals: 1,
                    names: ["MoRF", "LeRF"],
                    x,
                    y_label: "probability (share of the pixels removed on x)",
                    y_range: Some((0.0, 1.0)),
                    settings: json!({"imputation_noise": a.imputation_noise}),
                    score_map: Box::new(move |sc, image, map, class, seed| {
                        road(image, map, class, &settings, seed, |b| {
                            sc.class_scores(b, class, false)
                        })
                    }),
                    // Every record has one point per percentage.
                    summarise: |pairs: &[&RoadPair], points| {
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
                },
            )
        }
    }
}

/// Runs one faithfulness metric over the dataset for every `--weights` model: its log
/// (resumed), its table, and plots of its two mean curves per model.
fn run_curve_metric<T: Serialize + DeserializeOwned>(
    c: &CommonArgs,
    metric: CurveMetric<T>,
) -> Result<()> {
    let (ds, ds_label) = open_dataset(c, VocGroundTruth::Boxes)?;
    let methods = parse_methods(&c.methods, false)?;
    run_options(c).validate()?;
    check_output_dir(&c.out)?;
    let ctx = gpu(c)?;
    let mut table = ResultTable::new(&metric.title);
    table.scale = metric.scale;
    table.decimals = metric.decimals;
    for wpath in &c.weights {
        let model = load_model(wpath, ds.num_classes())?;
        create_output_dir(&c.out)?;
        let label = model_label(wpath);
        let log_path = c
            .out
            .join(format!("{}.{ds_label}.{label}.jsonl", metric.stem));
        let mut run = json!({
            "benchmark": metric.stem, "dataset": ds_label, "split": c.split,
            "model": label, "size": c.size, "norm": format!("{:?}", c.norm),
            "readout": model.readout.name(),
        });
        if let (Some(run), Some(extra)) = (run.as_object_mut(), metric.settings.as_object()) {
            run.extend(extra.clone());
        }
        let engine = MapEngine {
            ctx: &ctx,
            model: GpuModel::upload(&ctx, &model),
        };
        let mut scorer = CurveScorer {
            scoring: Scoring {
                ctx: &ctx,
                model: &engine.model,
                readout: model.readout,
            },
            score_map: &metric.score_map,
            log: ResultsLog::open(&log_path, &run)?,
        };
        let walked = walk_dataset(
            &run_options(c),
            ds.as_ref(),
            &engine,
            &methods,
            &mut scorer,
            &mut Bar::default(),
            &format!("{}, {label}", metric.stem),
        )?;
        if let Walked::Stopped(images) = walked {
            say_stopped(images, &log_path);
            return Ok(());
        }
        let log = scorer.log;
        let mut curves_of: Vec<(&str, [Vec<f64>; 2])> = Vec::new();
        for m in &methods {
            let records: Vec<&T> = log
                .records()
                .iter()
                .filter(|r| r.method == m.name())
                .flat_map(|r| r.outcome.iter())
                .collect();
            let summary =
                (!records.is_empty()).then(|| (metric.summarise)(&records, metric.x.len()));
            for (i, name) in metric.names.iter().enumerate() {
                let column = format!("{ds_label}/{label} {name}");
                table.set(m.name(), &column, summary.as_ref().map(|s| s.0[i]));
            }
            if let Some((_, curves)) = summary {
                curves_of.push((m.name(), curves));
            }
        }
        if curves_of.is_empty() {
            continue;
        }
        let y_range = metric.y_range.unwrap_or_else(|| {
            let all = curves_of.iter().flat_map(|(_, c)| c.iter().flatten());
            let (lo, hi) = all.fold((0.0f64, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            (lo, hi.max(lo + 1e-6))
        });
        for (i, name) in metric.names.iter().enumerate() {
            let path = c.out.join(format!(
                "{}.{ds_label}.{label}.{}.png",
                metric.stem,
                name.to_lowercase()
            ));
            let series: Vec<Series> = curves_of
                .iter()
                .map(|(method, curves)| Series {
                    name: method.to_string(),
                    values: curves[i].clone(),
                })
                .collect();
            line_chart(
                &path,
                &format!("{} {name} on {ds_label}, {label}", metric.stem),
                &metric.x,
                metric.y_label,
                y_range,
                &series,
                (900, 600),
            )?;
            println!("plot: {}", path.display());
        }
    }
    write_table(&table, &c.out, &format!("{}.{ds_label}", metric.stem))
}

fn gpu(c: &CommonArgs) -> Result<GpuContext> {
    GpuContext::new(&c.device.context_options())
}

fn write_table(table: &ResultTable, out: &Path, stem: &str) -> Result<()> {
    print!("{}", table.to_text());
    let csv = out.join(format!("{stem}.csv"));
    let md = out.join(format!("{stem}.md"));
    table.write_csv(&csv)?;
    table.write_markdown(&md)?;
    println!("table: {} and {}", csv.display(), md.display());
    Ok(())
}

fn run_pointing(a: &PointingArgs) -> Result<()> {
    let c = &a.common;
    let (ds, ds_label) = open_dataset(c, VocGroundTruth::Boxes)?;
    let flags = a
        .difficult
        .as_ref()
        .map(|p| DifficultFlags::read(p, ds.num_classes()))
        .transpose()?;
    let methods = parse_methods(&c.methods, true)?;
    let metric = PointingMetric {
        game: PointingGame::new(a.tolerance),
        flags: flags.as_ref(),
        difficult: a.difficult.is_some(),
    };
    run_map(c, &metric, ds.as_ref(), &ds_label, &methods)
}

fn run_miou(a: &MiouArgs) -> Result<()> {
    let c = &a.common;
    let metric = MiouMetric::new(&a.threshold)?;
    let (ds, ds_label) = open_dataset(c, MiouMetric::TRUTH)?;
    let methods = parse_methods(&c.methods, false)?;
    run_map(c, &metric, ds.as_ref(), &ds_label, &methods)
}

/// A map metric end to end: the runner, then the table written (or the stop said).
fn run_map<M: MapMetric>(
    c: &CommonArgs,
    metric: &M,
    ds: &dyn Dataset,
    ds_label: &str,
    methods: &[EvalMethod],
) -> Result<()> {
    let options = run_options(c);
    options.validate()?;
    check_output_dir(&c.out)?;
    let ctx = gpu(c)?;
    let run = MapRun {
        dataset: ds,
        dataset_label: ds_label,
        split: &c.split,
        weights: &c.weights,
        methods,
        options: &options,
        out: &c.out,
    };
    match run_map_metric(metric, &run, &ctx, &mut Bar::default())? {
        MapOutcome::Table(table) => write_table(&table, &c.out, &format!("{}.{ds_label}", M::STEM)),
        MapOutcome::Stopped { images, log } => {
            say_stopped(images, &log);
            Ok(())
        }
    }
}

/// Mean similarity of each method's maps to the original model's, per cascade step.
struct Curve {
    method: Method,
    spearman: Vec<f64>,
    spearman_abs: Vec<f64>,
    ssim: Vec<f64>,
}

fn run_sensitivity(a: &SensitivityArgs) -> Result<()> {
    let c = &a.common;
    ensure!(
        c.weights.len() == 1,
        "sensitivity takes one --weights file (got {})",
        c.weights.len()
    );
    let (ds, _) = open_dataset(c, VocGroundTruth::Boxes)?;
    let methods: Vec<Method> = parse_methods(&c.methods, false)?
        .into_iter()
        .filter_map(|m| match m {
            EvalMethod::Engine(m) => Some(m),
            EvalMethod::Center => None,
        })
        .collect();
    check_output_dir(&c.out)?;
    let ctx = gpu(c)?;
    let original = load_model(&c.weights[0], ds.num_classes())?;
    create_output_dir(&c.out)?;
    let label = model_label(&c.weights[0]);
    let n = a.images.min(ds.len());
    ensure!(n > 0, "no images to explain");
    let mut inputs = Vec::new();
    for i in 0..n {
        let s = ds.sample(i)?;
        let img = load_image(&s.image_path)?;
        inputs.push(preprocess_whole(
            &img,
            (c.size > 0).then_some(c.size),
            c.norm,
        ));
    }
    ensure!(
        inputs.iter().all(|t| t.shape == inputs[0].shape),
        "sensitivity needs images of one size (use --size)"
    );
    let batch = Tensor::stack(&inputs);
    let engine = MapEngine {
        ctx: &ctx,
        model: GpuModel::upload(&ctx, &original),
    };
    // Targets: the original model's top-1 class, kept through the cascade.
    let (_, logits) = engine.maps(Method::Gradient, &batch, &vec![0; n])?;
    let classes = logits.shape[1];
    let targets: Vec<usize> = logits
        .data
        .chunks(classes)
        .map(|row| top_k(row, 1)[0])
        .collect();
    let maps_of = |engine: &MapEngine, m: Method| -> Result<Vec<Heatmap>> {
        Ok(engine.maps(m, &batch, &targets)?.0)
    };
    let reference: Vec<Vec<Heatmap>> = methods
        .iter()
        .map(|&m| maps_of(&engine, m))
        .collect::<Result<_>>()?;
    drop(engine);
    let order = cascade_order(&original);
    let mut curves: Vec<Curve> = methods
        .iter()
        .map(|&method| Curve {
            method,
            spearman: vec![1.0],
            spearman_abs: vec![1.0],
            ssim: vec![1.0],
        })
        .collect();
    let mut model = original.clone();
    let bar = progress(order.len(), &format!("cascade, {label}"));
    for layer in &order {
        ensure!(reinitialise(&mut model, layer, a.seed), "no layer {layer}");
        let engine = MapEngine {
            ctx: &ctx,
            model: GpuModel::upload(&ctx, &model),
        };
        for (curve, refs) in curves.iter_mut().zip(&reference) {
            let maps = maps_of(&engine, curve.method)?;
            let (mut s, mut sa, mut ss) = (Vec::new(), Vec::new(), Vec::new());
            for (m, r) in maps.iter().zip(refs) {
                let sim = similarity::compare(&normalised(m)?, &normalised(r)?, 2.0)?;
                s.extend(sim.spearman);
                sa.extend(sim.spearman_abs);
                ss.push(sim.ssim);
            }
            curve.spearman.push(mean(&s));
            curve.spearman_abs.push(mean(&sa));
            curve.ssim.push(mean(&ss));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut steps = vec!["original".to_string()];
    steps.extend(order.iter().cloned());
    let stem = format!("sensitivity.{label}");
    write_sensitivity_tables(&c.out, &stem, &steps, &curves)?;
    for (metric, title, pick) in [
        (
            "spearman",
            "Spearman rank correlation",
            (|c: &Curve| c.spearman.clone()) as fn(&Curve) -> Vec<f64>,
        ),
        ("spearman-abs", "Spearman rank correlation of |map|", |c| {
            c.spearman_abs.clone()
        }),
        ("ssim", "SSIM", |c| c.ssim.clone()),
    ] {
        let path = c.out.join(format!("{stem}.{metric}.png"));
        let series: Vec<Series> = curves
            .iter()
            .map(|cv| Series {
                name: cv.method.name().into(),
                values: pick(cv),
            })
            .collect();
        line_chart(
            &path,
            &format!("Cascading randomisation of {label}: {title}"),
            &steps,
            title,
            (-1.0, 1.0),
            &series,
            (900, 600),
        )?;
        println!("plot: {}", path.display());
    }
    Ok(())
}

/// The map divided by its largest magnitude (so SSIM's data range is 2).
fn normalised(m: &Heatmap) -> Result<Heatmap> {
    let max = m.values().iter().fold(0.0f32, |a, &v| a.max(v.abs()));
    let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
    Heatmap::new(
        m.width(),
        m.height(),
        m.values().iter().map(|v| v * scale).collect(),
    )
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn write_sensitivity_tables(
    out: &Path,
    stem: &str,
    steps: &[String],
    curves: &[Curve],
) -> Result<()> {
    let mut csv = String::from("method,step,layer,spearman,spearman_abs,ssim\n");
    for cv in curves {
        for (i, step) in steps.iter().enumerate() {
            csv.push_str(&format!(
                "{},{i},{step},{:.4},{:.4},{:.4}\n",
                cv.method.name(),
                cv.spearman[i],
                cv.spearman_abs[i],
                cv.ssim[i]
            ));
        }
    }
    let mut md = String::new();
    for (metric, pick) in [
        (
            "Spearman",
            (|c: &Curve| &c.spearman) as fn(&Curve) -> &Vec<f64>,
        ),
        ("Spearman |map|", |c| &c.spearman_abs),
        ("SSIM", |c| &c.ssim),
    ] {
        md.push_str(&format!("\n{metric} to the original map, after re-initialising down to:\n\n| method | {} |\n|---|{}\n", steps.join(" | "), "---|".repeat(steps.len())));
        for cv in curves {
            let cells: Vec<String> = pick(cv).iter().map(|v| format!("{v:.3}")).collect();
            md.push_str(&format!(
                "| {} | {} |\n",
                cv.method.name(),
                cells.join(" | ")
            ));
        }
    }
    let csv_path = out.join(format!("{stem}.csv"));
    let md_path = out.join(format!("{stem}.md"));
    write_atomic(&csv_path, csv.as_bytes())?;
    write_atomic(&md_path, md.as_bytes())?;
    print!("{md}");
    println!("table: {} and {}", csv_path.display(), md_path.display());
    Ok(())
}
