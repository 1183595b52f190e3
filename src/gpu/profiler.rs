//! Optional per-kernel GPU timing (`rsp bench --profile`): each dispatch's compute pass
//! writes begin/end timestamps, resolved when its recording is submitted. Profiling
//! waits for every submission, so use it for breakdowns, not for end-to-end times.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{anyhow, Result};

/// Dispatches timed per submission (two queries each).
pub(crate) const MAX_TIMED_DISPATCHES: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// Accumulated GPU time of one kernel variant, and the useful floating-point operations
/// of its GEMM dispatches (2·M·N·K per problem, the convolution's own count; 0 for
/// kernels that are not GEMMs).
#[derive(Clone, Debug, Default)]
pub struct KernelTime {
    pub calls: u64,
    pub nanos: f64,
    pub flops: f64,
}

impl KernelTime {
    /// Achieved TFLOP/s, for GEMM kernels.
    pub fn tflops(&self) -> Option<f64> {
        (self.flops > 0.0 && self.nanos > 0.0).then(|| self.flops / self.nanos / 1e3)
    }
}

pub struct Profiler {
    pub(crate) query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    period_ns: f64,
    totals: Mutex<BTreeMap<String, KernelTime>>,
}

impl Profiler {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let bytes = wgpu::QUERY_SET_MAX_QUERIES as u64 * 8;
        Profiler {
            query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("rsp profiler"),
                ty: wgpu::QueryType::Timestamp,
                count: wgpu::QUERY_SET_MAX_QUERIES,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("rsp profiler resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            staging: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("rsp profiler readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period_ns: queue.get_timestamp_period() as f64,
            totals: Mutex::new(BTreeMap::new()),
        }
    }

    /// Resolves the timestamps of `labels` (dispatch i wrote queries 2i, 2i+1; each with
    /// its useful flops) after `encoder`'s work, submits it, waits, and adds the
    /// durations to the totals.
    pub(crate) fn collect(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        mut encoder: wgpu::CommandEncoder,
        labels: &[(String, f64)],
    ) -> Result<()> {
        let n = 2 * labels.len() as u32;
        encoder.resolve_query_set(&self.query_set, 0..n, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, n as u64 * 8);
        queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        self.staging
            .map_async(wgpu::MapMode::Read, 0..n as u64 * 8, move |r| {
                let _ = tx.send(r);
            });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("GPU poll failed: {e}"))?;
        rx.recv()
            .map_err(|_| anyhow!("profiler readback dropped"))?
            .map_err(|e| anyhow!("profiler readback failed: {e}"))?;
        {
            let view = self
                .staging
                .get_mapped_range(0..n as u64 * 8)
                .map_err(|e| anyhow!("profiler mapping failed: {e:?}"))?;
            let stamps: &[u64] = bytemuck::cast_slice(&view);
            let mut totals = self.totals.lock().expect("profiler lock");
            for (i, (label, flops)) in labels.iter().enumerate() {
                let t = totals.entry(label.clone()).or_default();
                t.calls += 1;
                t.flops += flops;
                t.nanos += stamps[2 * i + 1].saturating_sub(stamps[2 * i]) as f64 * self.period_ns;
            }
        }
        self.staging.unmap();
        Ok(())
    }

    /// Totals per kernel variant since the last reset, largest first.
    pub fn report(&self) -> Vec<(String, KernelTime)> {
        let mut v: Vec<_> = self
            .totals
            .lock()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| b.1.nanos.total_cmp(&a.1.nanos));
        v
    }

    pub fn reset(&self) {
        if let Ok(mut t) = self.totals.lock() {
            t.clear();
        }
    }
}

/// The GPU's own clock around one compute pass: the autotuner's timing of a candidate
/// where the device has timestamp queries (begin and end of the pass that holds all
/// of a trial's dispatches), so what is measured is the kernels' time on the device,
/// not the submission, driver and wake-up around it. The resolved timestamps are read
/// back like any buffer (`GpuContext::read_raw` on [`PassClock::resolved`]).
pub(crate) struct PassClock {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    period_ns: f64,
}

impl PassClock {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        PassClock {
            query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("rsp autotune clock"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("rsp autotune clock resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            period_ns: queue.get_timestamp_period() as f64,
        }
    }

    /// The timestamp writes of the timed pass.
    pub(crate) fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.query_set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// Records the resolve of both timestamps after the pass.
    pub(crate) fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.query_set, 0..2, &self.resolve, 0);
    }

    /// The buffer holding the last pass's two timestamps (four 32-bit words).
    pub(crate) fn resolved(&self) -> &wgpu::Buffer {
        &self.resolve
    }

    /// Milliseconds between the two timestamps in `words` (read from
    /// [`PassClock::resolved`]).
    pub(crate) fn elapsed_ms(&self, words: &[u32]) -> f64 {
        // Two little-endian u64s in four words (a Vec<u32> is not 8-byte aligned).
        let stamp = |i: usize| words[2 * i] as u64 | (words[2 * i + 1] as u64) << 32;
        stamp(1).saturating_sub(stamp(0)) as f64 * self.period_ns / 1e6
    }
}
