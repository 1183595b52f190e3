//! The `rsp` command line: predictions and RSP heatmaps for images or normalised
//! tensors, and `rsp adapters`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::explain::{explain, explain_method, Method, RspOptions, NO_TARGET};
use crate::gpu::{list_adapters, Backend, ContextOptions, GpuContext};
use crate::models::gpu::GpuModel;
use crate::models::weights::{to_safetensors_bytes, TensorFile};
use crate::preprocess::{load_image, preprocess};
use crate::reference::ops::{softmax, top_k};
use crate::render::{heatmap_image, overlay, save_png, write_atomic};
use crate::{Explanation, Init, Model, Tensor};

/// ImageNet-1k class names in index order.
pub const IMAGENET_CLASSES: &str = include_str!("imagenet_classes.txt");

#[derive(Parser, Debug)]
#[command(
    name = "rsp",
    version,
    about = "Explain VGG/ResNet predictions with Relative Sectional Propagation (RSP) on any GPU",
    long_about = "Prints the top predictions of each input and writes its RSP heatmap \
                  (red = evidence for the target class, blue = hostile evidence).\n\
                  An INPUT ending in .safetensors is read as an already-normalised tensor \
                  named 'input' [N,3,H,W] (no resizing); any other INPUT is an image.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// wgpu backend: auto (the native API, OpenGL as a fallback), vulkan, metal, dx12 or gl.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    pub backend: Backend,

    /// Print every adapter found (same as `rsp adapters`) and exit.
    #[arg(long)]
    pub list_adapters: bool,

    /// Model to load from the weights directory ($RSP_WEIGHTS_DIR, else ./weights):
    /// DIR/NAME.safetensors.
    #[arg(long, default_value = "vgg16", conflicts_with = "weights")]
    pub model: String,

    /// Safetensors file with torchvision-named (or timm VGG) weights; overrides --model.
    #[arg(long)]
    pub weights: Option<PathBuf>,

    /// Attribution method: RSP, or a baseline on the same engine (PNGs are named
    /// <stem>.<method>.png).
    #[arg(long, value_enum, default_value_t = Method::Rsp)]
    pub method: Method,

    /// Initial relevance at the explanation layer.
    #[arg(long, value_enum, default_value_t = InitKind::Gradcam)]
    pub init: InitKind,

    /// Number of top classes compared by `--init comparative` (K ≥ 2).
    #[arg(long, default_value_t = 3)]
    pub compare_k: usize,

    /// Class to explain: an index, or (1000-class models) an ImageNet class name or an
    /// unambiguous prefix of one, e.g. "tabby". Default: each image's top-1 prediction.
    #[arg(long)]
    pub target: Option<String>,

    /// Start the backward pass from this initial relevance (tensor 'init' `[N,C,h,w]`).
    #[arg(long, value_name = "INIT.safetensors")]
    pub init_relevance: Option<PathBuf>,

    /// Write relevance, heatmap, init, logits and target tensors to this file.
    #[arg(long, value_name = "OUT.safetensors")]
    pub save_relevance: Option<PathBuf>,

    /// Directory for the heatmap PNGs.
    #[arg(long, default_value = "rsp-out")]
    pub out: PathBuf,

    /// Images are resized (shorter side) to size·256/224, then centre-cropped to size.
    #[arg(long, default_value_t = 224)]
    pub size: u32,

    /// Images or normalised input tensors (.safetensors).
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every GPU adapter wgpu finds, with backend, type and key limits.
    Adapters,
    /// Time forward and full RSP explanation (forward + initial relevance + backward,
    /// GPU work synchronised) on random inputs; reports the median and peak memory.
    Bench(BenchArgs),
    /// Benchmarks of RSP and the baselines: Pointing Game, mIoU, model sensitivity.
    Eval(crate::eval::command::EvalArgs),
    /// Generate the synthetic multi-object benchmark dataset (VOC layout) for
    /// evaluating attributions with nothing downloaded.
    Synth(crate::synth::SynthArgs),
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// torchvision architecture with random weights (`vgg11`..`vgg19`, optionally `_bn`; `resnet18`..`resnet152`).
    #[arg(long, default_value = "vgg16")]
    pub model: String,
    /// Use these weights instead of random ones.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Input side length.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed repetitions (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// After timing, run once more with GPU timestamps and print the time per kernel.
    #[arg(long)]
    pub profile: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitKind {
    /// Grad-CAM without channel sum, max-normalised (the authors' default).
    Gradcam,
    /// Top-K comparative gradients.
    Comparative,
}

