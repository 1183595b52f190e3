//! Tensors resident on the GPU: a pooled storage buffer plus a shape.

use std::sync::Arc;

use anyhow::Result;
use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::dtype::DType;
use super::pool::{padded_size, PooledBuffer, STORAGE_USAGE};
use crate::tensor::Tensor;

/// A tensor in GPU memory (row-major): f32, or f16 for weights and, under
/// `--precision f16`, activations and relevance. Cloning shares the buffer.
#[derive(Clone)]
pub struct GpuTensor {
    buf: Arc<PooledBuffer>,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl GpuTensor {
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buf.buffer
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * self.dtype.bytes()
    }
    /// 32-bit words its elements fill (two f16 elements share a word).
    pub fn words(&self) -> usize {
        self.bytes().div_ceil(4) as usize
    }
    /// The host tensor (as f32) from the first [`words`](GpuTensor::words) words read
    /// back from its buffer, decoded by its element type.
    pub fn host_from_words(&self, words: &[u32]) -> Tensor {
        let data = match self.dtype {
            DType::F32 => bytemuck::cast_slice(&words[..self.numel()]).to_vec(),
            DType::F16 => bytemuck::cast_slice::<u32, half::f16>(&words[..self.words()])
                [..self.numel()]
                .iter()
                .map(|h| h.to_f32())
                .collect(),
        };
        Tensor::new(self.shape.clone(), data)
    }
    /// Same buffer seen with another shape of equal element count.
    pub fn reshaped(&self, shape: &[usize]) -> GpuTensor {
        assert_eq!(shape.iter().product::<usize>(), self.numel());
        GpuTensor {
            buf: self.buf.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        }
    }
}

impl GpuContext {
    /// An uninitialised f32 tensor from the pool (every kernel writes all of its
    /// output): quotients, statistics, scores, maps and GEMM scratch.
    pub fn empty(&self, shape: &[usize]) -> GpuTensor {
        self.empty_as(shape, DType::F32)
    }

    /// An uninitialised tensor for activations and relevance sections, stored in the
    /// context's [`activation_dtype`](GpuContext::activation_dtype).
    pub fn empty_activation(&self, shape: &[usize]) -> GpuTensor {
        self.empty_as(shape, self.activation_dtype())
    }

    /// An uninitialised tensor of element type `dtype` from the pool.
    pub fn empty_as(&self, shape: &[usize], dtype: DType) -> GpuTensor {
        let n: usize = shape.iter().product();
        GpuTensor {
            buf: Arc::new(self.pool.take(&self.device, n as u64 * dtype.bytes())),
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// Copies a host tensor to the GPU.
    pub fn upload(&self, t: &Tensor) -> GpuTensor {
        self.upload_slice(&t.shape, &t.data)
    }

    pub fn upload_slice(&self, shape: &[usize], data: &[f32]) -> GpuTensor {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        let out = GpuTensor {
            buf: Arc::new(self.pool.take_fresh(&self.device, data.len() as u64 * 4)),
            shape: shape.to_vec(),
            dtype: DType::F32,
        };
        self.queue
            .write_buffer(out.buffer(), 0, bytemuck::cast_slice(data));
        out
    }

    /// Copies layer weights to the GPU in the context's weight storage type
    /// ([`ContextOptions::weights`](super::context::ContextOptions)): f32 as they are, or
    /// rounded to the nearest f16.
    pub fn upload_weights(&self, shape: &[usize], data: &[f32]) -> GpuTensor {
        match self.weight_dtype {
            DType::F32 => self.upload_slice(shape, data),
            DType::F16 => {
                assert_eq!(shape.iter().product::<usize>(), data.len());
                // Whole 32-bit words: write_buffer copies multiples of 4 bytes.
                let mut halves: Vec<half::f16> =
                    data.iter().map(|&v| half::f16::from_f32(v)).collect();
                halves.resize(data.len().div_ceil(2) * 2, half::f16::ZERO);
                let out = GpuTensor {
                    buf: Arc::new(self.pool.take_fresh(&self.device, halves.len() as u64 * 2)),
                    shape: shape.to_vec(),
                    dtype: DType::F16,
                };
                self.queue
                    .write_buffer(out.buffer(), 0, bytemuck::cast_slice(&halves));
                out
            }
        }
    }

    /// A small constant buffer (not pooled), e.g. uniform parameters or u32 indices.
    pub fn constant_buffer(&self, bytes: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let mut padded = bytes.to_vec();
        padded.resize(padded_size(bytes.len() as u64) as usize, 0);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("rsp constant"),
                contents: &padded,
                usage: usage | STORAGE_USAGE,
            })
    }

    /// Copies a tensor back to the host (waits for all submitted work).
    pub fn read(&self, t: &GpuTensor) -> Result<Tensor> {
        Ok(self.read_many(&[t])?.remove(0))
    }

    /// Copies several tensors back (as f32) with one staging buffer and one wait.
    pub fn read_many(&self, tensors: &[&GpuTensor]) -> Result<Vec<Tensor>> {
        let words = self.read_buffers(
            &tensors
                .iter()
                .map(|t| (t.buffer(), t.words()))
                .collect::<Vec<_>>(),
        )?;
        Ok(tensors
            .iter()
            .zip(words)
            .map(|(t, w)| t.host_from_words(&w))
            .collect())
    }

    /// Reads `count` 32-bit words from the start of a buffer.
    pub fn read_raw(&self, buffer: &wgpu::Buffer, count: usize) -> Result<Vec<u32>> {
        Ok(self.read_buffers(&[(buffer, count)])?.remove(0))
    }

    /// Reads the first `count` 32-bit words of each buffer: one copy pass into one
    /// staging buffer, one submission, one wait.
    pub fn read_buffers(&self, parts: &[(&wgpu::Buffer, usize)]) -> Result<Vec<Vec<u32>>> {
        let mut offsets = Vec::with_capacity(parts.len());
        let mut total = 0u64;
        for (_, count) in parts {
            offsets.push(total);
            total += padded_size(*count as u64 * 4);
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("rsp readback"),
            size: total.max(16),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        for ((buffer, count), off) in parts.iter().zip(&offsets) {
            let bytes = padded_size(*count as u64 * 4).min(buffer.size());
            enc.copy_buffer_to_buffer(buffer, 0, &staging, *off, bytes);
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| crate::error::device(format!("GPU poll failed: {e}")))?;
        rx.recv()
            .map_err(|_| crate::error::device("GPU readback was dropped".to_string()))?
            .map_err(|e| crate::error::device(format!("GPU readback failed: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| crate::error::device(format!("GPU readback mapping failed: {e:?}")))?;
        let out = parts
            .iter()
            .zip(&offsets)
            .map(|((_, count), off)| {
                let start = *off as usize;
                bytemuck::cast_slice(&view[start..start + count * 4]).to_vec()
            })
            .collect();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Blocks until the GPU has finished all submitted work.
    pub fn synchronize(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| crate::error::device(format!("GPU poll failed: {e}")))?;
        Ok(())
    }

    /// Peak bytes of tensor storage the engine held at once.
    pub fn peak_memory(&self) -> u64 {
        self.pool.peak_bytes()
    }
    pub fn reset_peak_memory(&self) {
        self.pool.reset_peak()
    }
}
