//! Running a benchmark over a dataset: the dataset behind a `--dataset` name, the walk
//! that batches (image, class) pairs of equal preprocessed size into GPU passes and
//! skips what a resumable log already holds ([`walk_dataset`] with a [`Scorer`]), and
//! the map metrics — Pointing Game and mIoU, one [`MapMetric`] each — run end to end
//! into their logs and a [`ResultTable`] by one driver, [`run_map_metric`]. The
//! command line (`rsp eval`) and the Python binding (`rsp.eval_pointing_game`,
//! `rsp.eval_miou`) both call it.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use super::coco::CocoDataset;
use super::dataset::{Dataset, Sample};
use super::difficult::DifficultFlags;
use super::engine::{EvalMethod, MapEngine};
use super::map::Heatmap;
use super::miou::{self, IouPair, MiouScores, Threshold};
use super::pointing::{saliency_point, PointingGame, PointingPair, PointingScores};
use super::results::{Record, ResultsLog};
use super::table::ResultTable;
use super::voc::{VocDataset, VocGroundTruth};
use crate::error::Param;
use crate::explain::Method;
use crate::gpu::GpuContext;
use crate::models::gpu::GpuModel;
use crate::models::Model;
use crate::preprocess::{load_image, preprocess_whole, Normalisation};
use crate::tensor::Tensor;

/// The dataset behind `dataset` (`voc07`, `coco14`, or a directory in VOC layout),
/// with `root` for the first two and `split` the image list of VOC layouts; and its
/// label in tables and log names. Datasets without a segmentation list (the generated
/// one) segment every image of the Main list.
pub fn open_dataset(
    dataset: &str,
    root: Option<&Path>,
    split: &str,
    truth: VocGroundTruth,
) -> Result<(Box<dyn Dataset>, String)> {
    let root = || {
        root.ok_or_else(|| {
            crate::error::bad_option(Param::Root, format!("is needed for the dataset {dataset}"))
        })
    };
    let voc = |root: &Path| -> Result<VocDataset> {
        let seg_list = root
            .join("ImageSets/Segmentation")
            .join(format!("{split}.txt"));
        if truth == VocGroundTruth::Segmentation && !seg_list.exists() {
            let main = root.join("ImageSets/Main").join(format!("{split}.txt"));
            return VocDataset::with_split_file(root, &main, truth);
        }
        VocDataset::open(root, split, truth)
    };
    match dataset {
        "voc07" => Ok((Box::new(voc(root()?)?), "voc07".into())),
        "coco14" => {
            ensure!(
                truth == VocGroundTruth::Boxes,
                "mIoU needs VOC-style segmentation masks; COCO is for the Pointing Game"
            );
            let r = root()?;
            let ds = CocoDataset::open(
                &r.join("annotations/instances_val2014.json"),
                &r.join("val2014"),
            )?;
            Ok((Box::new(ds), "coco14".into()))
        }
        dir => {
            let path = PathBuf::from(dir);
            if !path.is_dir() {
                crate::error::bail_option!(
                    Param::Dataset,
                    "{dir}: not voc07, coco14 or a directory in VOC layout"
                );
            }
            let label = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "dataset".into());
            Ok((Box::new(voc(&path)?), label))
        }
    }
}

/// Parses a comma-separated list of method names (`--methods`), without repeats;
/// `allow_center`: the Pointing Game's center baseline may be named.
pub fn parse_methods(list: &str, allow_center: bool) -> Result<Vec<EvalMethod>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(m) = EvalMethod::parse(name) else {
            let mut known = Method::ALL.map(Method::name).to_vec();
            if allow_center {
                known.push(EvalMethod::Center.name());
            }
            crate::error::bail_option!(
                Param::Methods,
                "has an unknown method '{name}' (known: {})",
                known.join(", ")
            );
        };
        if m == EvalMethod::Center && !allow_center {
            crate::error::bail_option!(
                Param::Methods,
                "names '{}', a Pointing Game baseline only",
                EvalMethod::Center.name()
            );
        }
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        crate::error::bail_option!(Param::Methods, "is empty");
    }
    Ok(out)
}

