//! The GPU side of `rsp serve`: one thread owns the device and the model and takes jobs
//! from one queue in arrival order, so explanations never run at once and concurrent
//! requests are served first come, first served. It keeps the uploaded images (decoded
//! and preprocessed; least recently used out past a count) and their forward passes on
//! the GPU (least recently used out past a byte budget), so a second class or method
//! of an image runs only its backward part.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use anyhow::Result;
use lru::LruCache;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::explain::{Explanation, ForwardPass, Init, Method, Request};
use crate::gpu::GpuContext;
use crate::models::gpu::GpuModel;
use crate::models::Readout;
use crate::tensor::{top_k, Tensor};

/// Images kept (decoded, preprocessed, with their predictions), whatever their forward
/// passes.
pub const KEPT_IMAGES: usize = 256;

/// How many classes an upload's reply lists.
pub const TOP: usize = 5;

/// A preprocessed upload, ready for the GPU.
pub struct Upload {
    /// Content hash of the uploaded bytes (hex), the image's id.
    pub id: String,
    /// File name as the browser gave it (for downloads).
    pub name: String,
    /// `[1, 3, size, size]`, normalised.
    pub input: Tensor,
    /// The cropped photo as PNG (what the maps are drawn over).
    pub photo_png: Vec<u8>,
}

/// The content hash that names an upload.
pub fn content_id(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// One class of an upload's reply.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub class: usize,
    pub name: String,
    /// Probability by the model's readout (softmax, or sigmoid per class).
    pub score: f32,
}

/// What an upload returns.
#[derive(Clone, Debug, Serialize)]
pub struct UploadReply {
    pub id: String,
    pub name: String,
    pub size: usize,
    pub top: Vec<Prediction>,
}

/// Which map: an image, a class, a method (and RSP's initialisation).
#[derive(Clone, Debug)]
pub struct MapKey {
    pub id: String,
    pub class: usize,
    pub method: Method,
    pub init: Init,
}

/// What the GPU thread is asked.
pub enum Job {
    Upload(Upload, oneshot::Sender<Result<UploadReply>>),
    Explain(MapKey, oneshot::Sender<Result<(String, Explanation)>>),
    Photo(String, oneshot::Sender<Option<Vec<u8>>>),
}

/// Counters the server shows at `/api/stats` (and the load test reads).
#[derive(Default)]
pub struct Stats {
    /// API requests answered.
    pub requests: AtomicU64,
    /// Forward passes run (an upload, or an explanation whose pass was evicted).
    pub forward_passes: AtomicU64,
    /// Explanations run.
    pub explanations: AtomicU64,
    /// Explanations that found their image's forward pass kept.
    pub forward_reused: AtomicU64,
    /// GPU jobs running now, and the most ever at once.
    pub gpu_running: AtomicUsize,
    pub gpu_running_max: AtomicUsize,
    /// Bytes the kept forward passes hold, and how many are kept.
    pub cache_bytes: AtomicU64,
    pub cache_entries: AtomicUsize,
    /// Jobs waiting in the queue.
    pub queued: AtomicUsize,
}

/// One kept image (its latest file name in `reply`).
struct Image {
    input: Tensor,
    photo_png: Vec<u8>,
    reply: UploadReply,
}

/// The GPU thread's state.
pub struct Worker {
    pub ctx: GpuContext,
    pub model: GpuModel,
    pub readout: Readout,
    pub class_names: Vec<String>,
    /// Byte budget of the kept forward passes.
    pub cache_limit: u64,
    pub stats: Arc<Stats>,
}

impl Worker {
    /// Serves jobs until every sender is gone.
    pub fn run(self, jobs: mpsc::Receiver<Job>) {
        let mut images: LruCache<String, Image> =
            LruCache::new(NonZeroUsize::new(KEPT_IMAGES).expect("non-zero"));
        let mut passes: LruCache<String, ForwardPass> = LruCache::unbounded();
        for job in jobs {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            let running = self.stats.gpu_running.fetch_add(1, Ordering::SeqCst) + 1;
            self.stats
                .gpu_running_max
                .fetch_max(running, Ordering::SeqCst);
            match job {
                Job::Upload(up, reply) => {
                    let _ = reply.send(self.upload(up, &mut images, &mut passes));
                }
                Job::Explain(key, reply) => {
                    let _ = reply.send(self.explain(&key, &mut images, &mut passes));
                }
                Job::Photo(id, reply) => {
                    let _ = reply.send(images.get(&id).map(|i| i.photo_png.clone()));
                }
            }
            self.stats.gpu_running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn upload(
        &self,
        up: Upload,
        images: &mut LruCache<String, Image>,
        passes: &mut LruCache<String, ForwardPass>,
    ) -> Result<UploadReply> {
        if let Some(image) = images.get_mut(&up.id) {
            // The same bytes again: its predictions are known, its pass maybe kept.
            image.reply.name = up.name;
            return Ok(image.reply.clone());
        }
        let pass = self.forward(&up.input)?;
        let scores = self.readout.probabilities(&pass.logits);
        let top = top_k(&scores.data, TOP.min(scores.data.len()))
            .into_iter()
            .map(|class| Prediction {
                class,
                name: self
                    .class_names
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string()),
                score: scores.data[class],
            })
            .collect();
        let reply = UploadReply {
            id: up.id.clone(),
            name: up.name.clone(),
            size: up.input.shape[2],
            top,
        };
        images.put(
            up.id.clone(),
            Image {
                input: up.input,
                photo_png: up.photo_png,
                reply: reply.clone(),
            },
        );
        self.keep(up.id, pass, passes);
        Ok(reply)
    }

    fn forward(&self, input: &Tensor) -> Result<ForwardPass> {
        self.stats.forward_passes.fetch_add(1, Ordering::SeqCst);
        ForwardPass::new(&self.ctx, &self.model, input)
    }

    /// Keeps `pass` as the most recent, evicting the least recently used past the
    /// byte budget (the newest is kept even alone over it).
    fn keep(&self, id: String, pass: ForwardPass, passes: &mut LruCache<String, ForwardPass>) {
        passes.put(id, pass);
        let mut total: u64 = passes.iter().map(|(_, p)| p.bytes()).sum();
        while total > self.cache_limit && passes.len() > 1 {
            if let Some((_, old)) = passes.pop_lru() {
                total -= old.bytes();
            }
        }
        self.stats.cache_bytes.store(total, Ordering::SeqCst);
        self.stats
            .cache_entries
            .store(passes.len(), Ordering::SeqCst);
    }

    fn explain(
        &self,
        key: &MapKey,
        images: &mut LruCache<String, Image>,
        passes: &mut LruCache<String, ForwardPass>,
    ) -> Result<(String, Explanation)> {
        let Some(image) = images.get(&key.id) else {
            crate::error::bail_invalid!(
                "image {} is not (or no longer) kept by the server; upload it again",
                key.id
            );
        };
        let name = image.reply.name.clone();
        let req = Request {
            init: key.init.clone(),
            ..Request::method(key.method, Some(vec![key.class]))
        };
        self.stats.explanations.fetch_add(1, Ordering::SeqCst);
        if let Some(pass) = passes.get(&key.id) {
            self.stats.forward_reused.fetch_add(1, Ordering::SeqCst);
            return Ok((name, pass.explain(&self.ctx, &self.model, &req)?));
        }
        let input = image.input.clone();
        let pass = self.forward(&input)?;
        let e = pass.explain(&self.ctx, &self.model, &req)?;
        self.keep(key.id.clone(), pass, passes);
        Ok((name, e))
    }
}
