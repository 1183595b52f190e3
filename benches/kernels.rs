//! Criterion benchmarks on the default adapter: the convolution kernels (forward, data
//! gradient, weight gradient, the fused RSP conv rule), max-pool routing, and forward
//! passes of a small VGG and ResNet. Compute-bound kernels report elements/s where one
//! element is one floating-point operation, so "Gelem/s" reads as GFLOP/s; the
//! memory-bound max-pool routing (and the conv forward once more) report bytes/s over
//! the compulsory traffic (every input read once, the output written once): GB/s.
//!
//! `RSP_BENCH_SCALE=large` uses VGG16-layer-sized convolutions (for real GPUs).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use rsp::gpu::{ContextOptions, GpuContext, Recorder};
use rsp::layers::{Conv2d, MaxPool2d};
use rsp::models::gpu::GpuModel;
use rsp::models::zoo;
use rsp::ops::rsp::sectional_conv;
use rsp::ops::{conv2d, conv2d_dgrad, conv2d_wgrad, max_pool2d_route, GpuConv, Weights};
use rsp::Tensor;

fn random(shape: &[usize], seed: u64) -> Tensor {
    zoo::random_tensor(shape, seed, -1.0, 1.0)
}

fn large() -> bool {
    std::env::var("RSP_BENCH_SCALE").is_ok_and(|v| v == "large")
}

fn bench_conv(c: &mut Criterion) {
    let ctx = GpuContext::new(&ContextOptions::default()).expect("a wgpu adapter");
    // (channels, side): a mid-network VGG layer.
    let (ch, side) = if large() { (128, 112) } else { (32, 28) };
    let conv = Conv2d {
        weight: random(&[ch, ch, 3, 3], 1),
        bias: Some(vec![0.0; ch]),
        stride: 1,
        padding: 1,
    };
    let g = conv.geometry();
    let gc = GpuConv::upload(&ctx, &conv);
    let x = ctx.upload(&random(&[1, ch, side, side], 2));
    let r = ctx.upload(&random(&[1, ch, side, side], 3));
    let macs = (ch * ch * 9 * side * side) as u64;
    let mut group = c.benchmark_group(format!("conv3x3_{ch}ch_{side}px on {}", ctx.adapter.name));
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * macs));
    let run = |group: &mut criterion::BenchmarkGroup<_>, name: &str, f: &dyn Fn(&mut Recorder)| {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut rec = Recorder::new(&ctx);
                f(&mut rec);
                rec.submit();
                drop(rec);
                ctx.synchronize().unwrap();
            })
        });
    };
    run(&mut group, "forward", &|rec| {
        conv2d(rec, &x, &gc, true);
    });
    run(&mut group, "dgrad", &|rec| {
        conv2d_dgrad(rec, &r, &gc.weight, &g, (side, side), Weights::Signed);
    });
    run(&mut group, "wgrad", &|rec| {
        conv2d_wgrad(rec, &x, &r, &g);
    });
    // The RSP rule is 2 wgrad + 2 conv + 2 convT (6 GEMMs of this size) plus the shift.
    group.throughput(Throughput::Elements(12 * macs));
    run(&mut group, "rsp_conv_rule (6 GEMMs)", &|rec| {
        sectional_conv(rec, &x, &r, &g);
    });
    group.finish();
}

fn bench_forward(c: &mut Criterion) {
    let ctx = GpuContext::new(&ContextOptions::default()).expect("a wgpu adapter");
    let side = if large() { 224 } else { 32 };
    let models = [
        (
            "vgg (cfg 16,16,M,32,32,M,64,64,M)",
            zoo::vgg(&[16, 16, 0, 32, 32, 0, 64, 64, 0], false, 128, 10, 2, 1),
        ),
        (
            "resnet (Bottleneck [1,1,1,1], width 16)",
            zoo::resnet([1, 1, 1, 1], true, 16, 10, 1),
        ),
    ];
    let mut group = c.benchmark_group(format!("forward {side}px on {}", ctx.adapter.name));
    group.sample_size(10);
    for (name, model) in models {
        let gm = GpuModel::upload(&ctx, &model);
        let x = ctx.upload(&random(&[1, 3, side, side], 4));
        group.throughput(Throughput::Elements(2 * model.forward_macs(side, side)));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut rec = Recorder::new(&ctx);
                let f = gm.forward(&mut rec, &x);
                rec.submit();
                drop(rec);
                ctx.read(&f.logits).unwrap()
            })
        });
    }
    group.finish();
}

fn bench_memory(c: &mut Criterion) {
    let ctx = GpuContext::new(&ContextOptions::default()).expect("a wgpu adapter");
    let (ch, side) = if large() { (128, 112) } else { (32, 28) };
    let pool = MaxPool2d {
        kernel: 2,
        stride: 2,
        padding: 0,
        ceil_mode: false,
    };
    let x = ctx.upload(&random(&[1, ch, side, side], 5));
    let r = ctx.upload(&random(&[1, ch, side / 2, side / 2], 6));
    let conv = Conv2d {
        weight: random(&[ch, ch, 3, 3], 7),
        bias: Some(vec![0.0; ch]),
        stride: 1,
        padding: 1,
    };
    let gc = GpuConv::upload(&ctx, &conv);
    let mut group = c.benchmark_group(format!("memory {ch}ch_{side}px on {}", ctx.adapter.name));
    group.sample_size(10);
    let f = 4u64;
    let (act, pooled) = ((ch * side * side) as u64, (ch * side * side / 4) as u64);
    // Routing reads x and R once and writes the input-sized relevance.
    group.throughput(Throughput::Bytes(f * (2 * act + pooled)));
    group.bench_function("max_pool2d_route 2x2", |b| {
        b.iter(|| {
            let mut rec = Recorder::new(&ctx);
            max_pool2d_route(&mut rec, &x, &r, &pool, 1, 0.0);
            rec.submit();
            drop(rec);
            ctx.synchronize().unwrap();
        })
    });
    // Forward convolution: x, W and b in, y out.
    group.throughput(Throughput::Bytes(f * (2 * act + (ch * ch * 9 + ch) as u64)));
    group.bench_function("conv3x3 forward", |b| {
        b.iter(|| {
            let mut rec = Recorder::new(&ctx);
            conv2d(&mut rec, &x, &gc, true);
            rec.submit();
            drop(rec);
            ctx.synchronize().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench_conv, bench_memory, bench_forward);
criterion_main!(benches);
