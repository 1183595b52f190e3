//! Comparison of tensors against references (golden files, CPU oracle).
