//! Merging the logs of a sharded run (`rsp eval METRIC --shard I/N`, one process or
//! machine per shard) into the log and table one unsharded run would have written, byte
//! for byte: every shard log of a (benchmark, dataset) in the folder must describe the
//! same run; a record seen twice must be the same record; every (image, method) of the
//! run must be there — or the merge names what is missing and writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::value::RawValue;
use serde_json::Value;

use super::driver::{log_path, sum_records, write_table, DatasetSource, Finished};
use super::engine::EvalMethod;
use super::metric::Benchmark;
use super::results::{LogContents, Record};
use crate::files::write_atomic;

/// One shard log as read.
struct ShardLog {
    path: PathBuf,
    /// The run line without `shard`: the unsharded run's.
    run: Value,
    /// The `shard` object without `index`: what every shard of the run shares.
    shared: Value,
    index: usize,
    model: String,
    records: Vec<Record<Box<RawValue>>>,
}

/// The file name's `STEM.DATASET.MODEL.shard-I-of-N.jsonl` pattern.
fn is_shard_log(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(rest) = name.strip_suffix(".jsonl") else {
        return false;
    };
    let Some((_, shard)) = rest.rsplit_once(".shard-") else {
        return false;
    };
    shard
        .split_once("-of-")
        .is_some_and(|(i, n)| i.parse::<usize>().is_ok() && n.parse::<usize>().is_ok())
}

fn read_shard_log(path: &Path) -> Result<ShardLog> {
    let contents = LogContents::<Box<RawValue>>::read(path)?;
    let Some(mut run) = contents.run else {
        crate::error::bail_invalid!("{}: an empty log (no run line)", path.display());
    };
    let shard = run
        .as_object_mut()
        .and_then(|o| o.remove("shard"))
        .with_context(|| format!("{}: the run line has no shard", path.display()))?;
    let mut shared = shard.clone();
    let index = shared
        .as_object_mut()
        .and_then(|o| o.remove("index"))
        .and_then(|i| i.as_u64())
        .with_context(|| format!("{}: the shard has no index", path.display()))?
        as usize;
    let model = run
        .get("model")
        .and_then(Value::as_str)
        .with_context(|| format!("{}: the run line has no model", path.display()))?
        .to_owned();
    Ok(ShardLog {
        path: path.to_owned(),
        run,
        shared,
        index,
        model,
        records: contents.records,
    })
}

/// The first key whose value differs between two JSON objects (for an error message).
fn first_difference(a: &Value, b: &Value) -> String {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return "the whole line".into();
    };
    a.keys()
        .chain(b.keys())
        .find(|k| a.get(*k) != b.get(*k))
        .map_or_else(|| "nothing".into(), |k| format!("'{k}'"))
}

/// The class an entry of two disagreeing records is about, for the error message.
fn disagreeing_class(a: &RawValue, b: &RawValue) -> String {
    let parse = |r: &RawValue| serde_json::from_str::<Vec<Value>>(r.get()).unwrap_or_default();
    let (a, b) = (parse(a), parse(b));
    let at = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i));
    match at.and_then(|i| a.get(i).or(b.get(i))) {
        Some(entry) => match entry.get("class_index") {
            Some(c) => format!("class {c}"),
            None => "an entry".into(),
        },
        None => "their entries".into(),
    }
}

