//! The benchmarks from Python, on the library's drivers (`rsp::eval::driver`,
//! `rsp::eval::sensitivity`, `rsp::eval::merge`): a whole run in one call
//! ([`eval_run`], [`eval_sensitivity`]), the merge of shard logs ([`eval_merge`]), and
//! the two halves of a distributed run that `rsp.ray` drives — [`LoggedRun`] on the
//! driver (the logs and the table) and [`EvalWorker`] on each GPU (scoring blocks of
//! images into record lines).
//!
//! Every entry point takes the run as one dict of the Python keywords (`metric`,
//! `weights`, `dataset`, … and the GPU options); a key left out takes the command line's
//! default.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::value::RawValue;

use rsp::eval::driver::{run_benchmark, DatasetSource, EvalRun, Finished, Outcome, PreparedRun};
use rsp::eval::engine::{EvalMethod, MapEngine};
use rsp::eval::faithfulness::{CurveSettings, DeletionBaseline, RegionFill, RegionSettings};
use rsp::eval::metric::Benchmark;
use rsp::eval::pointing::DEFAULT_TOLERANCE;
use rsp::eval::results::{Record, ResultsLog};
use rsp::eval::runner::{self, parse_methods, Quiet, RunOptions, Shard};
use rsp::eval::sensitivity::{self, run_sensitivity, SensitivityRun};
use rsp::explain::Method;
use rsp::gpu::{ContextOptions, GpuContext};
use rsp::models::gpu::GpuModel;
use rsp::models::Readout;
use rsp::preprocess::Normalisation;

use crate::{context_options, to_py};

/// The run's keywords (one dict from Python; missing keys take their defaults).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct RunArgs {
    metric: String,
    weights: Vec<PathBuf>,
    dataset: String,
    #[pyo3(default)]
    root: Option<PathBuf>,
    #[pyo3(default = runner::DEFAULT_SPLIT.to_owned())]
    split: String,
    #[pyo3(default)]
    methods: Option<Vec<String>>,
    #[pyo3(default = RunOptions::DEFAULT.size)]
    size: u32,
    #[pyo3(default = "torchvision".to_owned())]
    norm: String,
    #[pyo3(default = RunOptions::DEFAULT.batch)]
    batch: usize,
    #[pyo3(default)]
    limit: Option<usize>,
    #[pyo3(default)]
    shard: Option<String>,
    #[pyo3(default = PathBuf::from(runner::DEFAULT_OUT))]
    out: PathBuf,
    #[pyo3(default = DEFAULT_TOLERANCE)]
    tolerance: f64,
    #[pyo3(default)]
    difficult: Option<PathBuf>,
    #[pyo3(default = runner::DEFAULT_THRESHOLD.to_owned())]
    threshold: String,
    #[pyo3(default = "deletion-insertion".to_owned())]
    faithfulness: String,
    #[pyo3(default = 224)]
    step: u64,
    #[pyo3(default = "mean".to_owned())]
    baseline: String,
    #[pyo3(default = 8)]
    patch: u64,
    #[pyo3(default = 100)]
    regions: u64,
    #[pyo3(default = "noise".to_owned())]
    fill: String,
    #[pyo3(default = 0.01)]
    imputation_noise: f32,
    #[pyo3(default = sensitivity::DEFAULT_IMAGES)]
    images: usize,
    #[pyo3(default = 0)]
    seed: u64,
    #[pyo3(default = "auto".to_owned())]
    backend: String,
    #[pyo3(default)]
    adapter: Option<String>,
    #[pyo3(default = "f32".to_owned())]
    precision: String,
    #[pyo3(default = "off".to_owned())]
    autotune: String,
    #[pyo3(default)]
    exact_kernels: bool,
}

fn value_error(message: String) -> PyErr {
    PyValueError::new_err(message)
}

/// One of the names `what` lists, by its `name()`.
fn named<T: Copy>(key: &str, value: &str, all: &[T], name: fn(T) -> &'static str) -> PyResult<T> {
    all.iter()
        .copied()
        .find(|v| name(*v) == value)
        .ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            value_error(format!(
                "{key} '{value}': expected one of {}",
                known.join(", ")
            ))
        })
}

