//! The `rsp` command line: predictions and RSP heatmaps for images or normalised
//! tensors, and `rsp adapters`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::DeviceArgs;
use super::bench::{BenchArgs, TuneArgs};
use super::eval_command::EvalArgs;
use super::inputs::Input;
use super::output::check_output_dir;
use super::synth::SynthArgs;
use crate::explain::{explain, ExplainOptions, InitKind, Method, NO_TARGET};
use crate::files::write_atomic;
use crate::gpu::{list_adapters, Backend, GpuContext};
use crate::models::gpu::GpuModel;
use crate::models::hub::{self, WeightSources};
use crate::models::weights::TensorFile;
use crate::models::Readout;
use crate::preprocess::{load_image, preprocess_for};
use crate::render::{heatmap_image, overlay, save_png, ColorMap};
use crate::tensor::top_k;
use crate::{Explanation, Model, Tensor};

#[derive(Parser, Debug)]
#[command(
    name = "rsp",
    version,
    about = "Explain VGG/ResNet predictions with Relative Sectional Propagation (RSP) on any GPU",
    long_about = "Prints the top predictions of each input and writes its RSP heatmap \
                  (red = evidence for the target class, blue = hostile evidence).\n\
                  An INPUT ending in .safetensors is read as an already-normalised tensor \
                  named 'input' [N,3,H,W] (no resizing); any other INPUT is an image.",
    after_long_help = "Environment:\n  \
        RSP_WEIGHTS_DIR      where --model NAME looks for NAME.safetensors first (default: ./weights)\n  \
        RSP_CACHE_DIR        download cache (default: the user cache directory + /rsp)\n  \
        RSP_HUB_URL          hub or mirror to download from (default: https://huggingface.co)\n  \
        RSP_WEIGHTS_SHA256   expected SHA-256 of the download, replacing the pinned one",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// Print every adapter found (same as `rsp adapters`) and exit.
    #[arg(long)]
    pub list_adapters: bool,

    /// Pretrained ImageNet classifier: vgg11, vgg13, vgg16, vgg19 (each also _bn),
    /// resnet18, resnet34, resnet50, resnet101 or resnet152. Looked for as
    /// NAME.safetensors in $RSP_WEIGHTS_DIR (else ./weights), then in the cache
    /// ($RSP_CACHE_DIR, else the user cache dir + /rsp), else downloaded from the
    /// Hugging Face hub (timm's copy of the torchvision weights) and SHA-256 checked.
    #[arg(
        long,
        default_value = "vgg16",
        conflicts_with = "weights",
        value_name = "NAME"
    )]
    pub model: String,

    /// Model file used instead of --model: an ONNX graph (`.onnx`, any ReLU CNN
    /// exported with `torch.onnx.export`), or safetensors with torchvision-named (or
    /// timm) VGG or ResNet weights.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,

    /// The layer whose output RSP's initial relevance and Grad-CAM start from, by name
    /// (`rsp inspect FILE` lists them and marks the default: the last image-shaped ReLU
    /// or concatenation before the head).
    #[arg(long, value_name = "NAME")]
    pub explain_layer: Option<String>,

    /// Never download weights; if they are not found locally, say where to put them.
    #[arg(long)]
    pub offline: bool,

    /// Allow downloading a model whose SHA-256 rsp does not pin (vgg11_bn, vgg13,
    /// resnet34, resnet101); the computed hash is printed for you to compare.
    #[arg(long)]
    pub allow_unpinned: bool,

    /// Attribution method: RSP, or a baseline on the same engine (PNGs are named
    /// STEM.METHOD.png).
    #[arg(long, value_enum, default_value_t = ExplainOptions::DEFAULT.method)]
    pub method: Method,

    /// Initial relevance at the explanation layer.
    #[arg(long, value_enum, default_value_t = ExplainOptions::DEFAULT.init)]
    pub init: InitKind,

    /// Number of top classes compared by --init comparative (K ≥ 2).
    #[arg(long, default_value_t = ExplainOptions::DEFAULT.compare_k)]
    pub compare_k: usize,

    /// Class to explain: an index, or (1000-class models) an ImageNet class name or an
    /// unambiguous prefix of one, e.g. "tabby". Without it: each image's top-1 prediction.
    #[arg(long, value_name = "INDEX|NAME")]
    pub target: Option<String>,

    /// Several classes to explain per image, one map each (named STEM.METHOD.CLASS.png):
    /// a comma-separated list of indices or ImageNet names ("281,285"), or "topK" for
    /// each image's K best predictions.
    #[arg(long, value_name = "LIST|topK", conflicts_with = "target")]
    pub targets: Option<String>,

    /// Start the backward pass from this initial relevance (tensor 'init' of shape N×C×h×w)
    /// instead of --init; all inputs then form one batch.
    #[arg(long, value_name = "INIT.safetensors")]
    pub init_relevance: Option<PathBuf>,

    /// How logits read as probabilities in the printout and --json: softmax
    /// (single-label), sigmoid (multi-label), or auto: sigmoid where the weights'
    /// metadata marks a multi-label model (the synthetic benchmark's), softmax otherwise.
    #[arg(long, default_value = "auto", value_name = "auto|softmax|sigmoid")]
    pub readout: String,

    /// Average each map over N noisy copies of the image (SmoothGrad; any method).
    #[arg(long, value_name = "N")]
    pub smooth: Option<usize>,

    /// Noise of --smooth: standard deviation as a fraction of each image's value range.
    #[arg(long, default_value_t = ExplainOptions::DEFAULT.noise, allow_negative_numbers = true)]
    pub noise: f32,

    /// Write a JSON report: per image the top-5 predictions, the explained class(es) and
    /// the paths of the PNGs written (and the error for inputs that failed).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Also write the relevance, heatmap, init, logits and target tensors to this file.
    #[arg(long, value_name = "OUT.safetensors")]
    pub save_relevance: Option<PathBuf>,

    /// Colour map of the PNGs: bwr (blue, white at 0, red), seismic (matplotlib's),
    /// coldnhot (Zennit's: cyan, blue, black at 0, red, yellow), jet, gray. Default: jet
    /// for gradcam (min-max normalised, the Grad-CAM convention), bwr otherwise. Maps with
    /// negative values are always scaled by their max |value| (0 stays 0).
    #[arg(long, value_name = "NAME")]
    pub cmap: Option<String>,

    /// Opacity of the overlay, in [0, 1]: 0.7·alpha where the map is 0, up to 1.7·alpha
    /// (at most 1) at its strongest.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub alpha: f32,

    /// Directory for the heatmap PNGs (created if missing).
    #[arg(long, default_value = "rsp-out", value_name = "DIR")]
    pub out: PathBuf,

    /// Images are resized (shorter side) to size·256/224, then centre-cropped to size
    /// [default: the size an ONNX model was exported for, else 224].
    #[arg(long)]
    pub size: Option<u32>,

    /// Images explained together in one GPU batch (more is faster but needs more
    /// GPU memory).
    #[arg(long, default_value_t = ExplainOptions::DEFAULT.batch_size)]
    pub batch_size: usize,

    /// Images, folders (searched recursively for PNG/JPEG files; outputs mirror their
    /// sub-folders), quoted glob patterns ("photos/*/*.jpg"), or normalised input
    /// tensors (.safetensors).
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

