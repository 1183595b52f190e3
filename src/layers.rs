//! Host layer types: the parameters (weights in host memory) and geometry of the
//! layers models are built from. Models list them, ops upload them, the CPU reference
//! runs them.

use crate::tensor::Tensor;

/// 2-D convolution (cross-correlation), groups = 1, square stride/padding.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[C_out, C_in, k_h, k_w]`
    pub weight: Tensor,
    /// `[C_out]`, absent for convs followed by batch norm.
    pub bias: Option<Vec<f32>>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    pub fn out_channels(&self) -> usize {
        self.weight.shape[0]
    }
    pub fn in_channels(&self) -> usize {
        self.weight.shape[1]
    }
    pub fn kernel(&self) -> (usize, usize) {
        (self.weight.shape[2], self.weight.shape[3])
    }
    pub fn geometry(&self) -> ConvGeometry {
        let (kh, kw) = self.kernel();
        ConvGeometry {
            c_out: self.out_channels(),
            c_in: self.in_channels(),
            kh,
            kw,
            stride: self.stride,
            padding: self.padding,
        }
    }
}

/// Shape and stride/padding of a convolution, without weight values: RSP's hidden-layer
/// rule needs only this (the trained weights do not enter it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub c_out: usize,
    pub c_in: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    /// Output spatial size for an `h × w` input.
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h + 2 * self.padding - self.kh) / self.stride + 1,
            (w + 2 * self.padding - self.kw) / self.stride + 1,
        )
    }
}

/// Batch normalisation in eval mode (running statistics).
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    pub eps: f32,
}

impl BatchNorm2d {
    /// Per-channel `(scale, shift)` so that `y = x * scale + shift`.
    pub fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = self
            .gamma
            .iter()
            .zip(&self.running_var)
            .map(|(g, v)| g / (v + self.eps).sqrt())
            .collect();
        let shift = self
            .beta
            .iter()
            .zip(&self.running_mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        (scale, shift)
    }
}

/// Fully connected layer `y = W x + b`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Vec<f32>,
}

impl Linear {
    pub fn in_features(&self) -> usize {
        self.weight.shape[1]
    }
    pub fn out_features(&self) -> usize {
        self.weight.shape[0]
    }
}

/// Max pooling window. Ties go to the first position in row-major window order;
/// padding never wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl MaxPool2d {
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h + 2 * self.padding - self.kernel) / self.stride + 1,
            (w + 2 * self.padding - self.kernel) / self.stride + 1,
        )
    }
}