impl RunArgs {
    /// The GPU options, as the command line's flags set them.
    fn gpu(&self) -> PyResult<ContextOptions> {
        context_options(
            &self.backend,
            self.adapter.as_deref(),
            &self.precision,
            &self.autotune,
            self.exact_kernels,
        )
    }

    fn source(&self) -> DatasetSource {
        DatasetSource {
            dataset: self.dataset.clone(),
            root: self.root.clone(),
            split: self.split.clone(),
        }
    }

    fn norm(&self) -> PyResult<Normalisation> {
        Normalisation::from_name(&self.norm).ok_or_else(|| {
            value_error(format!(
                "norm '{}': expected 'torchvision' or 'caffe'",
                self.norm
            ))
        })
    }

    fn check_weights(&self) -> PyResult<()> {
        if self.weights.is_empty() {
            return Err(value_error(
                "weights: give at least one weights file".into(),
            ));
        }
        Ok(())
    }

    /// `methods` checked (default: every method, and `center` for the Pointing Game).
    fn methods(&self, allow_center: bool) -> PyResult<Vec<EvalMethod>> {
        let list = match &self.methods {
            Some(m) => m.join(","),
            None => {
                let mut all = Method::ALL.map(Method::name).to_vec();
                if allow_center {
                    all.push(EvalMethod::Center.name());
                }
                all.join(",")
            }
        };
        parse_methods(&list, allow_center).map_err(to_py)
    }

    /// The logged benchmark `metric` names, with its settings.
    fn benchmark(&self) -> PyResult<Benchmark> {
        Ok(match self.metric.as_str() {
            "pointing-game" => Benchmark::PointingGame {
                tolerance: self.tolerance,
                difficult: self.difficult.clone(),
            },
            "miou" => Benchmark::Miou {
                threshold: self.threshold.clone(),
            },
            "faithfulness" => match self.faithfulness.as_str() {
                "deletion-insertion" => Benchmark::DeletionInsertion(CurveSettings {
                    step_at_224: self.positive("step", self.step)?,
                    baseline: named(
                        "baseline",
                        &self.baseline,
                        &DeletionBaseline::ALL,
                        DeletionBaseline::name,
                    )?,
                }),
                "region-perturbation" => Benchmark::RegionPerturbation(RegionSettings {
                    patch: self.positive("patch", self.patch)?,
                    steps: self.positive("regions", self.regions)?,
                    fill: named("fill", &self.fill, &RegionFill::ALL, RegionFill::name)?,
                }),
                "road" => Benchmark::Road {
                    imputation_noise: self.imputation_noise,
                },
                other => {
                    return Err(value_error(format!(
                        "metric '{other}': expected 'deletion-insertion', \
                         'region-perturbation' or 'road'"
                    )))
                }
            },
            other => {
                return Err(value_error(format!(
                    "metric '{other}': expected 'pointing-game', 'miou' or 'faithfulness'"
                )))
            }
        })
    }

    fn positive(&self, key: &str, value: u64) -> PyResult<usize> {
        if value == 0 {
            return Err(value_error(format!("{key} must be at least 1")));
        }
        Ok(value as usize)
    }

    /// The benchmark and its run.
    fn run(&self) -> PyResult<(Benchmark, EvalRun)> {
        self.check_weights()?;
        let benchmark = self.benchmark()?;
        let shard = self
            .shard
            .as_deref()
            .map(|s| s.parse::<Shard>())
            .transpose()
            .map_err(|e| value_error(format!("shard {e}")))?;
        let run = EvalRun {
            source: self.source(),
            weights: self.weights.clone(),
            methods: self.methods(matches!(benchmark, Benchmark::PointingGame { .. }))?,
            options: RunOptions {
                size: self.size,
                norm: self.norm()?,
                batch: self.batch,
                limit: self.limit,
                shard,
                stop_after: None,
            },
            out: self.out.clone(),
        };
        Ok((benchmark, run))
    }
}

