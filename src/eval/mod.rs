//! The evaluation suite: dataset readers, metrics, resumable result logs and result
//! tables (all CPU-side: they score [`Heatmap`]s whatever made them), plus the engine
//! glue that produces those maps on the GPU and the runner that walks a dataset with
//! it. The `rsp eval` command's arguments, plots and the sensitivity and faithfulness
//! drivers are application code (`crate::app::eval_command`).
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
//! * [`runner`]: a benchmark run over a dataset — batching, resume, the map metrics'
//!   driver — shared by `rsp eval` and Python.
//! * [`synth`]: the synthetic benchmark dataset (generated, VOC layout).

pub mod coco;
pub mod dataset;
pub mod difficult;
pub mod engine;
pub mod faithfulness;
pub mod map;
pub mod miou;
pub mod pointing;
pub mod results;
pub mod runner;
pub mod similarity;
pub mod synth;
pub mod table;
pub mod voc;

pub use dataset::{BinaryMask, ClassTruth, Dataset, LabelMap, Sample};
pub use map::Heatmap;
