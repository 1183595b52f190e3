//! `rsp bench`: end-to-end timing of the forward pass and of a full RSP explanation;
//! `rsp tune`: the autotuner run over one explanation's problems.

use std::time::Instant;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::Args;

use super::args::DeviceArgs;
use crate::explain::{explain, Request};
use crate::gpu::{ContextOptions, GpuContext, Recorder};
use crate::models::gpu::GpuModel;
use crate::models::{zoo, Model};
use crate::ops::gemm::GemmKernel;

/// The model, input size and batch that `rsp bench` and `rsp tune` run.
#[derive(Args, Debug)]
pub struct WorkloadArgs {
    /// torchvision architecture with random weights (vgg11..vgg19, optionally _bn;
    /// resnet18..resnet152).
    #[arg(long, default_value = "vgg16", value_name = "NAME")]
    pub model: String,
    /// Use this model file instead of random weights: an ONNX graph (DenseNet,
    /// GoogLeNet, ... exported with torch.onnx; `--size` must be its exported size) or
    /// torchvision VGG/ResNet safetensors.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Input side length.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Timed repetitions (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// After timing, run once more with GPU timestamps and print the time per kernel
    /// (each GEMM problem on its own line, with its achieved TFLOP/s).
    #[arg(long)]
    pub profile: bool,
    /// The adapter's fp32 peak in TFLOP/s, for the profile's share-of-peak column
    /// (e.g. 67 for an H200); without it the column is left out.
    #[arg(long, value_name = "TFLOPS")]
    pub peak_tflops: Option<f64>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Run one convolution kernel variant for every layer instead of the autotuned
    /// choice: tiled-RxC (R, C each 16, 32 or 64; with -unchecked: without naga's
    /// runtime checks), large-RxC-kK (128x128, 128x64 or 64x128 tiles, K tile 16 or
    /// 32; GPUs), direct-RxL (R = 4 or 8 rows, L = 8, 16, 32 or 64 lanes),
    /// subgroup-32x32[-packb], winograd-2x2 (3×3 stride-1 forward convolutions) or
    /// coop-128x64-split, coop-128x128-f16 or coop-128x64-f16 (matrix units). Where a variant does not apply to a layer,
    /// that layer runs the heuristic tile.
    #[arg(long, default_value = "auto", value_name = "auto|VARIANT")]
    pub kernel: String,
}

#[derive(Args, Debug)]
pub struct TuneArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The model of `--weights`, else `--model` with random weights; and a random batch.
fn workload(w: &WorkloadArgs) -> Result<(Model, crate::tensor::Tensor)> {
    if w.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let model = match &w.weights {
        Some(p) => Model::from_file(p)?,
        None => zoo::by_name(&w.model, 1).ok_or_else(|| {
            anyhow!(
                "unknown --model '{}' (vgg11..19[_bn], resnet18/34/50/101/152)",
                w.model
            )
        })?,
    };
    model.check_input_size(w.size, w.size)?;
    let input = zoo::random_tensor(&[w.batch, 3, w.size, w.size], 12345, -2.0, 2.0);
    Ok((model, input))
}

/// Prints the kernel variant of every GEMM problem this process tuned or looked up.
fn print_choices(ctx: &GpuContext) {
    let used = ctx.tuner.used();
    if used.is_empty() {
        return;
    }
    println!(
        "kernel variants ({} problems; key: op, constants, sizes anchored to powers of two):",
        used.len()
    );
    for (key, choice) in used {
        // The adapter part of the key is the same for every line.
        let problem = key.split_once(" | ").map_or(key.as_str(), |(_, p)| p);
        let timed: Vec<String> = choice
            .trials
            .iter()
            .map(|(name, t)| match t {
                crate::gpu::tune::Trial::Timed(ms) => format!("{name} {ms:.3} ms"),
                crate::gpu::tune::Trial::Rejected(why) => format!("{name} rejected ({why})"),
            })
            .collect();
        println!(
            "  {:<26} {problem}\n      {}",
            choice.variant,
            timed.join(", ")
        );
    }
}

