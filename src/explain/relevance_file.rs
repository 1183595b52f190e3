//! The relevance file: what `rsp run --save-relevance` writes, the server's download
//! and Python's `Explanation.save` — one safetensors format for an explanation.

use anyhow::Result;

use super::Explanation;
use crate::models::weights::to_safetensors_bytes;
use crate::tensor::Tensor;

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
    relevance_bytes(&relevance, &heatmap, &init, &logits, &target)
}

/// The relevance file of one explanation's parts: `relevance`, `heatmap`, `init`,
/// `logits` (f32) and `target` (i64, one per image).
pub fn relevance_bytes(
    relevance: &Tensor,
    heatmap: &Tensor,
    init: &Tensor,
    logits: &Tensor,
    target: &[i64],
) -> Result<Vec<u8>> {
    to_safetensors_bytes(
        &[
            ("relevance", relevance),
            ("heatmap", heatmap),
            ("init", init),
            ("logits", logits),
        ],
        &[("target", &[target.len()], target)],
    )
}
