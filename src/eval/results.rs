//! Resumable evaluation results: one append-only JSONL file per run.
//!
//! The first line describes the run (`{"run": ...}`, any JSON the caller chooses: the
//! dataset, model, metric settings); each further line is one [`Record`], the outcome of
//! one (image, method) evaluation:
//!
//! ```text
//! {"run":{"dataset":"voc07","model":"vgg16","tolerance":15.0}}
//! {"image":"000001","method":"rsp","outcome":[{"class_index":11,...}]}
//! ```
//!
//! Each record is written with a single write and flushed, so an interrupted run leaves
//! at most one partial final line. [`ResultsLog::open`] reads what is there, cuts such a
//! garbled final line off (never failing on it), and reports which (image, method) pairs
//! are done so the caller can skip them. A garbled line that is *not* the last one is
//! real corruption and an error naming the file and line. Reopening with a different run
//! description is an error too, so results of different settings never mix.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One (image, method) result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record<T> {
    /// The image id.
    pub image: String,
    /// The method (and variant) name.
    pub method: String,
    /// The per-class outcomes (e.g. `Vec<PointingPair>`).
    pub outcome: T,
}

#[derive(Serialize, Deserialize)]
struct Header {
    run: serde_json::Value,
}

/// What a results file holds, as read without modifying it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogContents<T> {
    /// The run description of the first line (`None` for an empty file).
    pub run: Option<serde_json::Value>,
    /// The records, in file order; of repeated (image, method) records only the first.
    pub records: Vec<Record<T>>,
    /// Bytes of a garbled final line that were (or would be) cut off.
    pub garbled_tail_bytes: usize,
    /// Length of the valid prefix of the file.
    valid_len: u64,
    /// Whether the valid prefix ends in a complete record without its newline.
    missing_newline: bool,
}

impl<T: DeserializeOwned> LogContents<T> {
    /// Reads a results file without changing it (for aggregation or inspection).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading results {}", path.display()))?;
        Self::parse(&bytes, path)
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let mut contents = LogContents {
            run: None,
            records: Vec::new(),
            garbled_tail_bytes: 0,
            valid_len: 0,
            missing_newline: false,
        };
        let mut seen = HashSet::new();
        let mut start = 0;
        let mut line_number = 0;
        while start < bytes.len() {
            line_number += 1;
            let (end, next) = match bytes[start..].iter().position(|&b| b == b'\n') {
                Some(offset) => (start + offset, start + offset + 1),
                None => (bytes.len(), bytes.len()),
            };
            let line = &bytes[start..end];
            let is_final = bytes[next..].iter().all(u8::is_ascii_whitespace);
            if line.iter().all(u8::is_ascii_whitespace) {
                start = next;
                contents.valid_len = next as u64;
                continue;
            }
            let parsed = if contents.run.is_none() {
                serde_json::from_slice::<Header>(line).map(|header| {
                    contents.run = Some(header.run);
                })
            } else {
                serde_json::from_slice::<Record<T>>(line).map(|record| {
                    if seen.insert((record.image.clone(), record.method.clone())) {
                        contents.records.push(record);
                    }
                })
            };
            match parsed {
                Ok(()) => {
                    contents.valid_len = next as u64;
                    contents.missing_newline = next == end;
                }
                Err(_) if is_final => {
                    // An interrupted write: drop it (and anything after it).
                    contents.garbled_tail_bytes = bytes.len() - start;
                    break;
                }
                Err(error) => bail!(
                    "{}:{line_number}: not a valid {} line ({error}); only the last line may be incomplete",
                    path.display(),
                    if contents.run.is_none() { "run header" } else { "record" },
                ),
            }
            start = next;
        }
        Ok(contents)
    }
}

/// An open results file, positioned for appending.
#[derive(Debug)]
pub struct ResultsLog<T> {
    path: PathBuf,
    file: File,
    records: Vec<Record<T>>,
    done: HashSet<(String, String)>,
    garbled_tail_bytes: usize,
}

