//! Model sensitivity (Adebayo et al. 2018) end to end: the first images of a split
//! explained for the original model's top-1 class, then the model's layers
//! re-initialised from the logits down (cascading randomisation) and, after each step,
//! each method's maps compared with the original ones (Spearman, Spearman of |map|,
//! SSIM). One driver for `rsp eval sensitivity`, Python and the Ray workers; methods
//! are independent of each other, so a subset of them gives the same curves.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};

use super::driver::DatasetSource;
use super::engine::MapEngine;
use super::map::Heatmap;
use super::metric::mean;
use super::runner::{load_model, model_label, Progress};
use super::similarity;
use super::voc::VocGroundTruth;
use crate::explain::Method;
use crate::files::write_atomic;
use crate::gpu::GpuContext;
use crate::models::gpu::GpuModel;
use crate::models::randomize::{cascade_order, reinitialise};
use crate::preprocess::{load_image, preprocess_whole, Normalisation};
use crate::tensor::{top_k, Tensor};

/// The images explained by default (the first of the split).
pub const DEFAULT_IMAGES: usize = 16;

/// A sensitivity run.
#[derive(Clone, Debug)]
pub struct SensitivityRun {
    pub source: DatasetSource,
    /// The one classifier.
    pub weights: PathBuf,
    pub methods: Vec<Method>,
    /// Images explained: the first of the split.
    pub images: usize,
    /// Seed of the re-initialisation.
    pub seed: u64,
    /// Shorter side after resizing (0: original size); every image must end the same.
    pub size: u32,
    pub norm: Normalisation,
}

/// Mean similarity of one method's maps to the original model's, per cascade step
/// (the first step is the original model: 1).
#[derive(Clone, Debug, PartialEq)]
pub struct SimilarityCurve {
    pub method: Method,
    pub spearman: Vec<f64>,
    pub spearman_abs: Vec<f64>,
    pub ssim: Vec<f64>,
}

/// The curves of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensitivity {
    /// The model's label.
    pub model: String,
    /// `original`, then each layer re-initialised, from the top.
    pub steps: Vec<String>,
    pub curves: Vec<SimilarityCurve>,
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

/// Runs the cascade (progress: one step per layer re-initialised).
pub fn run_sensitivity(
    run: &SensitivityRun,
    ctx: &GpuContext,
    progress: &mut dyn Progress,
) -> Result<Sensitivity> {
    let (ds, _) = run.source.open(VocGroundTruth::Boxes)?;
    let original = load_model(&run.weights, ds.num_classes())?;
    let label = model_label(&run.weights);
    let n = run.images.min(ds.len());
    ensure!(n > 0, "no images to explain");
    let mut inputs = Vec::new();
    for i in 0..n {
        let s = ds.sample(i)?;
        let img = load_image(&s.image_path)?;
        inputs.push(preprocess_whole(
            &img,
            (run.size > 0).then_some(run.size),
            run.norm,
        ));
    }
    ensure!(
        inputs.iter().all(|t| t.shape == inputs[0].shape),
        "sensitivity needs images of one size (use --size)"
    );
    let batch = Tensor::stack(&inputs);
    let gpu = GpuModel::upload(ctx, &original);
    let engine = MapEngine { ctx, model: &gpu };
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
    let reference: Vec<Vec<Heatmap>> = run
        .methods
        .iter()
        .map(|&m| maps_of(&engine, m))
        .collect::<Result<_>>()?;
    drop(gpu);
    let order = cascade_order(&original);
    let mut curves: Vec<SimilarityCurve> = run
        .methods
        .iter()
        .map(|&method| SimilarityCurve {
            method,
            spearman: vec![1.0],
            spearman_abs: vec![1.0],
            ssim: vec![1.0],
        })
        .collect();
    let mut model = original.clone();
    progress.begin(order.len(), &format!("cascade, {label}"));
    for layer in &order {
        ensure!(
            reinitialise(&mut model, layer, run.seed),
            "no layer {layer}"
        );
        let gpu = GpuModel::upload(ctx, &model);
        let engine = MapEngine { ctx, model: &gpu };
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
        progress.advance();
    }
    progress.end(false);
    let mut steps = vec!["original".to_string()];
    steps.extend(order.iter().cloned());
    Ok(Sensitivity {
        model: label,
        steps,
        curves,
    })
}

/// One similarity measure's values along a curve.
pub type Measure = fn(&SimilarityCurve) -> &Vec<f64>;

/// The three similarity measures: file and column name, title, and the values of a
/// curve.
pub const MEASURES: [(&str, &str, Measure); 3] = [
    ("spearman", "Spearman rank correlation", |c| &c.spearman),
    ("spearman-abs", "Spearman rank correlation of |map|", |c| {
        &c.spearman_abs
    }),
    ("ssim", "SSIM", |c| &c.ssim),
];

impl Sensitivity {
    /// `sensitivity.MODEL`, the name of its tables and plots.
    pub fn name(&self) -> String {
        format!("sensitivity.{}", self.model)
    }

    /// The table as CSV: one row per (method, step).
    pub fn to_csv(&self) -> String {
        let mut csv = String::from("method,step,layer,spearman,spearman_abs,ssim\n");
        for cv in &self.curves {
            for (i, step) in self.steps.iter().enumerate() {
                csv.push_str(&format!(
                    "{},{i},{step},{:.4},{:.4},{:.4}\n",
                    cv.method.name(),
                    cv.spearman[i],
                    cv.spearman_abs[i],
                    cv.ssim[i]
                ));
            }
        }
        csv
    }

    /// The tables as Markdown: one per measure, methods × steps.
    pub fn to_markdown(&self) -> String {
        let steps = &self.steps;
        let mut md = String::new();
        for (measure, pick) in [
            (
                "Spearman",
                (|c: &SimilarityCurve| &c.spearman) as fn(&SimilarityCurve) -> &Vec<f64>,
            ),
            ("Spearman |map|", |c| &c.spearman_abs),
            ("SSIM", |c| &c.ssim),
        ] {
            md.push_str(&format!(
                "\n{measure} to the original map, after re-initialising down to:\n\n| method | {} |\n|---|{}\n",
                steps.join(" | "),
                "---|".repeat(steps.len())
            ));
            for cv in &self.curves {
                let cells: Vec<String> = pick(cv).iter().map(|v| format!("{v:.3}")).collect();
                md.push_str(&format!(
                    "| {} | {} |\n",
                    cv.method.name(),
                    cells.join(" | ")
                ));
            }
        }
        md
    }

    /// Writes `out/sensitivity.MODEL.csv` and `.md` (each atomically); returns their
    /// paths.
    pub fn write_tables(&self, out: &Path) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(out)?;
        let csv = out.join(format!("{}.csv", self.name()));
        let md = out.join(format!("{}.md", self.name()));
        write_atomic(&csv, self.to_csv().as_bytes())?;
        write_atomic(&md, self.to_markdown().as_bytes())?;
        Ok((csv, md))
    }
}
