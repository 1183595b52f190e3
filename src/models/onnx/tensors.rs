//! An ONNX file's constant tensors (initializers and `Constant` nodes) as float32
//! host tensors or int64 lists, read from the message itself or from external data
//! files. Every size is checked against the bytes that are really there before anything
//! is allocated, so a damaged header cannot ask for memory.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::proto::TensorProto;
use crate::tensor::Tensor;

const FLOAT: i32 = 1;
const INT32: i32 = 6;
const INT64: i32 = 7;
const FLOAT16: i32 = 10;
const DOUBLE: i32 = 11;
const EXTERNAL: i32 = 1;

/// Element count of `t`'s dims, or an error naming the tensor.
fn numel(t: &TensorProto) -> Result<(Vec<usize>, usize)> {
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut n = 1usize;
    for &d in &t.dims {
        let d = usize::try_from(d)
            .with_context(|| format!("tensor '{}' has a negative dimension {d}", t.name))?;
        n = n
            .checked_mul(d)
            .with_context(|| format!("tensor '{}' has dims {:?} (too large)", t.name, t.dims))?;
        shape.push(d);
    }
    Ok((shape, n))
}

fn element_size(t: &TensorProto) -> Result<usize> {
    Ok(match t.data_type {
        FLOAT | INT32 => 4,
        INT64 | DOUBLE => 8,
        FLOAT16 => 2,
        other => bail!(
            "tensor '{}' has ONNX data type {other}, rsp reads float32, float16, float64, \
             int32 and int64",
            t.name
        ),
    })
}

/// The raw little-endian bytes of `t`, from the message or its external data file
/// (`location` relative to `dir`, `offset`, `length`); `None` where the values are in
/// the typed repeated fields instead.
fn raw_bytes(t: &TensorProto, dir: &Path, expected: usize) -> Result<Option<Vec<u8>>> {
    if t.data_location == EXTERNAL {
        let field = |key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.as_str())
        };
        let location = field("location").with_context(|| {
            format!("tensor '{}' is external data without a 'location'", t.name)
        })?;
        let parse = |key: &str| -> Result<Option<u64>> {
            field(key)
                .map(|v| {
                    v.parse::<u64>().with_context(|| {
                        format!(
                            "tensor '{}': external data {key} '{v}' is not a number",
                            t.name
                        )
                    })
                })
                .transpose()
        };
        let offset = parse("offset")?.unwrap_or(0);
        let length = parse("length")?;
        let rel = Path::new(location);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            bail!(
                "tensor '{}': external data location '{location}' leaves the model's folder",
                t.name
            );
        }
        let path = dir.join(rel);
        let size = std::fs::metadata(&path)
            .with_context(|| {
                format!(
                    "tensor '{}': cannot read its external data file {}",
                    t.name,
                    path.display()
                )
            })?
            .len();
        let length = length.unwrap_or(expected as u64);
        if length != expected as u64 {
            bail!(
                "tensor '{}': external data length {length} does not match its shape \
                 ({expected} bytes)",
                t.name
            );
        }
        if offset.checked_add(length).is_none_or(|end| end > size) {
            bail!(
                "tensor '{}': external data {}..{} runs past the end of {} ({size} bytes)",
                t.name,
                offset,
                offset.saturating_add(length),
                path.display()
            );
        }
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; expected];
        f.read_exact(&mut buf)
            .with_context(|| format!("tensor '{}': reading {}", t.name, path.display()))?;
        return Ok(Some(buf));
    }
    if !t.raw_data.is_empty() {
        if t.raw_data.len() != expected {
            bail!(
                "tensor '{}' holds {} bytes, its shape {:?} needs {expected}",
                t.name,
                t.raw_data.len(),
                t.dims
            );
        }
        return Ok(Some(t.raw_data.clone()));
    }
    Ok(None)
}

/// `t` as a float32 host tensor (float16 and float64 converted).
pub fn float_tensor(t: &TensorProto, dir: &Path) -> Result<Tensor> {
    let (shape, n) = numel(t)?;
    let size = element_size(t)?;
    if !matches!(t.data_type, FLOAT | FLOAT16 | DOUBLE) {
        bail!(
            "tensor '{}' holds integers (ONNX data type {}), a weight must be floating point",
            t.name,
            t.data_type
        );
    }
    let expected = n.checked_mul(size).context("tensor too large")?;
    let data: Vec<f32> = match raw_bytes(t, dir, expected)? {
        Some(raw) => match t.data_type {
            FLOAT => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            FLOAT16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
        },
        None => {
            let data: Vec<f32> = match t.data_type {
                FLOAT => t.float_data.clone(),
                DOUBLE => t.double_data.iter().map(|&v| v as f32).collect(),
                // float16 values travel as int32 bit patterns.
                _ => t
                    .int32_data
                    .iter()
                    .map(|&v| half::f16::from_bits(v as u16).to_f32())
                    .collect(),
            };
            if data.len() != n {
                bail!(
                    "tensor '{}' holds {} values, its shape {:?} needs {n}",
                    t.name,
                    data.len(),
                    t.dims
                );
            }
            data
        }
    };
    Ok(Tensor::new(shape, data))
}

/// `t` as a list of integers (shapes and axes given as constants).
pub fn int_list(t: &TensorProto, dir: &Path) -> Result<Vec<i64>> {
    let (_, n) = numel(t)?;
    let size = element_size(t)?;
    if !matches!(t.data_type, INT64 | INT32) {
        bail!("tensor '{}' should hold integers", t.name);
    }
    let expected = n.checked_mul(size).context("tensor too large")?;
    let values: Vec<i64> = match raw_bytes(t, dir, expected)? {
        Some(raw) if t.data_type == INT64 => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect(),
        Some(raw) => raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64)
            .collect(),
        None if t.data_type == INT64 => t.int64_data.clone(),
        None => t.int32_data.iter().map(|&v| v as i64).collect(),
    };
    if values.len() != n {
        bail!(
            "tensor '{}' holds {} values, its shape {:?} needs {n}",
            t.name,
            values.len(),
            t.dims
        );
    }
    Ok(values)
}