/// A model's label in tables and log names: its file stem.
pub fn model_label(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// Loads the weights at `path` and checks that the model's outputs are the dataset's
/// `classes`.
pub fn load_model(path: &Path, classes: usize) -> Result<Model> {
    let model = Model::from_file(path)?;
    if model.num_classes() != classes {
        crate::error::bail_invalid!(
            "{}: the model has {} outputs but the dataset has {classes} classes",
            path.display(),
            model.num_classes()
        );
    }
    Ok(model)
}

/// The image list of VOC layouts a run reads by default.
pub const DEFAULT_SPLIT: &str = "test";
/// The folder of logs and tables by default.
pub const DEFAULT_OUT: &str = "rsp-eval";
/// mIoU's binarisation threshold by default: the mean of the map's positive values.
pub const DEFAULT_THRESHOLD: &str = "mean";

/// How a benchmark makes its maps and how much of the dataset it walks.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Shorter side of each image after resizing (aspect kept, no crop); 0 keeps the
    /// original size.
    pub size: u32,
    /// Pixel normalisation of the model's training.
    pub norm: Normalisation,
    /// (image, class) pairs per GPU batch.
    pub batch: usize,
    /// Only the first images of the split.
    pub limit: Option<usize>,
    /// Stop after this many newly scored images, without a table (an interrupted run).
    pub stop_after: Option<usize>,
}

impl RunOptions {
    /// The defaults `rsp eval` and Python's `rsp.eval_*` share: 224 px, torchvision
    /// normalisation, 16 (image, class) pairs per batch, the whole split.
    pub const DEFAULT: RunOptions = RunOptions {
        size: 224,
        norm: Normalisation::Torchvision,
        batch: 16,
        limit: None,
        stop_after: None,
    };

    /// Refuses an empty batch.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            crate::error::bail_option!(Param::Batch, "must be at least 1");
        }
        Ok(())
    }
}

/// What a caller shows while a dataset is walked (a progress bar on the command line;
/// nothing in Python).
pub trait Progress {
    /// A walk over `images` images starts.
    fn begin(&mut self, _images: usize, _label: &str) {}
    /// One more image is done (scored, or found in the log).
    fn advance(&mut self) {}
    /// The walk ended; `stopped`: cut short by [`RunOptions::stop_after`].
    fn end(&mut self, _stopped: bool) {}
}

/// Shows nothing.
pub struct Quiet;

impl Progress for Quiet {}

/// What a benchmark does with the maps of one image: which classes it needs, which
/// (image, method) results it already has, and how it scores and records new ones.
pub trait Scorer {
    /// Classes of `sample` to explain: by default every class present.
    fn classes(&self, sample: &Sample) -> Vec<usize> {
        sample.class_indices()
    }
    /// Whether the log already holds this (image, method).
    fn is_done(&self, image: &str, method: &str) -> bool;
    /// Scores and records `maps` (one per class of [`Scorer::classes`]; `None` for the
    /// center baseline) of the preprocessed `input` `[3, H, W]` (`None` where no image
    /// was loaded).
    fn score(
        &mut self,
        sample: &Sample,
        method: EvalMethod,
        maps: Option<&[Heatmap]>,
        input: Option<&Tensor>,
    ) -> Result<()>;
}

/// One image waiting for its maps.
struct Pending {
    sample: Sample,
    input: Tensor,
    /// Classes to explain.
    classes: Vec<usize>,
    /// Methods still to run for this image.
    methods: Vec<Method>,
}

