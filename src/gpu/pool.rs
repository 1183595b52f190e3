//! Storage-buffer pool: a tensor's buffer returns here when the tensor is dropped and is
//! handed to the next tensor of a similar size. Commands on one queue run in order, so a
//! buffer freed mid-recording can be reused by later dispatches of the same submission.

use std::sync::{Arc, Mutex};

#[derive(Default)]
struct PoolState {
    free: Vec<wgpu::Buffer>,
    /// Bytes held by live tensors plus free buffers.
    allocated: u64,
    peak: u64,
}

/// Shared handle to the pool; cheap to clone.
#[derive(Clone, Default)]
pub struct BufferPool {
    state: Arc<Mutex<PoolState>>,
}

/// A pooled storage buffer; returns to its pool on drop.
pub struct PooledBuffer {
    pub buffer: wgpu::Buffer,
    pool: BufferPool,
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Ok(mut s) = self.pool.state.lock() {
            s.free.push(self.buffer.clone());
        }
    }
}

pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Rounds a byte size up so every binding is 16-byte aligned and non-empty.
pub(crate) fn padded_size(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(16) * 16
}

impl BufferPool {
    /// A buffer of at least `bytes` bytes. Reuses the smallest free buffer that is big
    /// enough and not more than twice the request; otherwise allocates.
    /// Contents are unspecified: kernels write every element they own.
    pub fn take(&self, device: &wgpu::Device, bytes: u64) -> PooledBuffer {
        self.take_inner(device, bytes, true)
    }

    /// A newly allocated buffer (joins the pool when dropped). Uploads use it:
    /// `queue.write_buffer` runs before the commands of the next submission, so writing
    /// into a recycled buffer could overwrite data that recorded commands still read.
    pub fn take_fresh(&self, device: &wgpu::Device, bytes: u64) -> PooledBuffer {
        self.take_inner(device, bytes, false)
    }

    fn take_inner(&self, device: &wgpu::Device, bytes: u64, reuse: bool) -> PooledBuffer {
        let size = padded_size(bytes);
        let mut s = self.state.lock().expect("buffer pool lock");
        let best = if !reuse {
            None
        } else {
            s.free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.size() >= size && b.size() <= 2 * size + 4096)
                .min_by_key(|(_, b)| b.size())
                .map(|(i, _)| i)
        };
        let buffer = match best {
            Some(i) => s.free.swap_remove(i),
            None => {
                s.allocated += size;
                s.peak = s.peak.max(s.allocated);
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("rsp tensor"),
                    size,
                    usage: STORAGE_USAGE,
                    mapped_at_creation: false,
                })
            }
        };
        PooledBuffer {
            buffer,
            pool: self.clone(),
        }
    }

    /// Peak bytes of pooled storage held at once since the last reset.
    pub fn peak_bytes(&self) -> u64 {
        self.state.lock().map(|s| s.peak).unwrap_or(0)
    }

    pub fn reset_peak(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.peak = s.allocated;
        }
    }
}
