//! A logged benchmark run end to end — the one driver that `rsp eval`, Python's
//! `rsp.eval_*`, the merge of shard logs and the Ray workers share: for each model, a
//! resumable log (`STEM.DATASET.MODEL.jsonl`, or `….shard-I-of-N.jsonl` for one shard)
//! appended image by image, then the table (CSV and Markdown in the same folder) and
//! the faithfulness metrics' mean curves, summed from the logs in the split's order.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;
use serde_json::value::RawValue;

use super::dataset::{Dataset, Sample};
use super::engine::{EvalMethod, MapEngine};
use super::map::Heatmap;
use super::metric::{check_methods, Benchmark, CurvePlot, Curves, Metric, Scoring};
use super::results::{Record, ResultsLog};
use super::runner::{
    self, load_model, model_label, walk_dataset, Progress, RunOptions, Scorer, Shard, Walked,
};
use super::table::ResultTable;
use super::voc::VocGroundTruth;
use crate::gpu::GpuContext;
use crate::models::gpu::GpuModel;
use crate::models::{Model, Readout};
use crate::tensor::Tensor;

/// Where a run's images come from: `voc07`, `coco14` (with `root`) or a folder in VOC
/// layout, and the split's image list.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetSource {
    pub dataset: String,
    pub root: Option<PathBuf>,
    pub split: String,
}

impl DatasetSource {
    /// The dataset with the ground truth `truth`, and its label in tables and log names.
    pub fn open(&self, truth: VocGroundTruth) -> Result<(Box<dyn Dataset>, String)> {
        runner::open_dataset(&self.dataset, self.root.as_deref(), &self.split, truth)
    }
}

/// A logged benchmark's run: the dataset, the models, the methods and where the logs go.
#[derive(Clone, Debug)]
pub struct EvalRun {
    pub source: DatasetSource,
    /// Classifier weights, one column group each.
    pub weights: Vec<PathBuf>,
    pub methods: Vec<EvalMethod>,
    pub options: RunOptions,
    /// Folder of the logs and tables, created when the first model has loaded.
    pub out: PathBuf,
}

/// One model's mean curves, per method.
#[derive(Clone, Debug)]
pub struct ModelCurves {
    pub model: String,
    pub methods: Vec<(String, Curves)>,
}

/// A finished run: its table, where it was written, and the mean curves to plot.
pub struct Finished {
    pub table: ResultTable,
    /// `STEM.DATASET`, the name of the table files (and the start of the plots').
    pub name: String,
    /// The dataset's label.
    pub dataset: String,
    pub csv: PathBuf,
    pub md: PathBuf,
    /// How the curves are plotted; `None` for the map metrics.
    pub plot: Option<CurvePlot>,
    pub curves: Vec<ModelCurves>,
}

/// How a run ended.
pub enum Outcome {
    /// Every image scored: the table.
    Finished(Box<Finished>),
    /// Cut short by [`RunOptions::stop_after`] after `images` new images; a rerun
    /// resumes from `log`.
    Stopped { images: usize, log: PathBuf },
    /// One shard scored completely into `logs` (one per model); `rsp eval merge` makes
    /// the table once every shard is done.
    Shard { shard: Shard, logs: Vec<PathBuf> },
}

/// The log of one model: `STEM.DATASET.MODEL.jsonl`, or for one shard
/// `STEM.DATASET.MODEL.shard-I-of-N.jsonl`.
pub fn log_path(
    out: &Path,
    stem: &str,
    dataset: &str,
    model: &str,
    shard: Option<Shard>,
) -> PathBuf {
    let name = match shard {
        None => format!("{stem}.{dataset}.{model}.jsonl"),
        Some(s) => format!(
            "{stem}.{dataset}.{model}.shard-{}-of-{}.jsonl",
            s.index, s.count
        ),
    };
    out.join(name)
}

