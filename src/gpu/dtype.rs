//! Element types of GPU storage. The leaf of `gpu/`: tensors, pipelines and the shader
//! sources name it, and it depends on nothing.

/// How a tensor's elements are stored on the GPU. Kernels always compute in f32; a
/// binding of f16 elements is read through a per-binding element type alias (see
/// `gpu::shaders`), so only storage and bandwidth change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE single precision.
    #[default]
    F32,
    /// IEEE half precision; needs the adapter's `SHADER_F16` feature.
    F16,
}

impl DType {
    /// Every storage type, f32 first.
    pub const ALL: [DType; 2] = [DType::F32, DType::F16];

    pub fn bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    /// The WGSL scalar type.
    pub fn wgsl(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        }
    }

    /// The name users give (`--weights-dtype`): the WGSL scalar type.
    pub fn name(self) -> &'static str {
        self.wgsl()
    }

    /// The storage type of a [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// One line on the type, for lists of choices.
    pub fn description(self) -> &'static str {
        match self {
            DType::F32 => "IEEE single precision",
            DType::F16 => "IEEE half precision; needs the adapter's `SHADER_F16` feature",
        }
    }
}

/// The arithmetic a run asks for (`--precision`): what the GEMM kernel variants may
/// trade for speed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 storage; every GEMM holds f32 accuracy: the exact variants, or on matrix
    /// units the split-fp32 products where the autotuner's check accepts them. The
    /// golden-parity mode.
    #[default]
    F32,
    /// f16 storage of weights, activations and relevance sections, read into f32
    /// arithmetic; on matrix units GEMM operands are rounded to f16 and multiplied
    /// into f32 accumulators. Quotients (RSP's relative contributions), channel
    /// attribution maps, statistics, logits and final maps stay f32.
    F16,
}

impl Precision {
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::F16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    pub fn from_name(name: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == name)
    }

    /// One line on the mode, for lists of choices.
    pub fn description(self) -> &'static str {
        match self {
            Precision::F32 => "f32 accuracy everywhere (the golden-parity default)",
            Precision::F16 => {
                "f16 weights, activations and relevance, f32 arithmetic (needs SHADER_F16)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_name("f64"), None);
    }
}