fn parse_backend(s: &str) -> std::result::Result<Backend, String> {
    s.parse()
}

/// One unit of work: a batch from one .safetensors input, or one image.
struct Job {
    source: PathBuf,
    /// File stem for outputs (with an index for multi-image tensors).
    stems: Vec<String>,
    input: Tensor,
    /// Cropped photos for overlays (images only).
    photos: Vec<Option<image::RgbImage>>,
}

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

fn print_adapters(backend: Backend) {
    let mut all = list_adapters(backend);
    if backend == Backend::Auto {
        all.extend(list_adapters(Backend::Gl));
    }
    if all.is_empty() {
        println!("no adapters found for backend '{backend}'");
    }
    for a in all {
        println!("{a}");
    }
}

fn weights_path(cli: &Cli) -> Result<PathBuf> {
    if let Some(w) = &cli.weights {
        return Ok(w.clone());
    }
    let dir = std::env::var_os("RSP_WEIGHTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("weights"));
    let path = dir.join(format!("{}.safetensors", cli.model));
    if !path.exists() {
        bail!(
            "model '{}': weights not found at {} (set $RSP_WEIGHTS_DIR or pass --weights FILE; \
             see weights/README.md for where to get torchvision weights in safetensors form)",
            cli.model,
            path.display()
        );
    }
    Ok(path)
}

/// Returns Ok(true) when every input succeeded.
pub fn run(cli: &Cli) -> Result<bool> {
    if cli.list_adapters || matches!(cli.command, Some(Command::Adapters)) {
        print_adapters(cli.backend);
        return Ok(true);
    }
    if let Some(Command::Eval(e)) = &cli.command {
        crate::eval::command::run(e)?;
        return Ok(true);
    }
    if let Some(Command::Bench(b)) = &cli.command {
        crate::bench::run(cli.backend, b)?;
        return Ok(true);
    }
    if let Some(Command::Synth(s)) = &cli.command {
        crate::synth::run(s)?;
        return Ok(true);
    }
    if cli.inputs.is_empty() {
        bail!("no INPUT given (images or .safetensors tensors); see `rsp --help`");
    }
    if cli.compare_k < 2 {
        bail!("--compare-k must be at least 2, got {}", cli.compare_k);
    }
    if cli.size < 8 {
        bail!("--size must be at least 8, got {}", cli.size);
    }
    if cli.method != Method::Rsp && cli.init_relevance.is_some() {
        bail!(
            "--init-relevance starts RSP at its explanation layer; --method {} starts at the logits",
            cli.method
        );
    }
    let wpath = weights_path(cli)?;
    let model = Model::from_file(&wpath)?;
    let target = match &cli.target {
        Some(t) => Some(resolve_target(t, model.num_classes())?),
        None => None,
    };
    let given_init = match &cli.init_relevance {
        Some(p) => Some(TensorFile::read(p)?.get("init")?.clone()),
        None => None,
    };
    std::fs::create_dir_all(&cli.out)
        .with_context(|| format!("cannot create output directory {}", cli.out.display()))?;
    check_writable(&cli.out)?;

    let ctx = GpuContext::new(&ContextOptions {
        backend: cli.backend,
        ..Default::default()
    })?;
    let gpu_model = GpuModel::upload(&ctx, &model);
    eprintln!(
        "{} on {} ({})",
        model.describe(),
        ctx.adapter.name,
        format!("{:?}", ctx.adapter.backend).to_lowercase()
    );

    let (jobs, mut ok) = collect_jobs(cli);
    if given_init.is_some() && jobs.len() != 1 {
        bail!(
            "--init-relevance needs exactly one batch of inputs (one .safetensors input or images)"
        );
    }
    let names: Vec<&str> = IMAGENET_CLASSES.lines().collect();
    let mut saved: Vec<Explanation> = Vec::new();
    for job in jobs {
        let n = job.input.shape[0];
        let init = match (&given_init, cli.init) {
            (Some(t), _) => Init::Given(t.clone()),
            (None, InitKind::Gradcam) => Init::GradCam,
            (None, InitKind::Comparative) => Init::Comparative { k: cli.compare_k },
        };
        let opts = RspOptions {
            init,
            targets: target.map(|t| vec![t; n]),
            record_layers: false,
        };
        let result = match cli.method {
            Method::Rsp => explain(&ctx, &gpu_model, &job.input, &opts),
            m => explain_method(&ctx, &gpu_model, &job.input, m, opts.targets.as_deref()),
        };
        let e = match result {
            Ok(e) => e,
            Err(err) => {
                eprintln!("error: {}: {err:#}", job.source.display());
                ok = false;
                continue;
            }
        };
        let classes = e.logits.shape[1];
        let probs = (classes > 0).then(|| softmax(&e.logits));
        let heat = e.heatmap();
        for i in 0..n {
            println!("{}:", job.stems[i]);
            if let Some(probs) = &probs {
                let row = &probs.data[i * classes..(i + 1) * classes];
                for c in top_k(row, 5.min(classes)) {
                    let label = if names.len() == classes { names[c] } else { "" };
                    println!("  {:6.2}%  {c:4}  {label}", row[c] * 100.0);
                }
            }
            match e.target[i] {
                NO_TARGET => {
                    println!("  explained from the given initial relevance (no classifier)")
                }
                t => println!("  explained class: {t}"),
            }
            let map = heat.index0(i);
            let png = cli.out.join(format!("{}.{}.png", job.stems[i], cli.method));
            save_png(&png, &heatmap_image(&map))?;
            println!("  heatmap: {}", png.display());
            if let Some(photo) = &job.photos[i] {
                let ov = cli
                    .out
                    .join(format!("{}.{}-overlay.png", job.stems[i], cli.method));
                save_png(&ov, &overlay(photo, &map))?;
                println!("  overlay: {}", ov.display());
            }
        }
        saved.push(e);
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

/// `--target`: a class index, or for 1000-class models an ImageNet class name (any of
/// its comma-separated synonyms, case-insensitive) or an unambiguous prefix of one.
pub fn resolve_target(arg: &str, classes: usize) -> Result<usize> {
    if let Ok(i) = arg.trim().parse::<usize>() {
        if classes > 0 && i >= classes {
            bail!("--target {i} is out of range: the model has {classes} classes");
        }
        return Ok(i);
    }
    let names: Vec<&str> = IMAGENET_CLASSES.lines().collect();
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

fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".rsp-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| anyhow!("output directory {} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Reads every input; images of one size share a batch. Bad inputs are reported and
/// skipped (the returned flag is false then).
fn collect_jobs(cli: &Cli) -> (Vec<Job>, bool) {
    let mut ok = true;
    let mut jobs = Vec::new();
    let mut images: Vec<(String, Tensor, image::RgbImage)> = Vec::new();
    for path in &cli.inputs {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "input".into());
        let is_tensor = path.extension().is_some_and(|e| e == "safetensors");
        let result: Result<()> = (|| {
            if is_tensor {
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
                let stems = if n == 1 {
                    vec![stem.clone()]
                } else {
                    (0..n).map(|i| format!("{stem}.{i}")).collect()
                };
                jobs.push(Job {
                    source: path.clone(),
                    stems,
                    input: t,
                    photos: vec![None; n],
                });
            } else {
                let img = load_image(path)?;
                let resize = (cli.size as u64 * 256 / 224) as u32;
                let p = preprocess(&img, resize, cli.size);
                images.push((stem.clone(), p.tensor, p.cropped));
            }
            Ok(())
        })();
        if let Err(e) = result {
            eprintln!("error: {e:#}");
            ok = false;
        }
    }
    if !images.is_empty() {
        let tensors: Vec<Tensor> = images.iter().map(|(_, t, _)| t.clone()).collect();
        jobs.push(Job {
            source: PathBuf::from("images"),
            stems: images.iter().map(|(s, _, _)| s.clone()).collect(),
            input: Tensor::stack(&tensors),
            photos: images.into_iter().map(|(_, _, p)| Some(p)).collect(),
        });
    }
    (jobs, ok)
}

fn save_relevance(path: &Path, parts: &[Explanation]) -> Result<()> {
    let cat = |f: &dyn Fn(&Explanation) -> Tensor| {
        let ts: Vec<Tensor> = parts.iter().map(f).collect();
        let mut shape = ts[0].shape.clone();
        shape[0] = ts.iter().map(|t| t.shape[0]).sum();
        Tensor::new(shape, ts.into_iter().flat_map(|t| t.data).collect())
    };
    let relevance = cat(&|e| e.relevance.clone());
    let heatmap = cat(&|e| e.heatmap());
    let init = cat(&|e| e.init.clone());
    let logits = cat(&|e| e.logits.clone());
    let target: Vec<i64> = parts
        .iter()
        .flat_map(|e| e.target.iter().map(|&t| t as i64))
        .collect();
    let bytes = to_safetensors_bytes(
        &[
            ("relevance", &relevance),
            ("heatmap", &heatmap),
            ("init", &init),
            ("logits", &logits),
        ],
        &[("target", &[target.len()], &target)],
    )?;
    write_atomic(path, &bytes)
}