/// A finished run as `{"title", "columns", "rows": {method: [cell or None, ...]},
/// "curves": {model: {method: {summary: [...]}}}, "csv", "md"}`, cells as the table
/// shows them.
fn finished<'py>(py: Python<'py>, f: &Finished) -> PyResult<Bound<'py, PyDict>> {
    let table = &f.table;
    let result = PyDict::new(py);
    result.set_item("title", &table.title)?;
    result.set_item("columns", table.columns().to_vec())?;
    let rows = PyDict::new(py);
    for method in table.methods() {
        let cells: Vec<Option<f64>> = table
            .columns()
            .iter()
            .map(|c| table.get(method, c).map(|v| v * table.scale))
            .collect();
        rows.set_item(method, cells)?;
    }
    result.set_item("rows", rows)?;
    let curves = PyDict::new(py);
    if let Some(plot) = &f.plot {
        for mc in &f.curves {
            let of_model = PyDict::new(py);
            for (method, c) in &mc.methods {
                let of_method = PyDict::new(py);
                for (name, values) in plot.names.iter().zip(c) {
                    of_method.set_item(name.to_lowercase(), values.clone())?;
                }
                of_model.set_item(method, of_method)?;
            }
            curves.set_item(&mc.model, of_model)?;
        }
        result.set_item("x", plot.x.clone())?;
    }
    result.set_item("curves", curves)?;
    result.set_item("csv", &f.csv)?;
    result.set_item("md", &f.md)?;
    Ok(result)
}

/// A logged benchmark (`pointing-game`, `miou`, `faithfulness`) end to end, as `rsp
/// eval` runs it: the finished run's table (see [`finished`]), or for one shard
/// `{"shard": "I/N", "logs": [...]}`.
#[pyfunction]
pub fn eval_run<'py>(
    py: Python<'py>,
    options: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let args: RunArgs = options.extract()?;
    let context = args.gpu()?;
    let (benchmark, run) = args.run()?;
    let outcome = py
        .detach(|| {
            let ctx = GpuContext::new(&context)?;
            run_benchmark(&benchmark, &run, &ctx, &mut Quiet)
        })
        .map_err(to_py)?;
    match outcome {
        Outcome::Finished(f) => finished(py, &f),
        Outcome::Shard { shard, logs } => {
            let result = PyDict::new(py);
            result.set_item("shard", shard.to_string())?;
            result.set_item("logs", logs)?;
            Ok(result)
        }
        Outcome::Stopped { .. } => unreachable!("no stop_after is set"),
    }
}

/// Merges the shard logs in `out` (`rsp eval merge`): one finished table per sharded
/// run.
#[pyfunction]
pub fn eval_merge<'py>(py: Python<'py>, out: PathBuf) -> PyResult<Bound<'py, PyList>> {
    let merged = py.detach(|| rsp::eval::merge::merge(&out)).map_err(to_py)?;
    let list = PyList::empty(py);
    for f in &merged {
        list.append(finished(py, f)?)?;
    }
    Ok(list)
}

/// The sensitivity run of the dict (one weights file).
fn sensitivity_run(args: &RunArgs) -> PyResult<SensitivityRun> {
    args.check_weights()?;
    if args.weights.len() != 1 {
        return Err(value_error(format!(
            "weights: sensitivity takes one weights file (got {})",
            args.weights.len()
        )));
    }
    let methods = args
        .methods(false)?
        .into_iter()
        .filter_map(|m| match m {
            EvalMethod::Engine(m) => Some(m),
            EvalMethod::Center => None,
        })
        .collect();
    Ok(SensitivityRun {
        source: args.source(),
        weights: args.weights[0].clone(),
        methods,
        images: args.images,
        seed: args.seed,
        size: args.size,
        norm: args.norm()?,
    })
}

/// Model sensitivity (cascading randomisation) as `rsp eval sensitivity` runs it:
/// `{"model", "steps", "curves": {method: {"spearman", "spearman_abs", "ssim"}}}`;
/// with `write` the tables go to `out` too (`"csv"`, `"md"`).
#[pyfunction]
#[pyo3(signature = (options, write = true))]
pub fn eval_sensitivity<'py>(
    py: Python<'py>,
    options: &Bound<'py, PyDict>,
    write: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let args: RunArgs = options.extract()?;
    let context = args.gpu()?;
    let run = sensitivity_run(&args)?;
    let out = args.out.clone();
    let (result, written) = py
        .detach(|| {
            let ctx = GpuContext::new(&context)?;
            let result = run_sensitivity(&run, &ctx, &mut Quiet)?;
            let written = write.then(|| result.write_tables(&out)).transpose()?;
            anyhow::Ok((result, written))
        })
        .map_err(to_py)?;
    let dict = PyDict::new(py);
    dict.set_item("model", &result.model)?;
    dict.set_item("steps", result.steps.clone())?;
    let curves = PyDict::new(py);
    for c in &result.curves {
        let d = PyDict::new(py);
        d.set_item("spearman", c.spearman.clone())?;
        d.set_item("spearman_abs", c.spearman_abs.clone())?;
        d.set_item("ssim", c.ssim.clone())?;
        curves.set_item(c.method.name(), d)?;
    }
    dict.set_item("curves", curves)?;
    if let Some((csv, md)) = written {
        dict.set_item("csv", csv)?;
        dict.set_item("md", md)?;
    }
    Ok(dict)
}