/// A log's run line. An unsharded run's is what it always was; a shard's adds `shard`:
/// which one, and what a merge needs to rebuild the whole run's order (the dataset's
/// source, the limit, the methods, the models).
fn run_line(
    metric: &dyn Metric,
    run: &EvalRun,
    dataset: &str,
    model: &str,
    readout: Readout,
    models: &[String],
) -> serde_json::Value {
    let mut line = json!({
        "benchmark": metric.stem(), "dataset": dataset, "split": run.source.split,
        "model": model, "size": run.options.size,
        "norm": format!("{:?}", run.options.norm),
    });
    if let Some(line) = line.as_object_mut() {
        line.extend(metric.settings(readout));
        if let Some(shard) = run.options.shard {
            line.insert(
                "shard".into(),
                json!({
                    "index": shard.index, "count": shard.count,
                    "dataset": dataset_location(&run.source.dataset),
                    "root": run.source.root.as_deref().map(|r| absolute(r).unwrap_or(r.to_owned())),
                    "limit": run.options.limit,
                    "methods": run.methods.iter().map(|m| m.name()).collect::<Vec<_>>(),
                    "models": models,
                }),
            );
        }
    }
    line
}

/// `--dataset` as a merge from another folder finds it again: a folder made absolute;
/// the names `voc07` and `coco14` as they are (their folder is `--root`).
fn dataset_location(dataset: &str) -> String {
    if runner::NAMED_DATASETS.contains(&dataset) {
        return dataset.to_owned();
    }
    absolute(Path::new(dataset)).map_or(dataset.to_owned(), |p| p.to_string_lossy().into_owned())
}

/// `path` made absolute when it exists (so a merge from another folder finds it).
fn absolute(path: &Path) -> Option<PathBuf> {
    path.exists()
        .then(|| std::fs::canonicalize(path).ok())
        .flatten()
}

/// Where a metric's records go: the log of a run, or a Ray worker's block in memory.
trait RecordSink {
    /// Whether this (image, method) is already recorded.
    fn has(&self, image: &str, method: EvalMethod) -> bool;
    fn put(&mut self, record: Record<Box<RawValue>>) -> Result<()>;
}

impl RecordSink for ResultsLog<Box<RawValue>> {
    fn has(&self, image: &str, method: EvalMethod) -> bool {
        self.is_done(image, method.name())
    }
    fn put(&mut self, record: Record<Box<RawValue>>) -> Result<()> {
        self.append(record)
    }
}

/// A worker's block: the records scored, skipping what the driver's log already has.
struct Block {
    done: HashSet<(String, EvalMethod)>,
    records: Vec<Record<Box<RawValue>>>,
}

impl RecordSink for Block {
    fn has(&self, image: &str, method: EvalMethod) -> bool {
        self.done.contains(&(image.to_owned(), method))
    }
    fn put(&mut self, record: Record<Box<RawValue>>) -> Result<()> {
        self.records.push(record);
        Ok(())
    }
}

/// A metric scoring into a sink.
struct MetricScorer<'a, S> {
    metric: &'a dyn Metric,
    scoring: Scoring<'a>,
    sink: S,
}

impl<S: RecordSink> Scorer for MetricScorer<'_, S> {
    fn classes(&self, sample: &Sample) -> Vec<usize> {
        self.metric.classes(sample)
    }
    fn is_done(&self, image: &str, method: EvalMethod) -> bool {
        self.sink.has(image, method)
    }
    fn score(
        &mut self,
        s: &Sample,
        m: EvalMethod,
        maps: Option<&[Heatmap]>,
        input: Option<&Tensor>,
    ) -> Result<()> {
        let outcome = self.metric.score(&self.scoring, s, maps, input)?;
        self.sink.put(Record {
            image: s.id.clone(),
            method: m.name().into(),
            outcome,
        })
    }
}

