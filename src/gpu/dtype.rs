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