/// Writes a sensitivity result (the dict [`eval_sensitivity`] returns, its curves
/// possibly gathered from several workers) as the tables one run writes.
#[pyfunction]
pub fn write_sensitivity<'py>(
    py: Python<'py>,
    options: &Bound<'py, PyDict>,
    result: &Bound<'py, PyDict>,
) -> PyResult<(PathBuf, PathBuf)> {
    let args: RunArgs = options.extract()?;
    let run = sensitivity_run(&args)?;
    let model: String = result
        .get_item("model")?
        .map_or(Ok(String::new()), |m| m.extract())?;
    let steps: Vec<String> = result
        .get_item("steps")?
        .ok_or_else(|| value_error("result: no steps".into()))?
        .extract()?;
    let curves_dict = result
        .get_item("curves")?
        .ok_or_else(|| value_error("result: no curves".into()))?;
    let mut curves = Vec::new();
    for method in &run.methods {
        let c = curves_dict.get_item(method.name()).map_err(|_| {
            value_error(format!("result: no curves of the method {}", method.name()))
        })?;
        curves.push(rsp::eval::sensitivity::SimilarityCurve {
            method: *method,
            spearman: c.get_item("spearman")?.extract()?,
            spearman_abs: c.get_item("spearman_abs")?.extract()?,
            ssim: c.get_item("ssim")?.extract()?,
        });
    }
    let result = rsp::eval::sensitivity::Sensitivity {
        model,
        steps,
        curves,
    };
    py.detach(|| result.write_tables(&args.out)).map_err(to_py)
}

/// The driver's half of a distributed run: the dataset, the logs (one per model, opened
/// on demand) and the table. Workers ([`EvalWorker`]) score; the driver appends their
/// records, keeping the first of any repeat.
#[pyclass(module = "rsp._rsp", frozen)]
pub struct LoggedRun {
    prepared: PreparedRun,
    logs: Mutex<Vec<Option<ResultsLog<Box<RawValue>>>>>,
}

impl LoggedRun {
    fn with_log<T>(
        &self,
        model: usize,
        f: impl FnOnce(&PreparedRun, &mut ResultsLog<Box<RawValue>>) -> anyhow::Result<T>,
    ) -> PyResult<T> {
        if model >= self.prepared.models.len() {
            return Err(value_error(format!(
                "model {model}: the run has {} models",
                self.prepared.models.len()
            )));
        }
        let mut logs = self.logs.lock().expect("log lock");
        if logs[model].is_none() {
            let loaded = self.prepared.load_model(model).map_err(to_py)?;
            logs[model] = Some(self.prepared.open_log(model, &loaded).map_err(to_py)?);
        }
        f(&self.prepared, logs[model].as_mut().expect("opened")).map_err(to_py)
    }
}

#[pymethods]
impl LoggedRun {
    #[new]
    fn new(options: &Bound<'_, PyDict>) -> PyResult<Self> {
        let args: RunArgs = options.extract()?;
        let (benchmark, run) = args.run()?;
        let models = run.weights.len();
        let prepared = PreparedRun::new(&benchmark, run).map_err(to_py)?;
        Ok(LoggedRun {
            prepared,
            logs: Mutex::new((0..models).map(|_| None).collect()),
        })
    }

    /// The models' labels.
    #[getter]
    fn models(&self) -> Vec<String> {
        self.prepared.models.clone()
    }

