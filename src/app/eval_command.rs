//! `rsp eval pointing-game|miou|sensitivity|faithfulness|merge`: the arguments, the
//! progress bar, the printed tables and the plots around the library's benchmark
//! drivers (`crate::eval::driver`, `crate::eval::sensitivity`, `crate::eval::merge`).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::args::DeviceArgs;
use super::output::{check_output_dir, create_output_dir};
use super::plot::{line_chart, Series};
use crate::eval::driver::{run_benchmark, DatasetSource, EvalRun, Finished, Outcome};
use crate::eval::engine::EvalMethod;
use crate::eval::faithfulness::{CurveSettings, DeletionBaseline, RegionFill, RegionSettings};
use crate::eval::merge::merge;
use crate::eval::metric::Benchmark;
use crate::eval::pointing::DEFAULT_TOLERANCE;
use crate::eval::runner::{self, parse_methods, Progress, RunOptions, Shard};
use crate::eval::sensitivity::{self, run_sensitivity, SensitivityRun, MEASURES};
use crate::explain::Method;
use crate::gpu::GpuContext;
use crate::preprocess::Normalisation;

/// `rsp eval`'s arguments.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub benchmark: BenchmarkCommand,
}

/// The benchmarks.
#[derive(Subcommand, Debug)]
pub enum BenchmarkCommand {
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
    /// Merge the logs of a sharded run (`--shard I/N`, one per shard) into the log and
    /// table one unsharded run writes: refuses shards of different runs and records
    /// that disagree, and names the images still missing.
    Merge(MergeArgs),
}

/// `rsp eval merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The folder holding the shard logs (the runs' --out).
    #[arg(long, default_value = runner::DEFAULT_OUT)]
    pub out: PathBuf,
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
    /// Score only shard I of N: the images whose index in the split (after --limit) is
    /// I mod N, into a log of its own (STEM.DATASET.MODEL.shard-I-of-N.jsonl) and no
    /// table; `rsp eval merge --out DIR` joins the shards.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
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
    #[arg(long, default_value_t = sensitivity::DEFAULT_IMAGES)]
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
        BenchmarkCommand::PointingGame(a) => run_logged(
            &a.common,
            &Benchmark::PointingGame {
                tolerance: a.tolerance,
                difficult: a.difficult.clone(),
            },
        ),
        BenchmarkCommand::Miou(a) => run_logged(
            &a.common,
            &Benchmark::Miou {
                threshold: a.threshold.clone(),
            },
        ),
        BenchmarkCommand::Sensitivity(a) => run_cascade(a),
        BenchmarkCommand::Faithfulness(a) => run_logged(&a.common, &faithfulness_benchmark(a)),
        BenchmarkCommand::Merge(a) => run_merge(a),
    }
}

/// The faithfulness metric `--metric` names, with its settings.
fn faithfulness_benchmark(a: &FaithfulnessArgs) -> Benchmark {
    match a.metric {
        FaithfulnessMetric::DeletionInsertion => Benchmark::DeletionInsertion(CurveSettings {
            step_at_224: a.step as usize,
            baseline: a.baseline,
        }),
        FaithfulnessMetric::RegionPerturbation => Benchmark::RegionPerturbation(RegionSettings {
            patch: a.patch as usize,
            steps: a.regions as usize,
            fill: a.fill,
        }),
        FaithfulnessMetric::Road => Benchmark::Road {
            imputation_noise: a.imputation_noise,
        },
    }
}

/// The dataset behind `--dataset`/`--root`/`--split`.
fn source(c: &CommonArgs) -> DatasetSource {
    DatasetSource {
        dataset: c.dataset.clone(),
        root: c.root.clone(),
        split: c.split.clone(),
    }
}

