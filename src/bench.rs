//! `rsp bench`: end-to-end timing of the forward pass and of a full RSP explanation.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};

use crate::cli::BenchArgs;
use crate::explain::{explain, RspOptions};
use crate::gpu::{ContextOptions, GpuContext, Recorder};
use crate::models::gpu::GpuModel;
use crate::models::{zoo, Model};
use crate::ops::conv::GemmTile;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs the benchmark and prints one line per measurement.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.batch == 0 || args.runs == 0 {
        bail!("--batch and --runs must be at least 1");
    }
    let model = match &args.weights {
        Some(p) => Model::from_file(p)?,
        None => zoo::by_name(&args.model, 1).ok_or_else(|| {
            anyhow!(
                "unknown --model '{}' (vgg11..19[_bn], resnet18/34/50/101/152)",
                args.model
            )
        })?,
    };
    let gemm_tile = match args.gemm_tile.as_str() {
        "auto" => None,
        s => Some(GemmTile::parse(s).ok_or_else(|| {
            anyhow!("--gemm-tile '{s}': expected auto or ROWSxCOLS with each of 16, 32, 64")
        })?),
    };
    let ctx = GpuContext::new(&ContextOptions {
        profile: args.profile,
        gemm_tile,
        ..args.device.context_options()
    })?;
    let gm = GpuModel::upload(&ctx, &model);
    // Nothing else is allocated yet: the pool's peak is the weights' storage.
    let weight_bytes = ctx.peak_memory();
    let input = zoo::random_tensor(&[args.batch, 3, args.size, args.size], 12345, -2.0, 2.0);
    println!(
        "adapter: {} ({:?}, {:?})\nmodel: {} ({}), input {}x{}, batch {}, weights {} (weights on the GPU: {:.3} MiB), GEMM tiles {}",
        ctx.adapter.name,
        ctx.adapter.backend,
        ctx.adapter.device_type,
        args.weights
            .as_ref()
            .map_or(args.model.clone(), |p| p.display().to_string()),
        model.describe(),
        args.size,
        args.size,
        args.batch,
        args.device.weights_dtype.wgsl(),
        weight_bytes as f64 / (1 << 20) as f64,
        args.gemm_tile
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
    let opts = RspOptions::default();
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
            m / args.batch as f64,
            times.iter().cloned().fold(f64::INFINITY, f64::min),
            times.iter().cloned().fold(0.0, f64::max),
            args.runs,
            ctx.peak_memory() as f64 / (1 << 20) as f64
        );
    }
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
        println!("  {:>9}  {:>5}  {:>6}  kernel", "ms", "calls", "share");
        for (label, t) in rows {
            println!(
                "  {:9.3}  {:5}  {:5.1}%  {label}",
                t.nanos / 1e6,
                t.calls,
                100.0 * t.nanos / total.max(1.0)
            );
        }
    }
    Ok(())
}