impl Cli {
    /// The explanation options these flags set.
    fn explain_options(&self) -> ExplainOptions {
        ExplainOptions {
            method: self.method,
            init: self.init,
            compare_k: self.compare_k,
            batch_size: self.batch_size,
            smooth: self.smooth,
            noise: self.noise,
            record_layers: false,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every GPU adapter wgpu finds, with backend, type and key limits.
    Adapters,
    /// Time forward and full RSP explanation (forward + initial relevance + backward,
    /// GPU work synchronised) on random inputs; reports the median and peak memory.
    Bench(BenchArgs),
    /// Choose the convolution kernels for a model, input size and batch by timing
    /// every variant on this device (one explanation's worth of problems) and cache
    /// the choices, so later runs start fast.
    Tune(TuneArgs),
    /// Benchmarks of RSP and the baselines: Pointing Game, mIoU, model sensitivity, faithfulness.
    Eval(EvalArgs),
    /// Generate the synthetic multi-object benchmark dataset (VOC layout) for
    /// evaluating attributions with nothing downloaded.
    Synth(SynthArgs),
    /// Explain images in a browser page: drop photos, pick classes and methods,
    /// compare the maps side by side (local use: no authentication).
    Serve(super::serve::ServeArgs),
    /// List a model's layers with their output shapes, marking the explanation layer.
    Inspect(super::inspect::InspectArgs),
}

/// One unit of work: a batch from one .safetensors input, or a run of images.
struct Job {
    /// What failed, if the explanation fails (a file name, or "N images").
    source: String,
    /// Output name under `--out` without extension (with an index for multi-image
    /// tensors).
    stems: Vec<String>,
    /// The input file of each image.
    paths: Vec<PathBuf>,
    input: Tensor,
    /// Cropped photos for overlays (images only).
    photos: Vec<Option<image::RgbImage>>,
}

/// Inputs shown with a progress bar from this many on.
const PROGRESS_MIN_INPUTS: usize = 4;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Each adapter of `backend` with the index and PCI bus `--adapter` chooses it by;
/// with `auto`, the OpenGL ones too (chosen with `--backend gl`).
fn print_adapters(backend: Backend) {
    let all = list_adapters(backend);
    if all.is_empty() {
        println!("no adapters found for backend '{backend}'");
    }
    let bus = |a: &crate::gpu::AdapterSummary| {
        if a.pci_bus_id.is_empty() {
            "-".to_string()
        } else {
            a.pci_bus_id.clone()
        }
    };
    for a in &all {
        println!("index:{} pci:{} {a}", a.index, bus(a));
    }
    if backend == Backend::Auto {
        for a in list_adapters(Backend::Gl) {
            println!("(--backend gl) index:{} pci:{} {a}", a.index, bus(&a));
        }
    }
}

/// The weights file: `--weights`, else `--model` resolved (and if need be downloaded)
/// by [`hub::resolve_model`].
fn weights_path(cli: &Cli) -> Result<PathBuf> {
    match &cli.weights {
        Some(w) => Ok(w.clone()),
        None => hub::resolve_model(
            &cli.model,
            &WeightSources::from_env(cli.offline, cli.allow_unpinned),
        ),
    }
}

/// Returns Ok(true) when every input succeeded.
pub fn run(cli: &Cli) -> Result<bool> {
    if cli.list_adapters || matches!(cli.command, Some(Command::Adapters)) {
        print_adapters(cli.device.backend);
        return Ok(true);
    }
    if let Some(Command::Eval(e)) = &cli.command {
        super::eval_command::run(e)?;
        return Ok(true);
    }
    if let Some(Command::Bench(b)) = &cli.command {
        super::bench::run(b)?;
        return Ok(true);
    }
    if let Some(Command::Tune(t)) = &cli.command {
        super::bench::tune(t)?;
        return Ok(true);
    }
    if let Some(Command::Synth(s)) = &cli.command {
        super::synth::run(s)?;
        return Ok(true);
    }
    if let Some(Command::Inspect(i)) = &cli.command {
        super::inspect::run(i)?;
        return Ok(true);
    }
    if let Some(Command::Serve(s)) = &cli.command {
        super::serve::run(s)?;
        return Ok(true);
    }
    if cli.inputs.is_empty() {
        bail!("no INPUT given (images or .safetensors tensors); see `rsp --help`");
    }
    if cli.compare_k < 2 {
        bail!("--compare-k must be at least 2, got {}", cli.compare_k);
    }
    if let Some(size) = cli.size.filter(|&s| s < 8) {
        bail!("--size must be at least 8, got {size}");
    }
    if cli.method != Method::Rsp && cli.init_relevance.is_some() {
        bail!(
            "--init-relevance starts RSP at its explanation layer; --method {} starts at the logits",
            cli.method
        );
    }
    let options = cli.explain_options();
    options.validate()?;
    let cmap = match &cli.cmap {
        Some(name) => ColorMap::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = ColorMap::ALL.iter().map(|c| c.name()).collect();
            anyhow::anyhow!(
                "--cmap {name:?} is not a colour map (one of {})",
                names.join(", ")
            )
        })?,
        None if cli.method == Method::GradCam => ColorMap::Jet,
        None => ColorMap::Bwr,
    };
    if !(0.0..=1.0).contains(&cli.alpha) {
        bail!("--alpha must be in [0, 1], got {}", cli.alpha);
    }
    // Checked before a possibly long weights download, but created only when the first
    // PNG is written, so a run that explains nothing leaves no empty folder.
    check_output_dir(&cli.out)?;
    let inputs = super::inputs::expand(&cli.inputs)?;
    let given_init = match &cli.init_relevance {
        Some(p) => Some(TensorFile::read(p)?.get("init")?.clone()),
        None => None,
    };
    if given_init.is_some() && cli.targets.is_some() {
        bail!("--targets explains several classes per image; --init-relevance gives one start");
    }
    let readout = match cli.readout.as_str() {
        "auto" => None,
        "softmax" => Some(Readout::Softmax),
        "sigmoid" => Some(Readout::Sigmoid),
        other => bail!("--readout {other:?} is not auto, softmax or sigmoid"),
    };
    let wpath = weights_path(cli)?;
    let mut model = Model::from_file(&wpath)?;
    if let Some(layer) = &cli.explain_layer {
        model.set_explain_layer(layer)?;
    }
    let size = cli.size.unwrap_or_else(|| model.default_size());
    // Tensor inputs carry their own size, checked per batch; an explicit --size for a
    // model exported at a fixed size must be that size.
    if cli.size.is_some() && model.input_size.is_some() {
        model.check_input_size(size as usize, size as usize)?;
    }
    let readout = readout.unwrap_or(model.readout);
    let targets = match (&cli.target, &cli.targets) {
        (Some(t), _) => Targets::One(resolve_target(t, model.num_classes())?),
        (None, Some(list)) => parse_targets(list, model.num_classes())?,
        (None, None) => Targets::Top1,
    };