/// What the dataset walk needs of the common arguments.
fn run_options(c: &CommonArgs) -> RunOptions {
    RunOptions {
        size: c.size,
        norm: c.norm,
        batch: c.batch,
        limit: c.limit,
        shard: c.shard,
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

fn gpu(c: &CommonArgs) -> Result<GpuContext> {
    GpuContext::new(&c.device.context_options())
}

/// A logged benchmark end to end: the library's driver, then the table printed and the
/// curves plotted (or the stop or the finished shard said).
fn run_logged(c: &CommonArgs, benchmark: &Benchmark) -> Result<()> {
    let allow_center = matches!(benchmark, Benchmark::PointingGame { .. });
    let methods = parse_methods(&c.methods, allow_center)?;
    let options = run_options(c);
    options.validate()?;
    check_output_dir(&c.out)?;
    let ctx = gpu(c)?;
    let run = EvalRun {
        source: source(c),
        weights: c.weights.clone(),
        methods,
        options,
        out: c.out.clone(),
    };
    match run_benchmark(benchmark, &run, &ctx, &mut Bar::default())? {
        Outcome::Finished(finished) => show(&finished, &c.out),
        Outcome::Stopped { images, log } => {
            println!(
                "stopped after {images} new images (--stop-after); rerun to resume from {}",
                log.display()
            );
            Ok(())
        }
        Outcome::Shard { shard, logs } => {
            for log in &logs {
                println!("shard {shard}: {}", log.display());
            }
            println!(
                "shard {shard} is complete; once every shard is, `rsp eval merge --out {}` \
                 writes the table",
                c.out.display()
            );
            Ok(())
        }
    }
}

/// Plots a finished run's mean curves, then prints its table and where it went.
fn show(f: &Finished, out: &Path) -> Result<()> {
    if let Some(plot) = &f.plot {
        for mc in f.curves.iter().filter(|mc| !mc.methods.is_empty()) {
            let y_range = plot.y_range.unwrap_or_else(|| {
                let all = mc.methods.iter().flat_map(|(_, c)| c.iter().flatten());
                let (lo, hi) = all.fold((0.0f64, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                (lo, hi.max(lo + 1e-6))
            });
            for (i, name) in plot.names.iter().enumerate() {
                let path = out.join(format!(
                    "{}.{}.{}.png",
                    f.name,
                    mc.model,
                    name.to_lowercase()
                ));
                let series: Vec<Series> = mc
                    .methods
                    .iter()
                    .map(|(method, curves)| Series {
                        name: method.clone(),
                        values: curves[i].clone(),
                    })
                    .collect();
                let stem = f.name.split('.').next().unwrap_or(&f.name);
                line_chart(
                    &path,
                    &format!("{stem} {name} on {}, {}", f.dataset, mc.model),
                    &plot.x,
                    plot.y_label,
                    y_range,
                    &series,
                    (900, 600),
                )?;
                println!("plot: {}", path.display());
            }
        }
    }
    print!("{}", f.table.to_text());
    println!("table: {} and {}", f.csv.display(), f.md.display());
    Ok(())
}

/// `rsp eval merge`: every sharded run in the folder merged, its table shown.
fn run_merge(a: &MergeArgs) -> Result<()> {
    for finished in merge(&a.out)? {
        show(&finished, &a.out)?;
    }
    Ok(())
}

/// `rsp eval sensitivity`: the library's cascade, its tables and three plots.
fn run_cascade(a: &SensitivityArgs) -> Result<()> {
    let c = &a.common;
    ensure!(
        c.weights.len() == 1,
        "sensitivity takes one --weights file (got {})",
        c.weights.len()
    );
    ensure!(
        c.shard.is_none(),
        "sensitivity has no shards: it explains --images images ({}) in one batch",
        a.images
    );
    let methods: Vec<Method> = parse_methods(&c.methods, false)?
        .into_iter()
        .filter_map(|m| match m {
            EvalMethod::Engine(m) => Some(m),
            EvalMethod::Center => None,
        })
        .collect();
    check_output_dir(&c.out)?;
    let ctx = gpu(c)?;
    let run = SensitivityRun {
        source: source(c),
        weights: c.weights[0].clone(),
        methods,
        images: a.images,
        seed: a.seed,
        size: c.size,
        norm: c.norm,
    };
    let result = run_sensitivity(&run, &ctx, &mut Bar::default())?;
    create_output_dir(&c.out)?;
    let (csv, md) = result.write_tables(&c.out)?;
    print!("{}", result.to_markdown());
    println!("table: {} and {}", csv.display(), md.display());
    for (measure, title, pick) in MEASURES {
        let path = c.out.join(format!("{}.{measure}.png", result.name()));
        let series: Vec<Series> = result
            .curves
            .iter()
            .map(|cv| Series {
                name: cv.method.name().into(),
                values: pick(cv).clone(),
            })
            .collect();
        line_chart(
            &path,
            &format!("Cascading randomisation of {}: {title}", result.model),
            &result.steps,
            title,
            (-1.0, 1.0),
            &series,
            (900, 600),
        )?;
        println!("plot: {}", path.display());
    }
    Ok(())
}