/// Runs every method of `group` (batched over its images) and scores the maps.
fn flush(group: &mut Vec<Pending>, engine: &MapEngine, scorer: &mut dyn Scorer) -> Result<()> {
    for method in Method::ALL {
        let members: Vec<&Pending> = group
            .iter()
            .filter(|p| p.methods.contains(&method))
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut inputs = Vec::new();
        let mut targets = Vec::new();
        for p in &members {
            for &cls in &p.classes {
                inputs.push(&p.input);
                targets.push(cls);
            }
        }
        let (maps, _) = engine.maps(method, &Tensor::stack(&inputs), &targets)?;
        let mut at = 0;
        for p in &members {
            let k = p.classes.len();
            scorer.score(
                &p.sample,
                EvalMethod::Engine(method),
                Some(&maps[at..at + k]),
                Some(&p.input),
            )?;
            at += k;
        }
    }
    group.clear();
    Ok(())
}

/// How a walk over a dataset ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walked {
    /// Every image of the run is scored (now or in an earlier run).
    Complete,
    /// [`RunOptions::stop_after`] cut it short after that many new images.
    Stopped(usize),
}

/// Walks the dataset, batching images of equal preprocessed size into GPU passes of
/// at most [`RunOptions::batch`] (image, class) pairs, skipping (image, method) results
/// the scorer's log already has.
pub fn walk_dataset(
    opts: &RunOptions,
    ds: &dyn Dataset,
    engine: &MapEngine,
    methods: &[EvalMethod],
    scorer: &mut dyn Scorer,
    progress: &mut dyn Progress,
    label: &str,
) -> Result<Walked> {
    let n = opts.limit.map_or(ds.len(), |l| l.min(ds.len()));
    progress.begin(n, label);
    let mut group: Vec<Pending> = Vec::new();
    let mut fresh = 0usize;
    let batch = opts.batch.max(1);
    for index in 0..n {
        let sample = ds.sample(index)?;
        let todo: Vec<EvalMethod> = methods
            .iter()
            .copied()
            .filter(|m| !scorer.is_done(&sample.id, m.name()))
            .collect();
        if todo.is_empty() {
            progress.advance();
            continue;
        }
        if let Some(stop) = opts.stop_after.filter(|&stop| fresh >= stop) {
            flush(&mut group, engine, scorer)?;
            progress.end(true);
            return Ok(Walked::Stopped(stop));
        }
        fresh += 1;
        if todo.contains(&EvalMethod::Center) {
            scorer.score(&sample, EvalMethod::Center, None, None)?;
        }
        let engine_methods: Vec<Method> = todo
            .iter()
            .filter_map(|m| match m {
                EvalMethod::Engine(m) => Some(*m),
                EvalMethod::Center => None,
            })
            .collect();
        let classes = scorer.classes(&sample);
        if engine_methods.is_empty() || classes.is_empty() {
            // Nothing to explain (e.g. every box difficult): record empty outcomes.
            for m in engine_methods {
                scorer.score(&sample, EvalMethod::Engine(m), Some(&[]), None)?;
            }
            progress.advance();
            continue;
        }
        let img = load_image(&sample.image_path)?;
        let input = preprocess_whole(&img, (opts.size > 0).then_some(opts.size), opts.norm);
        let pairs: usize = group.iter().map(|p| p.classes.len()).sum();
        if group
            .first()
            .is_some_and(|p| p.input.shape != input.shape || pairs + classes.len() > batch)
        {
            flush(&mut group, engine, scorer)?;
        }
        group.push(Pending {
            sample,
            input,
            classes,
            methods: engine_methods,
        });
        progress.advance();
    }
    flush(&mut group, engine, scorer)?;
    progress.end(false);
    Ok(Walked::Complete)
}