/// Sums one model's records into its table cells, method by method, each method's
/// records in the order of `ids` (the split's); returns the mean curves.
#[allow(clippy::too_many_arguments)]
pub fn sum_records(
    metric: &dyn Metric,
    table: &mut ResultTable,
    dataset: &str,
    model: &str,
    methods: &[EvalMethod],
    ids: &[String],
    records: &[Record<Box<RawValue>>],
    num_classes: usize,
) -> Result<ModelCurves> {
    let by_key: HashMap<(&str, &str), &RawValue> = records
        .iter()
        .map(|r| ((r.image.as_str(), r.method.as_str()), r.outcome.as_ref()))
        .collect();
    let mut curves = ModelCurves {
        model: model.to_owned(),
        methods: Vec::new(),
    };
    for m in methods {
        let of_method: Vec<&RawValue> = ids
            .iter()
            .filter_map(|id| by_key.get(&(id.as_str(), m.name())).copied())
            .collect();
        if let Some(c) =
            metric.add_cells(table, m.name(), dataset, model, &of_method, num_classes)?
        {
            curves.methods.push((m.name().to_owned(), c));
        }
    }
    Ok(curves)
}

/// Writes `table` as `out/NAME.csv` and `out/NAME.md`.
pub fn write_table(table: &ResultTable, out: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let csv = out.join(format!("{name}.csv"));
    let md = out.join(format!("{name}.md"));
    table.write_csv(&csv)?;
    table.write_markdown(&md)?;
    Ok((csv, md))
}

/// A run ready to score: its dataset opened, its metric built and its methods checked.
/// [`run_benchmark`] drives it in one process; the Ray driver opens the logs and sums
/// the table with it while workers score images with [`PreparedRun::score_images`].
pub struct PreparedRun {
    pub run: EvalRun,
    pub metric: Box<dyn Metric>,
    pub ds: Box<dyn Dataset>,
    /// The dataset's label.
    pub dataset: String,
    /// The models' labels, in `run.weights` order.
    pub models: Vec<String>,
}

impl PreparedRun {
    /// Checks the options, opens the dataset and builds the metric.
    pub fn new(benchmark: &Benchmark, run: EvalRun) -> Result<PreparedRun> {
        run.options.validate()?;
        let truth = benchmark.truth();
        let (ds, dataset) = run.source.open(truth)?;
        let metric = benchmark.metric(ds.num_classes())?;
        check_methods(metric.as_ref(), &run.methods)?;
        let models = run.weights.iter().map(|w| model_label(w)).collect();
        Ok(PreparedRun {
            run,
            metric,
            ds,
            dataset,
            models,
        })
    }

    /// Loads the `index`-th model (checking its classes against the dataset's).
    pub fn load_model(&self, index: usize) -> Result<Model> {
        load_model(&self.run.weights[index], self.ds.num_classes())
    }

    /// Opens (creating the folder and the file if needed) the log of the `index`-th
    /// model, `model` as loaded.
    pub fn open_log(&self, index: usize, model: &Model) -> Result<ResultsLog<Box<RawValue>>> {
        let out = &self.run.out;
        std::fs::create_dir_all(out)
            .with_context(|| format!("cannot create output directory {}", out.display()))?;
        let label = &self.models[index];
        let path = log_path(
            out,
            self.metric.stem(),
            &self.dataset,
            label,
            self.run.options.shard,
        );
        let line = run_line(
            self.metric.as_ref(),
            &self.run,
            &self.dataset,
            label,
            model.readout,
            &self.models,
        );
        ResultsLog::open(&path, &line)
    }

    /// The images this process scores (its shard's, within the limit).
    pub fn images(&self) -> Vec<usize> {
        self.run.options.images(self.ds.len())
    }

    /// The images of [`PreparedRun::images`] that `log` does not complete, each with
    /// the methods it already holds.
    pub fn pending(&self, log: &ResultsLog<Box<RawValue>>) -> Vec<(usize, Vec<EvalMethod>)> {
        let ids = self.ds.ids();
        self.images()
            .into_iter()
            .filter_map(|i| {
                let done: Vec<EvalMethod> = self
                    .run
                    .methods
                    .iter()
                    .copied()
                    .filter(|m| log.is_done(&ids[i], m.name()))
                    .collect();
                (done.len() < self.run.methods.len()).then_some((i, done))
            })
            .collect()
    }

