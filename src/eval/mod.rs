//! The evaluation suite: dataset readers, metrics, resumable result logs and result
//! tables (all CPU-side: they score [`Heatmap`]s whatever made them), plus the engine
//! glue that produces those maps on the GPU, the walk over a dataset, and the drivers
//! of every benchmark — what `rsp eval`, Python and the Ray workers all call. The
//! command's arguments, printing and plots are application code
//! (`crate::app::eval_command`).
//!
//! * [`dataset`]: the common types ([`Sample`], [`ClassTruth`], [`BinaryMask`],
//!   [`LabelMap`]) and the [`Dataset`] trait.
//! * [`voc`] and [`coco`]: readers for the PASCAL VOC 2007 layout and COCO 2014
//!   instance annotations.
//! * [`difficult`]: the EBP "difficult" flag tables.
//! * [`pointing`]: the Pointing Game (TorchRay protocol), [`miou`]: mIoU of binarised
//!   maps, [`similarity`]: Spearman rank correlation and SSIM for model-sensitivity tests.
//! * [`results`]: append-only JSONL logs that let an interrupted run resume.
//! * [`table`]: the final method × (dataset, model) table as text, CSV and Markdown.
//! * [`map`]: the saliency map type and the torch-compatible bilinear resize.
//! * [`faithfulness`]: deletion/insertion curves and their AUC (RISE), region
//!   perturbation (MoRF/LeRF, AOPC) and ROAD (noisy linear imputation).
//! * [`engine`]: maps of any method from the GPU engine.
//! * [`runner`]: the dataset behind a name, the images of a run or a [`runner::Shard`],
//!   and the walk that batches maps and hands them to a scorer in the split's order.
//! * [`metric`]: the logged benchmarks (Pointing Game, mIoU, deletion/insertion,
//!   region perturbation, ROAD) as [`metric::Metric`]s, named by [`metric::Benchmark`].
//! * [`driver`]: a logged benchmark end to end — logs, resume, shards, table.
//! * [`merge`]: the shard logs of a run into its log and table.
//! * [`sensitivity`]: the model-sensitivity cascade end to end.
//! * [`synth`]: the synthetic benchmark dataset (generated, VOC layout).

pub mod coco;
pub mod dataset;
pub mod difficult;
pub mod driver;
pub mod engine;
pub mod faithfulness;
pub mod map;
pub mod merge;
pub mod metric;
pub mod miou;
pub mod pointing;
pub mod results;
pub mod runner;
pub mod sensitivity;
pub mod similarity;
pub mod synth;
pub mod table;
pub mod voc;

pub use dataset::{BinaryMask, ClassTruth, Dataset, LabelMap, Sample};
pub use map::Heatmap;