impl<T: Serialize + DeserializeOwned> ResultsLog<T> {
    /// Opens (creating if needed) the results file at `path` for the run described by
    /// `run`. Existing records are loaded; a garbled final line is truncated away; an
    /// existing file of a different run is an error.
    pub fn open(path: &Path, run: &serde_json::Value) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening results {}", path.display()))?;
        let bytes =
            std::fs::read(path).with_context(|| format!("reading results {}", path.display()))?;
        let contents = LogContents::<T>::parse(&bytes, path)?;
        if let Some(stored) = &contents.run {
            if stored != run {
                bail!(
                    "{} holds results of another run ({stored}), not of {run}; use another file",
                    path.display()
                );
            }
        }
        let context = || format!("repairing results {}", path.display());
        file.set_len(contents.valid_len).with_context(context)?;
        file.seek(SeekFrom::End(0)).with_context(context)?;
        if contents.missing_newline {
            file.write_all(b"\n").with_context(context)?;
        }
        if contents.run.is_none() {
            let header = serde_json::to_string(&Header { run: run.clone() })?;
            file.write_all(format!("{header}\n").as_bytes())
                .with_context(|| format!("writing results {}", path.display()))?;
        }
        file.flush().with_context(context)?;
        let done = contents
            .records
            .iter()
            .map(|record| (record.image.clone(), record.method.clone()))
            .collect();
        Ok(Self {
            path: path.to_owned(),
            file,
            records: contents.records,
            done,
            garbled_tail_bytes: contents.garbled_tail_bytes,
        })
    }

    /// Appends one record as one line and flushes it. Appending an (image, method) that
    /// is already done is an error (the caller should have skipped it).
    pub fn append(&mut self, record: Record<T>) -> Result<()> {
        let key = (record.image.clone(), record.method.clone());
        if self.done.contains(&key) {
            bail!(
                "{}: image {} with method {} is already recorded",
                self.path.display(),
                record.image,
                record.method
            );
        }
        let mut line = serde_json::to_string(&record)
            .with_context(|| format!("serialising a record for {}", self.path.display()))?;
        line.push('\n');
        // One write per line, so an interruption leaves at most this line partial.
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing results {}", self.path.display()))?;
        self.done.insert(key);
        self.records.push(record);
        Ok(())
    }
}

impl<T> ResultsLog<T> {
    /// Whether `(image, method)` is recorded.
    pub fn is_done(&self, image: &str, method: &str) -> bool {
        self.done.contains(&(image.to_owned(), method.to_owned()))
    }

    /// All records, loaded and appended, in file order.
    pub fn records(&self) -> &[Record<T>] {
        &self.records
    }

    /// Consumes the log, returning its records.
    pub fn into_records(self) -> Vec<Record<T>> {
        self.records
    }

