//! Records dispatches into one command encoder and submits them together, so a whole
//! forward pass or explanation is one (or a few) submissions with no host round-trip
//! between layers.

use super::context::GpuContext;
use super::dtype::DType;
use super::pipelines::{Access, ShaderRef};
use super::profiler::PassClock;
use super::tensor::GpuTensor;

/// One storage binding of a dispatch.
#[derive(Clone, Copy)]
pub struct Binding<'a> {
    pub buffer: &'a wgpu::Buffer,
    /// Bytes bound, from offset 0 (at most the buffer's size).
    pub size: u64,
    pub access: Access,
    /// Element type of the bound tensor (shaders with a typed binding specialise on it).
    pub dtype: DType,
}

impl<'a> Binding<'a> {
    pub fn read(t: &'a GpuTensor) -> Self {
        Binding {
            buffer: t.buffer(),
            size: t.bytes().max(16).div_ceil(16) * 16,
            access: Access::Read,
            dtype: t.dtype,
        }
    }
    pub fn write(t: &'a GpuTensor) -> Self {
        Binding {
            access: Access::ReadWrite,
            ..Binding::read(t)
        }
    }
    /// A whole raw buffer (index buffers, statistics).
    pub fn raw(buffer: &'a wgpu::Buffer, access: Access) -> Self {
        Binding {
            buffer,
            size: buffer.size(),
            access,
            dtype: DType::F32,
        }
    }
}

/// Workgroup grid for `n` threads in groups of 256: x up to 65535, the rest in y.
/// Kernels rebuild the flat index as `gid.x + gid.y · num_workgroups.x · 256`.
pub fn grid_1d(n: usize) -> [u32; 3] {
    let groups = n.div_ceil(256).max(1);
    if groups <= 65535 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(65535);
        [groups.div_ceil(y) as u32, y as u32, 1]
    }
}

/// Records compute dispatches; `submit` sends them to the queue in one go.
pub struct Recorder<'c> {
    pub ctx: &'c GpuContext,
    /// The context's recording lock (`None` for a detached recorder).
    _exclusive: Option<std::sync::MutexGuard<'c, ()>>,
    /// Never timed by the profiler (autotuning runs).
    untimed: bool,
    /// Timestamps around the recording's one pass (the autotuner's GPU clock).
    clock: Option<&'c PassClock>,
    encoder: Option<wgpu::CommandEncoder>,
    /// Dispatches recorded since creation (for tests and benchmarks).
    pub dispatches: usize,
    /// Labels of the dispatches timed in the pending submission, with their useful
    /// flops (profiling only).
    timed: Vec<(String, f64)>,
    /// Whether the last dispatch was timed (so [`Recorder::note_gemm`] applies to it).
    last_timed: bool,
    /// Uniform parameter blocks of this recording, one aligned slot per dispatch, so a
    /// dispatch costs no buffer allocation of its own.
    arena: Option<(wgpu::Buffer, u64)>,
    /// The compute pass all dispatches of this recording go into (wgpu orders the
    /// dispatches of a pass with the barriers their bindings need). When profiling,
    /// every dispatch gets a pass of its own for its timestamps instead.
    pass: Option<wgpu::ComputePass<'static>>,
}

/// Bytes of one uniform arena buffer (a new one starts when it is full).
const ARENA_BYTES: u64 = 256 * 1024;

impl<'c> Recorder<'c> {
    pub fn new(ctx: &'c GpuContext) -> Self {
        Recorder {
            untimed: false,
            clock: None,
            ctx,
            _exclusive: Some(ctx.recording.lock().unwrap_or_else(|e| e.into_inner())),
            encoder: None,
            dispatches: 0,
            timed: Vec::new(),
            last_timed: false,
            arena: None,
            pass: None,
        }
    }

    /// A recorder that does not take the context's recording lock and is never
    /// profiled: the autotuner uses it to time kernels on buffers of its own while
    /// another recording is open (it submits before that recording does).
    pub(crate) fn detached(ctx: &'c GpuContext) -> Self {
        Recorder {
            untimed: true,
            clock: None,
            ctx,
            _exclusive: None,
            encoder: None,
            dispatches: 0,
            timed: Vec::new(),
            last_timed: false,
            arena: None,
            pass: None,
        }
    }

    /// A detached recorder whose one compute pass writes `clock`'s timestamps at its
    /// beginning and end (resolved at submission).
    pub(crate) fn detached_clocked(ctx: &'c GpuContext, clock: &'c PassClock) -> Self {
        let mut rec = Recorder::detached(ctx);
        rec.clock = Some(clock);
        rec
    }