/// A benchmark that scores the maps of each (image, method) into a list of pairs (one
/// per explained class) and sums the pairs of a method into its table cells.
pub trait MapMetric {
    /// What one (image, class) scores.
    type Pair: Serialize + DeserializeOwned;
    /// File stem of its logs and tables, and the log's `benchmark`.
    const STEM: &'static str;
    /// Table title.
    const TITLE: &'static str;
    /// Progress label.
    const LABEL: &'static str;
    /// The ground truth it reads.
    const TRUTH: VocGroundTruth;
    /// The metric's own settings, recorded in the log's run line (a rerun with other
    /// settings is refused).
    fn settings(&self) -> serde_json::Map<String, serde_json::Value>;
    /// Classes of `sample` to explain.
    fn classes(&self, sample: &Sample) -> Vec<usize>;
    /// The pairs of one (image, method): `maps` one per class of
    /// [`MapMetric::classes`], `None` for the center baseline.
    fn score(&self, sample: &Sample, maps: Option<&[Heatmap]>) -> Result<Vec<Self::Pair>>;
    /// Sets the method's cells of column group `dataset`/`model` from its pairs.
    fn add_cells<'a>(
        &self,
        table: &mut ResultTable,
        method: &str,
        dataset: &str,
        model: &str,
        pairs: impl Iterator<Item = &'a Self::Pair>,
        num_classes: usize,
    ) -> Result<()>
    where
        Self::Pair: 'a;
}

/// The Pointing Game (TorchRay protocol) with an optional "difficult" flag table.
pub struct PointingMetric<'a> {
    pub game: PointingGame,
    pub flags: Option<&'a DifficultFlags>,
    /// Whether a flag table was given (recorded in the run line).
    pub difficult: bool,
}

impl MapMetric for PointingMetric<'_> {
    type Pair = PointingPair;
    const STEM: &'static str = "pointing-game";
    const TITLE: &'static str = "Pointing Game accuracy (%)";
    const LABEL: &'static str = "pointing game";
    const TRUTH: VocGroundTruth = VocGroundTruth::Boxes;

    fn settings(&self) -> serde_json::Map<String, serde_json::Value> {
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
    fn score(&self, s: &Sample, maps: Option<&[Heatmap]>) -> Result<Vec<PointingPair>> {
        Ok(match maps {
            None => self.game.score_center(s, self.flags),
            Some(maps) => {
                let mut it = maps.iter();
                self.game.score_sample(s, self.flags, |_| {
                    let map = it.next().expect("one map per target class");
                    Ok(saliency_point(map, s.width, s.height))
                })?
            }
        })
    }
    fn add_cells<'p>(
        &self,
        table: &mut ResultTable,
        method: &str,
        dataset: &str,
        model: &str,
        pairs: impl Iterator<Item = &'p PointingPair>,
        num_classes: usize,
    ) -> Result<()> {
        let scores = PointingScores::from_pairs(pairs, num_classes)?;
        table.add_pointing(method, dataset, model, &scores);
        Ok(())
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

impl MapMetric for MiouMetric {
    type Pair = IouPair;
    const STEM: &'static str = "miou";
    const TITLE: &'static str = "mIoU (%)";
    const LABEL: &'static str = "mIoU";
    const TRUTH: VocGroundTruth = VocGroundTruth::Segmentation;

    fn settings(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("threshold".into(), json!(self.threshold_text));
        m
    }
    fn classes(&self, sample: &Sample) -> Vec<usize> {
        sample.class_indices()
    }
    fn score(&self, s: &Sample, maps: Option<&[Heatmap]>) -> Result<Vec<IouPair>> {
        let Some(maps) = maps else {
            bail!("mIoU has no center baseline")
        };
        let mut it = maps.iter();
        miou::score_sample(s, self.threshold, |_| {
            Ok(it.next().expect("one map per present class").clone())
        })
    }
    fn add_cells<'p>(
        &self,
        table: &mut ResultTable,
        method: &str,
        dataset: &str,
        model: &str,
        pairs: impl Iterator<Item = &'p IouPair>,
        num_classes: usize,
    ) -> Result<()> {
        let scores = MiouScores::from_pairs(pairs, num_classes)?;
        table.add_miou(method, dataset, model, &scores);
        Ok(())
    }
}