    // A given initial relevance covers every input at once, so they form one batch.
    let batch_size = if given_init.is_some() {
        usize::MAX
    } else {
        cli.batch_size
    };
    let batches = plan_batches(&inputs, batch_size);
    if given_init.is_some() && batches.len() != 1 {
        bail!(
            "--init-relevance needs exactly one batch of inputs (one .safetensors input or images)"
        );
    }

    let ctx = GpuContext::new(&cli.device.context_options())?;
    let gpu_model = GpuModel::upload(&ctx, &model);
    eprintln!(
        "{} on {} ({})",
        model.describe(),
        ctx.adapter.name,
        format!("{:?}", ctx.adapter.backend).to_lowercase()
    );

    let progress = if inputs.len() >= PROGRESS_MIN_INPUTS {
        let bar =
            ProgressBar::with_draw_target(Some(inputs.len() as u64), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} inputs, {elapsed} (eta {eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut ok = true;
    let names: Vec<&str> = match &model.class_names {
        Some(n) => n.iter().map(String::as_str).collect(),
        None => super::args::IMAGENET_CLASSES.lines().collect(),
    };
    let mut saved: Vec<Explanation> = Vec::new();
    let mut report_json: Vec<serde_json::Value> = Vec::new();
    for batch in &batches {
        let (job, failures) = read_batch(batch, size, &progress);
        ok &= failures.is_empty();
        for (path, err) in failures {
            report_json.push(serde_json::json!({"input": path, "error": err}));
        }
        let Some(job) = job else {
            progress.inc(batch.len() as u64);
            continue;
        };
        let n = job.input.shape[0];
        // One row per (image, class to explain).
        let per_image: Vec<Option<Vec<usize>>> = match &targets {
            Targets::Top1 => vec![None; n],
            Targets::One(t) => vec![Some(vec![*t]); n],
            Targets::List(list) => vec![Some(list.clone()); n],
            Targets::Top(k) => {
                let logits = gpu_model.predict(&ctx, &job.input)?;
                let c = logits.shape[1];
                (0..n)
                    .map(|i| Some(top_k(&logits.data[i * c..(i + 1) * c], (*k).min(c))))
                    .collect()
            }
        };
        let rows: Vec<(usize, Option<usize>)> = per_image
            .iter()
            .enumerate()
            .flat_map(|(i, t)| match t {
                None => vec![(i, None)],
                Some(list) => list.iter().map(|&c| (i, Some(c))).collect(),
            })
            .collect();
        let input = if rows.len() == n {
            job.input.clone()
        } else {
            let parts: Vec<Tensor> = rows
                .iter()
                .map(|&(i, _)| job.input.slice0(i..i + 1))
                .collect();
            Tensor::concat0(&parts)
        };
        let req = options.request(
            rows.iter().map(|&(_, t)| t).collect::<Option<Vec<usize>>>(),
            given_init.as_ref(),
        );
        let result = explain(&ctx, &gpu_model, &input, &req);
        let e = match result {
            Ok(e) => e,
            Err(err) => {
                progress.suspend(|| eprintln!("error: {}: {err:#}", job.source));
                for path in &job.paths {
                    report_json
                        .push(serde_json::json!({"input": path, "error": format!("{err:#}")}));
                }
                ok = false;
                progress.inc(batch.len() as u64);
                continue;
            }
        };
        let classes = e.logits.shape[1];
        let probs = (classes > 0).then(|| readout.probabilities(&e.logits));
        let heat = e.heatmap();
        let several = cli.targets.is_some();
        for i in 0..n {
            let mut report = format!("{}:\n", job.paths[i].display());
            let first_row = rows
                .iter()
                .position(|&(img, _)| img == i)
                .expect("a row per image");
            let mut predictions = Vec::new();
            if let Some(probs) = &probs {
                let row = &probs.data[first_row * classes..(first_row + 1) * classes];
                for c in top_k(row, 5.min(classes)) {
                    let label = if names.len() == classes { names[c] } else { "" };
                    report += &format!("  {:6.2}%  {c:4}  {label}\n", row[c] * 100.0);
                    predictions.push(serde_json::json!({
                        "class": c, "label": label, "probability": row[c]
                    }));
                }
            }
            let mut explained = Vec::new();
            for (r, _) in rows.iter().enumerate().filter(|(_, &(img, _))| img == i) {
                let target = e.target[r];
                match target {
                    NO_TARGET => {
                        report += "  explained from the given initial relevance (no classifier)\n"
                    }
                    t => report += &format!("  explained class: {t}\n"),
                }
                let name = if several {
                    format!("{}.{}.{target}", job.stems[i], cli.method)
                } else {
                    format!("{}.{}", job.stems[i], cli.method)
                };
                let map = heat.index0(r);
                let png = cli.out.join(format!("{name}.png"));
                if let Some(dir) = png.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                save_png(&png, &heatmap_image(&map, cmap))?;
                report += &format!("  heatmap: {}\n", png.display());
                let mut ov_path = None;
                if let Some(photo) = &job.photos[i] {
                    let ov = cli.out.join(format!("{name}-overlay.png"));
                    save_png(&ov, &overlay(photo, &map, cmap, cli.alpha))?;
                    report += &format!("  overlay: {}\n", ov.display());
                    ov_path = Some(ov);
                }
                explained.push(serde_json::json!({
                    "class": (target != NO_TARGET).then_some(target),
                    "heatmap": png,
                    "overlay": ov_path,
                }));
            }
            report_json.push(serde_json::json!({
                "input": job.paths[i],
                "predictions": predictions,
                "explained": explained,
            }));
            progress.suspend(|| print!("{report}"));
        }
        progress.inc(batch.len() as u64);
        saved.push(e);
    }
    progress.finish_and_clear();
    super::args::note_deferred_tuning(&ctx);
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "model": model.describe(),
            "method": cli.method.name(),
            "readout": readout.name(),
            "images": report_json,
        }))?;
        write_atomic(path, text.as_bytes())?;
        println!("report: {}", path.display());
    }
    if let Some(path) = &cli.save_relevance {
        if saved.is_empty() {
            bail!("nothing to save to {}: every input failed", path.display());
        }
        save_relevance(path, &saved)?;
        println!("relevance tensors: {}", path.display());
    }
    Ok(ok)
}