    /// Bytes of a garbled final line cut off when the file was opened (0 if none), so
    /// the caller can say that an interrupted write was repaired.
    pub fn garbled_tail_bytes(&self) -> usize {
        self.garbled_tail_bytes
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::eval::pointing::{Point, PointingPair, PointingScores};

    type PointingLog = ResultsLog<Vec<PointingPair>>;

    /// Deterministic per-image outcomes of a fake method.
    fn outcome(image: usize) -> Vec<PointingPair> {
        (0..(image % 3 + 1))
            .map(|k| PointingPair {
                class_index: (image * 7 + k * 3) % 5,
                point: Some(Point {
                    x: (image * 13 % 100) as f64,
                    y: 0.5 * k as f64,
                }),
                hit: !(image + k).is_multiple_of(4),
                difficult: Some((image * k) % 3 == 1),
            })
            .collect()
    }

    fn image_id(image: usize) -> String {
        format!("{image:06}")
    }

    fn run_description() -> serde_json::Value {
        json!({"dataset": "voc07", "model": "vgg16", "tolerance": 15.0})
    }

    /// Evaluates images `0..count` with two methods, skipping what the log has.
    fn evaluate(log: &mut PointingLog, count: usize) {
        for image in 0..count {
            for method in ["rsp", "center"] {
                if log.is_done(&image_id(image), method) {
                    continue;
                }
                log.append(Record {
                    image: image_id(image),
                    method: method.to_owned(),
                    outcome: outcome(image),
                })
                .unwrap();
            }
        }
    }

    fn scores(records: &[Record<Vec<PointingPair>>], method: &str) -> PointingScores {
        PointingScores::from_pairs(
            records
                .iter()
                .filter(|r| r.method == method)
                .flat_map(|r| r.outcome.iter()),
            5,
        )
        .unwrap()
    }

    #[test]
    fn resume_after_a_truncated_last_line_matches_an_uninterrupted_run() {
        let dir = tempfile::tempdir().unwrap();
        let run = run_description();

        let whole_path = dir.path().join("whole.jsonl");
        let mut whole = PointingLog::open(&whole_path, &run).unwrap();
        evaluate(&mut whole, 20);
        assert_eq!(whole.records().len(), 40);

        // An interrupted run: 7 images, then half of the next record's line.
        let resumed_path = dir.path().join("resumed.jsonl");
        let mut first_part = PointingLog::open(&resumed_path, &run).unwrap();
        evaluate(&mut first_part, 7);
        drop(first_part);
        let partial = serde_json::to_string(&Record {
            image: image_id(7),
            method: "rsp".to_owned(),
            outcome: outcome(7),
        })
        .unwrap();
        let cut = &partial[..partial.len() / 2];
        let mut file = OpenOptions::new().append(true).open(&resumed_path).unwrap();
        file.write_all(cut.as_bytes()).unwrap();
        drop(file);

        // Read-only view: the garbled tail is reported, nothing is changed.
        let before = std::fs::read(&resumed_path).unwrap();
        let view = LogContents::<Vec<PointingPair>>::read(&resumed_path).unwrap();
        assert_eq!(view.records.len(), 14);
        assert_eq!(view.garbled_tail_bytes, cut.len());
        assert_eq!(std::fs::read(&resumed_path).unwrap(), before);

        let mut resumed = PointingLog::open(&resumed_path, &run).unwrap();
        assert_eq!(resumed.garbled_tail_bytes(), cut.len());
        assert_eq!(resumed.records().len(), 14);
        assert!(resumed.is_done(&image_id(6), "center"));
        assert!(!resumed.is_done(&image_id(7), "rsp"));
        evaluate(&mut resumed, 20);
        drop(resumed);

        // Same bytes, same records, same aggregate.
        assert_eq!(
            std::fs::read(&resumed_path).unwrap(),
            std::fs::read(&whole_path).unwrap()
        );
        let whole_records = LogContents::<Vec<PointingPair>>::read(&whole_path)
            .unwrap()
            .records;
        let resumed_records = LogContents::<Vec<PointingPair>>::read(&resumed_path)
            .unwrap()
            .records;
        assert_eq!(resumed_records, whole_records);
        for method in ["rsp", "center"] {
            assert_eq!(
                scores(&resumed_records, method),
                scores(&whole_records, method)
            );
        }
        assert_eq!(
            scores(&whole_records, "rsp")
                .all
                .iter()
                .map(|t| t.hits + t.misses)
                .sum::<u64>(),
            39
        );
    }

    #[test]
    fn complete_last_line_without_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let run = run_description();
        let mut log = PointingLog::open(&path, &run).unwrap();
        evaluate(&mut log, 1);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.trim_end()).unwrap();
        let mut log = PointingLog::open(&path, &run).unwrap();
        assert_eq!(log.records().len(), 2);
        assert_eq!(log.garbled_tail_bytes(), 0);
        evaluate(&mut log, 2);
        drop(log);
        let reread = LogContents::<Vec<PointingPair>>::read(&path).unwrap();
        assert_eq!(reread.records.len(), 4);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 5);
    }

    #[test]
    fn garbled_header_only_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, "{\"run\":{\"data").unwrap();
        let log = PointingLog::open(&path, &run_description()).unwrap();
        assert!(log.records().is_empty());
        drop(log);
        let view = LogContents::<Vec<PointingPair>>::read(&path).unwrap();
        assert_eq!(view.run, Some(run_description()));
        // Binary junk at the end (e.g. after a crash) is dropped as well.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0, 0, 0xff, 0xfe, b'\n', b' ']).unwrap();
        drop(file);
        let log = PointingLog::open(&path, &run_description()).unwrap();
        assert_eq!(log.garbled_tail_bytes(), 6);
    }

    #[test]
    fn corruption_before_the_end_and_other_runs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut log = PointingLog::open(&path, &run_description()).unwrap();
        evaluate(&mut log, 2);
        // Appending a done pair is refused.
        assert!(log
            .append(Record {
                image: image_id(0),
                method: "rsp".to_owned(),
                outcome: vec![],
            })
            .is_err());
        drop(log);

        let other_run = json!({"dataset": "coco14", "model": "vgg16", "tolerance": 15.0});
        let message = PointingLog::open(&path, &other_run)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("log.jsonl") && message.contains("another run"),
            "{message}"
        );

        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[2] = "{\"image\": oops";
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let message = PointingLog::open(&path, &run_description())
            .unwrap_err()
            .to_string();
        assert!(message.contains("log.jsonl:3"), "{message}");
    }
}
