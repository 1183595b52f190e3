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
    /// Output spatial size for an `h × w` input (0 where the kernel does not fit).
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (
            pool_out_len(h, self.kh, self.stride, self.padding, false),
            pool_out_len(w, self.kw, self.stride, self.padding, false),
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
    /// Output length rounded up (PyTorch's `ceil_mode`): a last window that starts
    /// inside the input (or its leading padding) but runs past its end still counts.
    pub ceil_mode: bool,
}

impl MaxPool2d {
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let len = |l| pool_out_len(l, self.kernel, self.stride, self.padding, self.ceil_mode);
        (len(h), len(w))
    }
}

/// Output length of a pooling window of `kernel` taps, `stride` and `padding` over an
/// axis of `len` (PyTorch's and ONNX's formula, with `ceil_mode`'s rule that no window
/// may start in the trailing padding); 0 where the window does not fit.
pub fn pool_out_len(len: usize, kernel: usize, stride: usize, padding: usize, ceil: bool) -> usize {
    let Some(span) = (len + 2 * padding).checked_sub(kernel) else {
        return 0;
    };
    if stride == 0 {
        return 0;
    }
    let mut out = if ceil {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    };
    if ceil && (out - 1) * stride >= len + padding {
        out -= 1;
    }
    out
}

/// Average pooling: PyTorch's adaptive bins to a fixed output size (torchvision's
/// `avgpool`, global pooling), or a sliding window (`AvgPool2d`, ONNX `AveragePool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AvgPool2d {
    Adaptive {
        out: (usize, usize),
    },
    Window {
        kernel: usize,
        stride: usize,
        padding: usize,
        ceil_mode: bool,
        /// Padded positions count in the divisor (PyTorch's default; ONNX's
        /// `count_include_pad`).
        count_include_pad: bool,
    },
}

impl AvgPool2d {
    /// Global average pooling.
    pub const GLOBAL: AvgPool2d = AvgPool2d::Adaptive { out: (1, 1) };

    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        match *self {
            AvgPool2d::Adaptive { out } => out,
            AvgPool2d::Window {
                kernel,
                stride,
                padding,
                ceil_mode,
                ..
            } => (
                pool_out_len(h, kernel, stride, padding, ceil_mode),
                pool_out_len(w, kernel, stride, padding, ceil_mode),
            ),
        }
    }

    /// The bin of output `i` of `out` along an axis of `len` inputs: the input range
    /// `start..end` it averages and the count it divides by along this axis (a 2-D
    /// cell divides by the product of its two axes' counts, as PyTorch does).
    pub fn bin(&self, i: usize, len: usize, out: usize) -> (usize, usize, usize) {
        match *self {
            AvgPool2d::Adaptive { .. } => {
                let (start, end) = ((i * len) / out, ((i + 1) * len).div_ceil(out));
                (start, end, end - start)
            }
            AvgPool2d::Window {
                kernel,
                stride,
                padding,
                count_include_pad,
                ..
            } => {
                // Positions in the padded axis, then clipped to the input.
                let start = i * stride;
                let end = (start + kernel).min(len + 2 * padding);
                let padded = end - start;
                let (start, end) = (
                    start.saturating_sub(padding).min(len),
                    end.saturating_sub(padding).min(len),
                );
                let count = if count_include_pad {
                    padded
                } else {
                    end - start
                };
                (start, end, count)
            }
        }
    }
}
