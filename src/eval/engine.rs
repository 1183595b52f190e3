//! The GPU side of the benchmarks: saliency maps of a batch of (image, class) pairs for
//! any method, on the same engine the CLI uses.

use anyhow::{ensure, Result};

use super::map::Heatmap;
use crate::explain::{explain, Method, Request};
use crate::gpu::GpuContext;
use crate::models::gpu::GpuModel;
use crate::tensor::Tensor;

/// What a benchmark row is: a method run on the engine, or the center baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvalMethod {
    /// An attribution method.
    Engine(Method),
    /// The Pointing Game's center baseline (no map).
    Center,
}

impl EvalMethod {
    /// The name used in tables, results files and `--methods`.
    pub fn name(self) -> &'static str {
        match self {
            EvalMethod::Engine(m) => m.name(),
            EvalMethod::Center => "center",
        }
    }

    /// Parses one `--methods` entry.
    pub fn parse(name: &str) -> Option<EvalMethod> {
        match name {
            "center" => Some(EvalMethod::Center),
            other => Method::from_name(other).map(EvalMethod::Engine),
        }
    }
}

/// A model on the GPU, ready to produce maps.
pub struct MapEngine<'a> {
    pub ctx: &'a GpuContext,
    pub model: &'a GpuModel,
}

impl MapEngine<'_> {
    /// Signed maps `[H, W]` (channel sum of the pixel relevance) of `method` for
    /// `images` `[N, 3, H, W]` (normalised) and one target class per image; RSP starts
    /// from its Grad-CAM initialisation. Also returns the logits `[N, classes]`.
    pub fn maps(
        &self,
        method: Method,
        images: &Tensor,
        targets: &[usize],
    ) -> Result<(Vec<Heatmap>, Tensor)> {
        ensure!(
            images.shape.len() == 4 && images.shape[0] == targets.len(),
            "maps: {} targets for images {:?}",
            targets.len(),
            images.shape
        );
        let req = Request::method(method, Some(targets.to_vec()));
        let e = explain(self.ctx, self.model, images, &req)?;
        let heat = e.heatmap();
        let (h, w) = (heat.shape[1], heat.shape[2]);
        let maps = (0..targets.len())
            .map(|i| Heatmap::new(w, h, heat.data[i * h * w..(i + 1) * h * w].to_vec()))
            .collect::<Result<Vec<_>>>()?;
        Ok((maps, e.logits))
    }
}