/// A map metric scoring into its log.
struct LogScorer<'m, M: MapMetric> {
    metric: &'m M,
    log: ResultsLog<Vec<M::Pair>>,
}

impl<M: MapMetric> Scorer for LogScorer<'_, M> {
    fn classes(&self, sample: &Sample) -> Vec<usize> {
        self.metric.classes(sample)
    }
    fn is_done(&self, image: &str, method: &str) -> bool {
        self.log.is_done(image, method)
    }
    fn score(
        &mut self,
        s: &Sample,
        m: EvalMethod,
        maps: Option<&[Heatmap]>,
        _: Option<&Tensor>,
    ) -> Result<()> {
        let pairs = self.metric.score(s, maps)?;
        self.log.append(Record {
            image: s.id.clone(),
            method: m.name().into(),
            outcome: pairs,
        })
    }
}

/// A map metric's run: the dataset, the models, the methods and where the logs go.
pub struct MapRun<'a> {
    pub dataset: &'a dyn Dataset,
    /// The dataset's label (tables, log names).
    pub dataset_label: &'a str,
    /// The split, as recorded in the run line.
    pub split: &'a str,
    /// Classifier weights, one column group each.
    pub weights: &'a [PathBuf],
    pub methods: &'a [EvalMethod],
    pub options: &'a RunOptions,
    /// Folder of the logs (`STEM.DATASET.MODEL.jsonl`), created when the first model
    /// has loaded.
    pub out: &'a Path,
}

/// How a map metric's run ended.
pub enum MapOutcome {
    /// The table of every method × model.
    Table(ResultTable),
    /// Cut short by [`RunOptions::stop_after`] after `images` new images; a rerun
    /// resumes from `log`.
    Stopped { images: usize, log: PathBuf },
}

/// Runs `metric` for every model of `run`: a resumable log per model (appended as
/// each image is scored), then the table.
pub fn run_map_metric<M: MapMetric>(
    metric: &M,
    run: &MapRun,
    ctx: &GpuContext,
    progress: &mut dyn Progress,
) -> Result<MapOutcome> {
    let ds = run.dataset;
    let mut table = ResultTable::new(M::TITLE);
    for wpath in run.weights {
        let model = load_model(wpath, ds.num_classes())?;
        std::fs::create_dir_all(run.out)
            .with_context(|| format!("cannot create output directory {}", run.out.display()))?;
        let label = model_label(wpath);
        let log_path = run
            .out
            .join(format!("{}.{}.{label}.jsonl", M::STEM, run.dataset_label));
        let mut line = json!({
            "benchmark": M::STEM, "dataset": run.dataset_label, "split": run.split,
            "model": label, "size": run.options.size,
            "norm": format!("{:?}", run.options.norm),
        });
        if let Some(line) = line.as_object_mut() {
            line.extend(metric.settings());
        }
        let mut scorer = LogScorer {
            metric,
            log: ResultsLog::open(&log_path, &line)?,
        };
        let engine = MapEngine {
            ctx,
            model: GpuModel::upload(ctx, &model),
        };
        let walked = walk_dataset(
            run.options,
            ds,
            &engine,
            run.methods,
            &mut scorer,
            progress,
            &format!("{}, {label}", M::LABEL),
        )?;
        if let Walked::Stopped(images) = walked {
            return Ok(MapOutcome::Stopped {
                images,
                log: log_path,
            });
        }
        for m in run.methods {
            let pairs = scorer
                .log
                .records()
                .iter()
                .filter(|r| r.method == m.name())
                .flat_map(|r| r.outcome.iter());
            metric.add_cells(
                &mut table,
                m.name(),
                run.dataset_label,
                &label,
                pairs,
                ds.num_classes(),
            )?;
        }
    }
    Ok(MapOutcome::Table(table))
}
