//! What `rsp` writes: the `--save-relevance` file ([`relevance_file`]), and output
//! folders, checked before any long work (weights download, GPU setup), but
//! created only when the first output is written, so a run that fails before that
//! leaves no empty folder behind.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::models::weights::to_safetensors_bytes;
use crate::{Explanation, Tensor};

/// Creates the output directory (and its missing parents) when the first output is
/// about to be written.
pub fn create_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))
}

/// Fails unless `dir` is a writable directory or could be created as one: its nearest
/// existing ancestor must be a writable directory. Creates nothing.
pub fn check_output_dir(dir: &Path) -> Result<()> {
    let cannot_create =
        |why: String| anyhow!("cannot create output directory {}: {why}", dir.display());
    let mut existing = dir;
    while !existing.as_os_str().is_empty() && !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new(""));
    }
    if existing.as_os_str().is_empty() {
        existing = Path::new(".");
    }
    if !existing.is_dir() {
        return Err(cannot_create(format!(
            "{} is not a directory",
            existing.display()
        )));
    }
    let probe = existing.join(format!(".rsp-write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(probe);
            Ok(())
        }
        Err(e) if existing == dir => Err(anyhow!(
            "output directory {} is not writable: {e}",
            dir.display()
        )),
        Err(e) => Err(cannot_create(format!(
            "{} is not writable: {e}",
            existing.display()
        ))),
    }
}

/// The `--save-relevance` file of `parts` (one or more batches of one method):
/// `relevance`, `heatmap`, `init`, `logits` (f32) and `target` (i64), in safetensors.
pub fn relevance_file(parts: &[Explanation]) -> Result<Vec<u8>> {
    let cat = |f: &dyn Fn(&Explanation) -> Tensor| {
        Tensor::concat0(&parts.iter().map(f).collect::<Vec<_>>())
    };
    let relevance = cat(&|e| e.relevance.clone());
    let heatmap = cat(&|e| e.heatmap());
    let init = cat(&|e| e.init.clone());
    let logits = cat(&|e| e.logits.clone());
    let target: Vec<i64> = parts
        .iter()
        .flat_map(|e| e.target.iter().map(|&t| t as i64))
        .collect();
    to_safetensors_bytes(
        &[
            ("relevance", &relevance),
            ("heatmap", &heatmap),
            ("init", &init),
            ("logits", &logits),
        ],
        &[("target", &[target.len()], &target)],
    )
}