    /// Opens the `model`-th log (resuming it) and returns what it lacks: `[(image
    /// index, [methods already recorded])]`, in the split's order.
    fn pending(&self, model: usize) -> PyResult<Vec<(usize, Vec<String>)>> {
        self.with_log(model, |p, log| {
            Ok(p.pending(log)
                .into_iter()
                .map(|(i, done)| (i, done.iter().map(|m| m.name().to_owned()).collect()))
                .collect())
        })
    }

    /// Appends record lines (from [`EvalWorker::score`]) to the `model`-th log, keeping
    /// the first of any (image, method) already there; returns how many were new.
    fn append(&self, model: usize, lines: Vec<String>) -> PyResult<usize> {
        self.with_log(model, |_, log| {
            let mut added = 0;
            for line in &lines {
                let record: Record<Box<RawValue>> = serde_json::from_str(line)
                    .map_err(|e| rsp::error::invalid(format!("not a record line ({e}): {line}")))?;
                if !log.is_done(&record.image, &record.method) {
                    log.append(record)?;
                    added += 1;
                }
            }
            Ok(added)
        })
    }

    /// The table of every model's log (each must be complete), written to `out`.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        for model in 0..self.prepared.models.len() {
            let left = self.pending(model)?;
            if let Some((index, _)) = left.first() {
                return Err(PyRuntimeError::new_err(format!(
                    "the log of model {} lacks {} images (the first: {}); the run is not \
                     complete",
                    self.prepared.models[model],
                    left.len(),
                    self.prepared.ds.ids()[*index]
                )));
            }
        }
        let logs = self.logs.lock().expect("log lock");
        let records: Vec<&[Record<Box<RawValue>>]> = logs
            .iter()
            .map(|l| l.as_ref().map_or(&[][..], |l| l.records()))
            .collect();
        let f = self.prepared.finish(&records).map_err(to_py)?;
        finished(py, &f)
    }
}

/// A worker's half: one model of the run on one GPU, scoring blocks of images.
#[pyclass(module = "rsp._rsp", frozen)]
pub struct EvalWorker {
    prepared: PreparedRun,
    ctx: GpuContext,
    model: GpuModel,
    readout: Readout,
}

#[pymethods]
impl EvalWorker {
    /// The run of `options` (with its GPU options: `adapter` picks the device), model
    /// number `model`.
    #[new]
    fn new(py: Python<'_>, options: &Bound<'_, PyDict>, model: usize) -> PyResult<Self> {
        let args: RunArgs = options.extract()?;
        let context = args.gpu()?;
        let (benchmark, run) = args.run()?;
        if model >= run.weights.len() {
            return Err(value_error(format!(
                "model {model}: the run has {} models",
                run.weights.len()
            )));
        }
        py.detach(|| {
            let prepared = PreparedRun::new(&benchmark, run)?;
            let loaded = prepared.load_model(model)?;
            let ctx = GpuContext::new(&context)?;
            let gpu = GpuModel::upload(&ctx, &loaded);
            anyhow::Ok(EvalWorker {
                prepared,
                ctx,
                model: gpu,
                readout: loaded.readout,
            })
        })
        .map_err(to_py)
    }

    /// The adapter's name.
    #[getter]
    fn adapter(&self) -> String {
        self.ctx.adapter.name.clone()
    }

    /// Scores `items` (`[(image index, [methods already recorded])]`): the record lines
    /// in the order one unsharded run writes them.
    fn score(&self, py: Python<'_>, items: Vec<(usize, Vec<String>)>) -> PyResult<Vec<String>> {
        let mut parsed = Vec::with_capacity(items.len());
        for (index, done) in items {
            if index >= self.prepared.ds.len() {
                return Err(value_error(format!(
                    "image {index}: the split has {} images",
                    self.prepared.ds.len()
                )));
            }
            let done = done
                .iter()
                .map(|m| {
                    EvalMethod::parse(m).ok_or_else(|| value_error(format!("unknown method '{m}'")))
                })
                .collect::<PyResult<Vec<_>>>()?;
            parsed.push((index, done));
        }
        py.detach(|| {
            let engine = MapEngine {
                ctx: &self.ctx,
                model: &self.model,
            };
            let records = self
                .prepared
                .score_images(&self.ctx, &engine, self.readout, &parsed)?;
            records
                .iter()
                .map(|r| Ok(serde_json::to_string(r)?))
                .collect::<anyhow::Result<Vec<String>>>()
        })
        .map_err(to_py)
    }
}
