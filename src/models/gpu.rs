//! Models on the GPU: the model's graph with its weights uploaded once, and a forward
//! pass that keeps every activation the backward walks read resident, recorded into
//! the caller's [`Recorder`] with no host round-trip.

use anyhow::Result;

use super::graph::{ActId, ConvParams, Graph, Layer, LinearParams, INPUT};
use super::model::Model;
use crate::gpu::{GpuContext, GpuTensor, Recorder};
use crate::layers::ConvGeometry;
use crate::ops::{self, GpuBatchNorm, GpuConv, GpuLinear};
use crate::tensor::Tensor;

/// A model graph whose parameters live on the GPU.
pub type GpuGraph = Graph<GpuConv, GpuBatchNorm, GpuLinear>;

impl ConvParams for GpuConv {
    fn geometry(&self) -> ConvGeometry {
        self.geom
    }
}

impl LinearParams for GpuLinear {
    fn in_features(&self) -> usize {
        self.in_features
    }
    fn out_features(&self) -> usize {
        self.out_features
    }
}

/// A model whose weights live on the GPU.
pub struct GpuModel {
    pub graph: GpuGraph,
}

/// What the forward pass leaves on the GPU.
pub struct Forward {
    /// Every activation by [`ActId`]; `None` where a ReLU was fused into the layer
    /// before it (no backward rule reads a ReLU's input, only its output).
    pub acts: Vec<Option<GpuTensor>>,
    /// `[N, classes]`; `[N, 0]` for features-only weights.
    pub logits: GpuTensor,
    /// The explanation layer's activation `A` `[N, C, h, w]`.
    pub explain_act: GpuTensor,
}

impl Forward {
    /// The activation `id`.
    pub fn act(&self, id: ActId) -> &GpuTensor {
        self.acts[id]
            .as_ref()
            .expect("activation kept by the forward pass")
    }
}

impl GpuModel {
    /// Uploads all weights (split where one exceeds the binding limit).
    pub fn upload(ctx: &GpuContext, model: &Model) -> Self {
        GpuModel {
            graph: model.graph.map_params(
                |c| GpuConv::upload(ctx, c),
                |b| GpuBatchNorm::upload(ctx, b),
                |l| GpuLinear::upload(ctx, l),
            ),
        }
    }

    /// Number of classes; 0 for features-only weights.
    pub fn num_classes(&self) -> usize {
        self.graph.num_classes()
    }

    /// Bytes of the largest single tensor one image needs at `h × w`.
    pub fn largest_tensor_per_image(&self, h: usize, w: usize) -> u64 {
        self.graph.largest_tensor_per_image(h, w)
    }

    /// The logits `[N, classes]` of `input` `[N, 3, H, W]` (normalised): forward passes
    /// in sub-batches whose tensors fit the adapter's binding limit, one submission and
    /// one readback each.
    pub fn predict(&self, ctx: &GpuContext, input: &Tensor) -> Result<Tensor> {
        let n = input.shape[0];
        let per_image = self.largest_tensor_per_image(input.shape[2], input.shape[3]);
        let chunk = ((ctx.max_binding / per_image.max(1)) as usize).clamp(1, n.max(1));
        let mut parts = Vec::new();
        for start in (0..n).step_by(chunk) {
            let mut rec = Recorder::new(ctx);
            let x = ctx.upload(&input.slice0(start..(start + chunk).min(n)));
            let fwd = self.forward(&mut rec, &x);
            rec.submit();
            drop(rec);
            parts.push(ctx.read(&fwd.logits)?);
        }
        Ok(Tensor::concat0(&parts))
    }

    /// Runs the forward pass of `x` `[N, 3, H, W]` up to the logits (features-only
    /// weights: up to the explanation layer), keeping every activation. A ReLU that is
    /// the only reader of a convolution, batch norm, linear layer or residual sum is
    /// fused into it.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Forward {
        let g = &self.graph;
        let len = g.forward_len();
        let mut readers = vec![0usize; len + 1];
        for node in &g.nodes[..len] {
            for &i in &node.inputs {
                readers[i] += 1;
            }
        }
        let mut acts: Vec<Option<GpuTensor>> = vec![None; len + 1];
        acts[INPUT] = Some(x.clone());
        let mut i = 0;
        while i < len {
            let node = &g.nodes[i];
            let out_id = i + 1;
            let fuse = matches!(
                node.layer,
                Layer::Conv { .. } | Layer::BatchNorm(_) | Layer::Linear(_) | Layer::Add
            ) && readers[out_id] == 1
                && out_id != g.explain
                && g.nodes.get(i + 1).is_some_and(|next| {
                    matches!(next.layer, Layer::Relu) && next.inputs == [out_id] && i + 1 < len
                });
            let input = |k: usize| {
                acts[node.inputs[k]]
                    .as_ref()
                    .expect("a fused ReLU's input has no other reader")
            };
            let out = match &node.layer {
                Layer::Conv { conv, .. } => ops::conv2d(rec, input(0), conv, fuse),
                Layer::BatchNorm(b) => ops::batch_norm(rec, input(0), b, fuse),
                Layer::Relu => ops::relu(rec, input(0)),
                Layer::MaxPool(p) => ops::max_pool2d(rec, input(0), p),
                Layer::AvgPool(p) => ops::avg_pool2d(rec, input(0), p),
                Layer::Flatten => {
                    let t = input(0);
                    t.reshaped(&[t.shape[0], t.numel() / t.shape[0].max(1)])
                }
                Layer::Linear(l) => ops::linear(rec, input(0), l, fuse),
                Layer::Add => ops::add(rec, input(0), input(1), fuse),
                Layer::Concat => {
                    let inputs: Vec<&GpuTensor> = (0..node.inputs.len()).map(input).collect();
                    ops::concat_channels(rec, &inputs)
                }
            };
            let written = if fuse { out_id + 1 } else { out_id };
            acts[written] = Some(out);
            i = written;
        }
        let logits = match g.logits {
            Some(id) => acts[id].clone().expect("logits computed"),
            None => rec.ctx.empty(&[x.shape[0], 0]),
        };
        let explain_act = acts[g.explain].clone().expect("explanation layer kept");
        Forward {
            acts,
            logits,
            explain_act,
        }
    }
}