/// What `--target`/`--targets` ask for.
enum Targets {
    /// Each image's top-1 prediction.
    Top1,
    One(usize),
    List(Vec<usize>),
    /// Each image's K best predictions.
    Top(usize),
}

/// `--targets`: `topK`, or a comma-separated list of classes as `--target` takes them.
fn parse_targets(arg: &str, classes: usize) -> Result<Targets> {
    if let Some(k) = arg.trim().strip_prefix("top") {
        let k: usize = k
            .parse()
            .map_err(|_| anyhow!("--targets '{arg}': expected topK with K a number, e.g. top3"))?;
        if k == 0 || k > classes {
            bail!("--targets {arg}: K must be between 1 and the number of classes ({classes})");
        }
        return Ok(Targets::Top(k));
    }
    let list = arg
        .split(',')
        .map(|t| {
            resolve_target(t, classes)
                .map_err(|e| anyhow!("--targets: {}", e.to_string().replace("--target ", "")))
        })
        .collect::<Result<Vec<_>>>()?;
    if list.is_empty() {
        bail!("--targets is empty");
    }
    Ok(Targets::List(list))
}

/// `--target`: a class index, or for 1000-class models an ImageNet class name (any of
/// its comma-separated synonyms, case-insensitive) or an unambiguous prefix of one.
pub fn resolve_target(arg: &str, classes: usize) -> Result<usize> {
    if let Ok(i) = arg.trim().parse::<usize>() {
        if classes > 0 && i >= classes {
            bail!("--target {i} is out of range: the model has {classes} classes");
        }
        return Ok(i);
    }
    let names: Vec<&str> = super::args::IMAGENET_CLASSES.lines().collect();
    if classes != names.len() {
        bail!(
            "--target '{arg}': class names need a model with the {} ImageNet classes (this one has {classes}); give an index",
            names.len()
        );
    }
    let want = arg.trim().to_lowercase();
    let synonyms =
        |line: &str| -> Vec<String> { line.split(',').map(|s| s.trim().to_lowercase()).collect() };
    let exact: Vec<usize> = (0..names.len())
        .filter(|&i| synonyms(names[i]).contains(&want))
        .collect();
    let hits = if exact.is_empty() {
        (0..names.len())
            .filter(|&i| synonyms(names[i]).iter().any(|s| s.starts_with(&want)))
            .collect()
    } else {
        exact
    };
    match hits.as_slice() {
        [i] => Ok(*i),
        [] => bail!("--target '{arg}': no ImageNet class name starts with it"),
        many => {
            let list: Vec<String> = many
                .iter()
                .take(8)
                .map(|&i| format!("{i} ({})", names[i]))
                .collect();
            bail!(
                "--target '{arg}' is ambiguous: {}{}",
                list.join("; "),
                if many.len() > 8 { "; ..." } else { "" }
            )
        }
    }
}