/// Merges every group of shard logs in `out` (one group per benchmark and dataset):
/// writes each model's `STEM.DATASET.MODEL.jsonl` and the table `STEM.DATASET.csv/.md`
/// as the unsharded run would have, and returns them. Nothing of a group is written
/// unless all of it checks.
pub fn merge(out: &Path) -> Result<Vec<Finished>> {
    let entries = std::fs::read_dir(out)
        .with_context(|| format!("cannot read the folder {}", out.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_shard_log(p))
        .collect();
    paths.sort();
    if paths.is_empty() {
        crate::error::bail_invalid!(
            "{}: no shard logs (STEM.DATASET.MODEL.shard-I-of-N.jsonl, written by --shard I/N)",
            out.display()
        );
    }
    let mut groups: BTreeMap<(String, String), Vec<ShardLog>> = BTreeMap::new();
    for p in &paths {
        let log = read_shard_log(p)?;
        let key = |k: &str| {
            log.run
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        groups
            .entry((key("benchmark"), key("dataset")))
            .or_default()
            .push(log);
    }
    groups
        .into_values()
        .map(|logs| merge_group(out, logs))
        .collect()
}

/// Merges the shard logs of one (benchmark, dataset).
fn merge_group(out: &Path, logs: Vec<ShardLog>) -> Result<Finished> {
    let first = &logs[0];
    for log in &logs[1..] {
        if log.shared != first.shared {
            crate::error::bail_invalid!(
                "{} and {} are shards of different runs (they differ in {}); merge the \
                 shards of one run only",
                first.path.display(),
                log.path.display(),
                first_difference(&first.shared, &log.shared)
            );
        }
    }
    let shared = &first.shared;
    let text = |k: &str| shared.get(k).and_then(Value::as_str).map(str::to_owned);
    let strings = |k: &str| -> Vec<String> {
        shared
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let count = shared.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
    let models = strings("models");
    let methods: Vec<EvalMethod> = strings("methods")
        .iter()
        .map(|m| EvalMethod::parse(m).with_context(|| format!("unknown method '{m}'")))
        .collect::<Result<_>>()?;
    let source = DatasetSource {
        dataset: text("dataset").context("the shard names no dataset")?,
        root: text("root").map(PathBuf::from),
        split: first
            .run
            .get("split")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    let benchmark = Benchmark::from_run_line(&first.run)?;
    let metric = benchmark.summing()?;
    let (ds, dataset) = source.open(benchmark.truth())?;
    let limit = shared
        .get("limit")
        .and_then(Value::as_u64)
        .map(|l| l as usize);
    let ids = &ds.ids()[0..limit.map_or(ds.len(), |l| l.min(ds.len()))];
    let mut table = metric.table();
    let mut curves = Vec::new();
    let mut merged_logs: Vec<(PathBuf, String)> = Vec::new();
    for model in &models {
        let of_model: Vec<&ShardLog> = logs.iter().filter(|l| &l.model == model).collect();
        let Some(model_first) = of_model.first() else {
            crate::error::bail_invalid!(
                "{}: no shard log of the model {model} (the run's models: {})",
                out.display(),
                models.join(", ")
            );
        };
        for log in &of_model[1..] {
            if log.run != model_first.run {
                crate::error::bail_invalid!(
                    "{} and {} are shards of different runs (they differ in {})",
                    model_first.path.display(),
                    log.path.display(),
                    first_difference(&model_first.run, &log.run)
                );
            }
        }
        let mut by_key: HashMap<(String, String), (&RawValue, &Path)> = HashMap::new();
        for log in &of_model {
            for r in &log.records {
                let key = (r.image.clone(), r.method.clone());
                match by_key.get(&key) {
                    Some((seen, seen_in)) if seen.get() != r.outcome.get() => {
                        crate::error::bail_invalid!(
                            "image {}, method {}: {} and {} disagree ({}); rerun one of the \
                         shards from an empty log",
                            r.image,
                            r.method,
                            seen_in.display(),
                            log.path.display(),
                            disagreeing_class(seen, &r.outcome)
                        )
                    }
                    Some(_) => {}
                    None => {
                        by_key.insert(key, (r.outcome.as_ref(), log.path.as_path()));
                    }
                }
            }
        }
        let mut missing: Vec<String> = Vec::new();
        let mut records = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            let mut absent = Vec::new();
            for m in &methods {
                match by_key.get(&(id.clone(), m.name().to_owned())) {
                    Some((outcome, _)) => records.push(Record {
                        image: id.clone(),
                        method: m.name().to_owned(),
                        outcome: (*outcome).to_owned(),
                    }),
                    None => absent.push(m.name()),
                }
            }
            if !absent.is_empty() {
                missing.push(format!(
                    "{id} (shard {}/{count}: {})",
                    index % count.max(1),
                    absent.join(", ")
                ));
            }
        }
        if !missing.is_empty() {
            let present: Vec<String> = of_model.iter().map(|l| l.index.to_string()).collect();
            let shown = missing.len().min(10);
            crate::error::bail_invalid!(
                "{}: {} images of model {model} have no record yet: {}{} (shard logs found: \
                 {} of {count}); run or finish those shards, then merge again",
                out.display(),
                missing.len(),
                missing[..shown].join("; "),
                if missing.len() > shown { "; …" } else { "" },
                present.join(", ")
            );
        }
        let mut text = serde_json::to_string(&serde_json::json!({ "run": model_first.run }))?;
        text.push('\n');
        for r in &records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        let path = log_path(out, metric.stem(), &dataset, model, None);
        if path.exists() {
            let existing = LogContents::<Box<RawValue>>::read(&path)?;
            if existing.run.as_ref() != Some(&model_first.run) {
                crate::error::bail_invalid!(
                    "{} exists and holds another run's results; move it away to merge",
                    path.display()
                );
            }
        }
        curves.push(sum_records(
            metric.as_ref(),
            &mut table,
            &dataset,
            model,
            &methods,
            ids,
            &records,
            ds.num_classes(),
        )?);
        merged_logs.push((path, text));
    }
    for (path, text) in &merged_logs {
        write_atomic(path, text.as_bytes())?;
    }
    let name = format!("{}.{dataset}", metric.stem());
    let (csv, md) = write_table(&table, out, &name)?;
    Ok(Finished {
        table,
        name,
        dataset,
        csv,
        md,
        plot: metric.plot().cloned(),
        curves,
    })
}