/// `rsp tune`: one explanation of random inputs with autotuning on, so every GEMM
/// problem of this model, size and batch is timed and its choice cached.
pub fn tune(args: &TuneArgs) -> Result<()> {
    let (model, input) = workload(&args.workload)?;
    let opts = ContextOptions {
        // `rsp tune` is where every problem is measured.
        autotune_budget: None,
        ..args.device.context_options()
    };
    if opts.autotune == crate::gpu::Autotune::Off {
        bail!("rsp tune needs --autotune on or fresh");
    }
    let ctx = GpuContext::new(&opts)?;
    let gm = GpuModel::upload(&ctx, &model);
    let t = Instant::now();
    explain(&ctx, &gm, &input, &Request::default())?;
    println!(
        "adapter: {}\ntuned {} new problems in {:.2} s ({} looked up in total); cache: {}",
        ctx.adapter_key(),
        ctx.tuner.measured().len(),
        t.elapsed().as_secs_f64(),
        ctx.tuner.used().len(),
        ctx.tuner
            .path()
            .map_or("(none)".to_string(), |p| p.display().to_string())
    );
    print_choices(&ctx);
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs the benchmark and prints one line per measurement.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (model, input) = workload(&args.workload)?;
    let w = &args.workload;
    let gemm_kernel = match args.kernel.as_str() {
        "auto" => None,
        s => Some(
            GemmKernel::parse(s)
                .ok_or_else(|| {
                    anyhow!(
                        "--kernel '{s}': expected auto, tiled-RxC (R, C in 16, 32, 64; \
                         optionally -unchecked), large-RxC-kK (128x128|128x64|64x128, K 16|32), \
                         direct-RxL (R 4 or 8, L 8..64), subgroup-32x32[-packb], \
                         winograd-2x2, coop-128x64-split, coop-128x128-f16 or coop-128x64-f16"
                    )
                })?
                .to_string(),
        ),
    };
    let ctx = GpuContext::new(&ContextOptions {
        profile: args.profile,
        gemm_kernel,
        // The times reported are those of the tuned kernels.
        autotune_budget: None,
        ..args.device.context_options()
    })?;
    let gm = GpuModel::upload(&ctx, &model);
    // Nothing else is allocated yet: the pool's peak is the weights' storage.
    let weight_bytes = ctx.peak_memory();
    println!(
        "adapter: {} ({:?}, {:?})\nmodel: {} ({}), input {}x{}, batch {}, precision {}, weights {} (weights on the GPU: {:.3} MiB), GEMM kernels {}{}",
        ctx.adapter.name,
        ctx.adapter.backend,
        ctx.adapter.device_type,
        w.weights
            .as_ref()
            .map_or(w.model.clone(), |p| p.display().to_string()),
        model.describe(),
        w.size,
        w.size,
        w.batch,
        ctx.precision.name(),
        ctx.weight_dtype.wgsl(),
        weight_bytes as f64 / (1 << 20) as f64,
        if args.kernel == "auto" {
            format!("autotune {:?}", ctx.tuner.mode()).to_lowercase()
        } else {
            args.kernel.clone()
        },
        if ctx.matrix_units {
            ", matrix units offered"
        } else {
            ""
        }
    );

    let forward = || -> Result<()> {
        let mut rec = Recorder::new(&ctx);
        let x = ctx.upload(&input);
        let f = gm.forward(&mut rec, &x);
        rec.submit();
        drop(rec);
        ctx.read(&f.logits)?;
        Ok(())
    };
    let opts = Request::default();
    let explain_once = || -> Result<()> {
        explain(&ctx, &gm, &input, &opts)?;
        Ok(())
    };
    for (label, f) in [
        ("forward", &forward as &dyn Fn() -> Result<()>),
        ("rsp (forward + init + backward)", &explain_once),
    ] {
        f()?; // warm-up: pipeline compilation, buffer pool
        ctx.reset_peak_memory();
        let mut times = Vec::new();
        for _ in 0..args.runs {
            let t = Instant::now();
            f()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let m = median(times.clone());
        println!(
            "{label}: median {m:.2} ms per batch, {:.2} ms per image (min {:.2}, max {:.2} ms, {} runs); peak engine memory {:.1} MiB",
            m / w.batch as f64,
            times.iter().cloned().fold(f64::INFINITY, f64::min),
            times.iter().cloned().fold(0.0, f64::max),
            args.runs,
            ctx.peak_memory() as f64 / (1 << 20) as f64
        );
    }
    print_choices(&ctx);
    if let Some(p) = &ctx.profiler {
        // Timestamps are collected on every submission; only the last explanation's count.
        p.reset();
        explain_once()?;
        let rows = p.report();
        let total: f64 = rows.iter().map(|(_, t)| t.nanos).sum();
        println!(
            "GPU time of one explanation (timestamps per dispatch): {:.2} ms",
            total / 1e6
        );
        println!(
            "  {:>9}  {:>5}  {:>6}  {:>7}  {:>6}  kernel",
            "ms", "calls", "share", "TFLOP/s", "peak"
        );
        for (label, t) in rows {
            let tflops = t.tflops();
            let peak = match (tflops, args.peak_tflops) {
                (Some(f), Some(p)) if p > 0.0 => format!("{:5.1}%", 100.0 * f / p),
                _ => String::new(),
            };
            println!(
                "  {:9.3}  {:5}  {:5.1}%  {:>7}  {peak:>6}  {label}",
                t.nanos / 1e6,
                t.calls,
                100.0 * t.nanos / total.max(1.0),
                tflops.map_or(String::new(), |f| if f >= 0.01 {
                    format!("{f:.3}")
                } else {
                    format!("{f:.2e}")
                }),
            );
        }
    }
    Ok(())
}