fn is_tensor_input(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Groups the inputs, in order, into batches: each .safetensors input alone, and runs
/// of consecutive images in chunks of at most `batch_size`.
fn plan_batches(inputs: &[Input], batch_size: usize) -> Vec<Vec<Input>> {
    let mut batches: Vec<Vec<Input>> = Vec::new();
    let mut images: Vec<Input> = Vec::new();
    for input in inputs {
        if is_tensor_input(&input.path) {
            if !images.is_empty() {
                batches.push(std::mem::take(&mut images));
            }
            batches.push(vec![input.clone()]);
        } else {
            images.push(input.clone());
            if images.len() == batch_size {
                batches.push(std::mem::take(&mut images));
            }
        }
    }
    if !images.is_empty() {
        batches.push(images);
    }
    batches
}

/// Reads one batch of inputs (see [`plan_batches`]). Bad inputs are reported and
/// skipped (returned with their error); `None` when nothing was readable.
fn read_batch(
    batch: &[Input],
    size: u32,
    progress: &ProgressBar,
) -> (Option<Job>, Vec<(PathBuf, String)>) {
    let mut failures = Vec::new();
    let mut stems = Vec::new();
    let mut paths = Vec::new();
    let mut tensors = Vec::new();
    let mut photos = Vec::new();
    for Input { path, out_stem } in batch {
        let stem = out_stem.to_string_lossy().to_string();
        let result: Result<()> = (|| {
            if is_tensor_input(path) {
                let f = TensorFile::read(path)?;
                let t = f.get("input")?.clone();
                if t.shape.len() != 4 || t.shape[1] != 3 {
                    bail!(
                        "{}: tensor 'input' must be [N,3,H,W], got {:?}",
                        path.display(),
                        t.shape
                    );
                }
                let n = t.shape[0];
                if n == 1 {
                    stems.push(stem.clone());
                } else {
                    stems.extend((0..n).map(|i| format!("{stem}.{i}")));
                }
                paths.extend(std::iter::repeat_n(path.clone(), n));
                photos.extend(std::iter::repeat_n(None, n));
                tensors.push(t);
            } else {
                let img = load_image(path)?;
                let p = preprocess_for(&img, size);
                stems.push(stem.clone());
                paths.push(path.clone());
                photos.push(Some(p.cropped));
                let [c, h, w] = p.tensor.shape[..] else {
                    unreachable!("preprocess returns [3, size, size]")
                };
                tensors.push(p.tensor.reshape(&[1, c, h, w]));
            }
            Ok(())
        })();
        if let Err(e) = result {
            progress.suspend(|| eprintln!("error: {e:#}"));
            failures.push((path.clone(), format!("{e:#}")));
        }
    }
    if tensors.is_empty() {
        return (None, failures);
    }
    let source = match batch {
        [one] => one.path.display().to_string(),
        many => format!("{} images ({} ...)", many.len(), many[0].path.display()),
    };
    let input = if tensors.len() == 1 {
        tensors.pop().unwrap()
    } else {
        Tensor::concat0(&tensors)
    };
    (
        Some(Job {
            source,
            stems,
            paths,
            input,
            photos,
        }),
        failures,
    )
}

fn save_relevance(path: &Path, parts: &[Explanation]) -> Result<()> {
    write_atomic(
        path,
        &crate::explain::relevance_file::relevance_file(parts)?,
    )
}