    /// A placeholder for bindings a kernel's mode does not read.
    pub fn unused(&self) -> Binding<'c> {
        Binding::raw(&self.ctx.placeholder, Access::Read)
    }

    /// Records one dispatch of `shader` specialised by `constants`, with the storage
    /// `bindings` at 0..n and `params` as the uniform block at binding n.
    pub fn dispatch(
        &mut self,
        shader: impl Into<ShaderRef>,
        constants: &[(&'static str, f64)],
        bindings: &[Binding],
        params: &[u32],
        groups: [u32; 3],
    ) {
        self.dispatch_with_extra(shader, constants, bindings, params, &[], groups);
    }

    /// [`Recorder::dispatch`] with `extra` storage bindings after the uniform block
    /// (n + 1 ..): the scratch operands a GEMM skeleton adds to its op file's bindings.
    pub fn dispatch_with_extra(
        &mut self,
        shader: impl Into<ShaderRef>,
        constants: &[(&'static str, f64)],
        bindings: &[Binding],
        params: &[u32],
        extra: &[Binding],
        groups: [u32; 3],
    ) {
        let ctx = self.ctx;
        let shader: ShaderRef = shader.into();
        let access: Vec<Access> = bindings.iter().map(|b| b.access).collect();
        let types: Vec<DType> = bindings.iter().map(|b| b.dtype).collect();
        let extra_access: Vec<Access> = extra.iter().map(|b| b.access).collect();
        let pipeline = ctx.pipelines.lock().expect("pipeline cache lock").get(
            &ctx.device,
            shader,
            constants,
            &access,
            &types,
            &extra_access,
        );
        let (uniform, offset, size) = self.param_slot(bytemuck::cast_slice(params));
        let after_uniform = bindings.len() + 1;
        let mut entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .enumerate()
            .chain(
                extra
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (after_uniform + i, b)),
            )
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: 0,
                    size: std::num::NonZeroU64::new(b.size.min(b.buffer.size())),
                }),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: bindings.len() as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &uniform,
                offset,
                size: std::num::NonZeroU64::new(size),
            }),
        });
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(shader.name),
            layout: &pipeline.layout,
            entries: &entries,
        });
        self.last_timed = false;
        if ctx.profiler.is_none() || self.untimed {
            if self.pass.is_none() {
                let encoder = self.encoder.get_or_insert_with(|| {
                    ctx.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("rsp"),
                        })
                });
                let pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("rsp"),
                    timestamp_writes: self.clock.map(PassClock::writes),
                });
                self.pass = Some(pass.forget_lifetime());
            }
            let pass = self.pass.as_mut().expect("pass just ensured");
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        } else {
            self.dispatch_timed(shader, constants, &pipeline.pipeline, &bind_group, groups);
        }
        self.dispatches += 1;
    }

    /// Profiling path: one pass per dispatch, with begin/end timestamps.
    fn dispatch_timed(
        &mut self,
        shader: ShaderRef,
        constants: &[(&'static str, f64)],
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        groups: [u32; 3],
    ) {
        let ctx = self.ctx;
        let encoder = self.encoder.get_or_insert_with(|| {
            ctx.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("rsp") })
        });
        let timestamp_writes = match &ctx.profiler {
            Some(p) if (self.timed.len() as u32) < super::profiler::MAX_TIMED_DISPATCHES => {
                let i = 2 * self.timed.len() as u32;
                let modes: Vec<String> =
                    constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.timed.push((
                    format!("{} {}", shader.label(), modes.join(" "))
                        .trim()
                        .to_string(),
                    0.0,
                ));
                self.last_timed = true;
                Some(wgpu::ComputePassTimestampWrites {
                    query_set: &p.query_set,
                    beginning_of_pass_write_index: Some(i),
                    end_of_pass_write_index: Some(i + 1),
                })
            }
            _ => None,
        };
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(shader.name),
            timestamp_writes,
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }

    /// Marks the last dispatch, when profiled, as a GEMM of `m × n × k` for `z` problems:
    /// its sizes join the profile label (each problem is listed on its own) and its
    /// useful flops (2·m·n·k·z) count towards the kernel's TFLOP/s.
    pub fn note_gemm(&mut self, m: usize, n: usize, k: usize, z: usize) {
        if !self.last_timed {
            return;
        }
        if let Some((label, flops)) = self.timed.last_mut() {
            label.push_str(&format!(" | m={m} n={n} k={k} z={z}"));
            *flops = 2.0 * m as f64 * n as f64 * k as f64 * z as f64;
        }
    }

    /// Writes a uniform block into the recording's arena: (buffer, offset, size). The
    /// queue applies the write before the commands of the next submission, and the slot
    /// is never rewritten, so every dispatch sees its own parameters.
    fn param_slot(&mut self, bytes: &[u8]) -> (wgpu::Buffer, u64, u64) {
        let ctx = self.ctx;
        let size = (bytes.len() as u64).max(16).div_ceil(16) * 16;
        let align = ctx.limits.min_uniform_buffer_offset_alignment as u64;
        let fits =
            |(_, used): &(wgpu::Buffer, u64)| used.div_ceil(align) * align + size <= ARENA_BYTES;
        if !self.arena.as_ref().is_some_and(fits) {
            let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("rsp parameters"),
                size: ARENA_BYTES,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.arena = Some((buffer, 0));
        }
        let (buffer, used) = self.arena.as_mut().expect("arena just ensured");
        let offset = used.div_ceil(align) * align;
        let mut padded = bytes.to_vec();
        padded.resize(size as usize, 0);
        ctx.queue.write_buffer(buffer, offset, &padded);
        *used = offset + size;
        (buffer.clone(), offset, size)
    }

    /// Submits everything recorded so far.
    pub fn submit(&mut self) {
        // Ending the pass unlocks the encoder.
        self.pass = None;
        if !self.untimed {
            self.ctx.tuner.finish_progress();
        }
        if let Some(mut enc) = self.encoder.take() {
            if let Some(clock) = self.clock {
                clock.resolve(&mut enc);
            }
            match &self.ctx.profiler {
                Some(p) if !self.timed.is_empty() => {
                    let labels = std::mem::take(&mut self.timed);
                    if let Err(e) = p.collect(&self.ctx.device, &self.ctx.queue, enc, &labels) {
                        eprintln!("warning: profiling failed: {e:#}");
                    }
                }
                _ => {
                    self.ctx.queue.submit([enc.finish()]);
                }
            }
        }
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        self.submit();
    }
}