    /// Scores `items` (image index, methods already recorded) with `model` on `ctx`:
    /// their records in the order one unsharded walk writes them. What a Ray worker
    /// does with a block.
    pub fn score_images(
        &self,
        ctx: &GpuContext,
        engine: &MapEngine,
        readout: Readout,
        items: &[(usize, Vec<EvalMethod>)],
    ) -> Result<Vec<Record<Box<RawValue>>>> {
        let mut scorer = MetricScorer {
            metric: self.metric.as_ref(),
            scoring: Scoring {
                ctx,
                model: engine.model,
                readout,
            },
            sink: Block {
                done: items
                    .iter()
                    .flat_map(|(i, done)| done.iter().map(|m| (self.ds.ids()[*i].clone(), *m)))
                    .collect(),
                records: Vec::new(),
            },
        };
        let mut images: Vec<usize> = items.iter().map(|(i, _)| *i).collect();
        images.sort_unstable();
        images.dedup();
        let options = RunOptions {
            stop_after: None,
            ..self.run.options.clone()
        };
        walk_dataset(
            &options,
            self.ds.as_ref(),
            &images,
            engine,
            &self.run.methods,
            &mut scorer,
            &mut super::runner::Quiet,
            "",
        )?;
        Ok(scorer.sink.records)
    }

    /// Sums the models' records (one list per model, in `run.weights` order) into the
    /// table, writes it to `run.out`, and returns it with the mean curves.
    pub fn finish(&self, records: &[&[Record<Box<RawValue>>]]) -> Result<Finished> {
        let mut table = self.metric.table();
        let ids = &self.ds.ids()[self.run.options.run_images(self.ds.len())];
        let mut curves = Vec::new();
        for (label, records) in self.models.iter().zip(records) {
            curves.push(sum_records(
                self.metric.as_ref(),
                &mut table,
                &self.dataset,
                label,
                &self.run.methods,
                ids,
                records,
                self.ds.num_classes(),
            )?);
        }
        let name = format!("{}.{}", self.metric.stem(), self.dataset);
        let (csv, md) = write_table(&table, &self.run.out, &name)?;
        Ok(Finished {
            table,
            name,
            dataset: self.dataset.clone(),
            csv,
            md,
            plot: self.metric.plot().cloned(),
            curves,
        })
    }
}

/// Runs `benchmark` for every model of `run`: a resumable log per model (appended as
/// each image is scored), then — unless the run is one shard — the table, written to
/// `run.out`.
pub fn run_benchmark(
    benchmark: &Benchmark,
    run: &EvalRun,
    ctx: &GpuContext,
    progress: &mut dyn Progress,
) -> Result<Outcome> {
    let prepared = PreparedRun::new(benchmark, run.clone())?;
    let mut logs = Vec::new();
    for (index, label) in prepared.models.iter().enumerate() {
        let model = prepared.load_model(index)?;
        let log = prepared.open_log(index, &model)?;
        let gpu = GpuModel::upload(ctx, &model);
        let engine = MapEngine { ctx, model: &gpu };
        let mut scorer = MetricScorer {
            metric: prepared.metric.as_ref(),
            scoring: Scoring {
                ctx,
                model: &gpu,
                readout: model.readout,
            },
            sink: log,
        };
        let walked = walk_dataset(
            &run.options,
            prepared.ds.as_ref(),
            &prepared.images(),
            &engine,
            &run.methods,
            &mut scorer,
            progress,
            &format!("{}, {label}", prepared.metric.label()),
        )?;
        if let Walked::Stopped(images) = walked {
            return Ok(Outcome::Stopped {
                images,
                log: scorer.sink.path().to_owned(),
            });
        }
        logs.push(scorer.sink);
    }
    if let Some(shard) = run.options.shard {
        return Ok(Outcome::Shard {
            shard,
            logs: logs.iter().map(|l| l.path().to_owned()).collect(),
        });
    }
    let records: Vec<&[Record<Box<RawValue>>]> = logs.iter().map(|l| l.records()).collect();
    Ok(Outcome::Finished(Box::new(prepared.finish(&records)?)))
}
