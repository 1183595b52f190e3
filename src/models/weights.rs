//! Reading safetensors files: weights in torchvision (or timm) naming and plain tensors
//! such as an already-normalised `input`. Every error names the file and the tensor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensors};

use crate::tensor::Tensor;

/// All float tensors of one safetensors file, converted to float32 and keyed by name.
/// Integer tensors (e.g. `num_batches_tracked`) are kept apart: inference does not use them.
pub struct TensorFile {
    pub path: PathBuf,
    pub floats: BTreeMap<String, Tensor>,
    pub ints: BTreeMap<String, (Vec<usize>, Vec<i64>)>,
    /// The file's `__metadata__` strings (e.g. `rsp_synth`, written by the trainer).
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// Reads and decodes a whole file. float32, float16 and bfloat16 are accepted.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read weights file {}", path.display()))?;
        Self::from_bytes(path, &bytes)
    }

    /// The tensors of a safetensors file's bytes; bytes that are not one are invalid
    /// input.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        Self::parse(path, bytes).map_err(|e| crate::error::invalid(format!("{e:#}")))
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            anyhow!(
                "{}: not a valid safetensors file (truncated or corrupt?): {e}",
                path.display()
            )
        })?;
        let mut floats = BTreeMap::new();
        let mut ints = BTreeMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::I64 => {
                    let v = raw
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                        .collect();
                    ints.insert(name.clone(), (shape, v));
                    continue;
                }
                other => bail!(
                    "{}: tensor '{name}' has unsupported dtype {other:?} (expected F32, F16 or BF16)",
                    path.display()
                ),
            };
            floats.insert(name, Tensor::new(shape, data));
        }
        let metadata = SafeTensors::read_metadata(bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        Ok(TensorFile {
            path: path.to_path_buf(),
            floats,
            ints,
            metadata,
        })
    }

    /// A float tensor by name, or an error naming file and tensor.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.floats
            .get(name)
            .ok_or_else(|| anyhow!("{}: missing tensor '{name}'", self.path.display()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.floats.contains_key(name)
    }

    pub fn get_int(&self, name: &str) -> Result<&[i64]> {
        self.ints
            .get(name)
            .map(|(_, v)| v.as_slice())
            .ok_or_else(|| anyhow!("{}: missing int64 tensor '{name}'", self.path.display()))
    }
}

/// A view of a [`TensorFile`]'s model weights under a key prefix (`""` or `"model."`),
/// with shape checks and a finiteness check on every tensor taken.
pub struct WeightView<'a> {
    pub file: &'a TensorFile,
    pub prefix: String,
}

impl<'a> WeightView<'a> {
    /// Picks the prefix: `model.` when the file stores its weights that way.
    pub fn new(file: &'a TensorFile) -> Self {
        let prefixed = file.floats.keys().any(|k| k.starts_with("model."));
        WeightView {
            file,
            prefix: if prefixed {
                "model.".into()
            } else {
                String::new()
            },
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.has(&format!("{}{name}", self.prefix))
    }

    /// Names (without prefix) of the float tensors under the prefix.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.file
            .floats
            .keys()
            .filter_map(move |k| k.strip_prefix(self.prefix.as_str()))
    }

    /// Tensor `name`; if `shape` is given every dimension must match (`None` = any).
    pub fn tensor(&self, name: &str, shape: &[Option<usize>]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let t = self.file.get(&full)?;
        let ok = t.shape.len() == shape.len()
            && t.shape
                .iter()
                .zip(shape)
                .all(|(d, e)| e.is_none_or(|e| e == *d));
        if !ok {
            let want: Vec<String> = shape
                .iter()
                .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                .collect();
            bail!(
                "{}: tensor '{full}' has shape {:?}, expected [{}]",
                self.file.path.display(),
                t.shape,
                want.join(", ")
            );
        }
        // An empty dimension would reach divisions by a channel or row count.
        if t.shape.contains(&0) {
            bail!(
                "{}: tensor '{full}' has shape {:?}, which has an empty dimension",
                self.file.path.display(),
                t.shape
            );
        }
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: tensor '{full}' holds a non-finite value ({}) at flat index {i}",
                self.file.path.display(),
                t.data[i]
            );
        }
        Ok(t.clone())
    }

    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        Ok(self.tensor(name, &[Some(len)])?.data)
    }

    pub fn file_name(&self) -> String {
        self.file.path.display().to_string()
    }
}

/// Serialises float32 tensors (and int64 ones) to safetensors bytes.
pub fn to_safetensors_bytes(
    floats: &[(&str, &Tensor)],
    ints: &[(&str, &[usize], &[i64])],
) -> Result<Vec<u8>> {
    use safetensors::tensor::TensorView;
    let f_bytes: Vec<Vec<u8>> = floats
        .iter()
        .map(|(_, t)| bytemuck::cast_slice::<f32, u8>(&t.data).to_vec())
        .collect();
    let i_bytes: Vec<Vec<u8>> = ints
        .iter()
        .map(|(_, _, v)| bytemuck::cast_slice::<i64, u8>(v).to_vec())
        .collect();
    let mut views = Vec::new();
    for ((name, t), b) in floats.iter().zip(&f_bytes) {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::F32, t.shape.clone(), b)?,
        ));
    }
    for ((name, shape, _), b) in ints.iter().zip(&i_bytes) {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::I64, shape.to_vec(), b)?,
        ));
    }
    Ok(safetensors::serialize(views, None)?)
}
