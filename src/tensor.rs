//! Host-side dense float32 tensors: the currency between the CPU reference, the
//! weight loader, the GPU engine's uploads/readbacks and the tests; and the two host
//! reductions of read-back logits that reports need ([`softmax`], [`top_k`]).

use std::borrow::Borrow;

/// A dense, row-major (C-contiguous) float32 tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor; panics only on a programming error (length mismatch).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor shape {shape:?} does not match {} values",
            data.len()
        );
        Tensor { shape, data }
    }

    pub fn zeros(shape: &[usize]) -> Self {
        Tensor::new(shape.to_vec(), vec![0.0; shape.iter().product()])
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Same data, new shape (element count must match).
    pub fn reshape(mut self, shape: &[usize]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), self.data.len());
        self.shape = shape.to_vec();
        self
    }

    /// The `i`-th slice along the first axis (e.g. one image of a batch).
    pub fn index0(&self, i: usize) -> Tensor {
        let inner: usize = self.shape[1..].iter().product();
        Tensor::new(
            self.shape[1..].to_vec(),
            self.data[i * inner..(i + 1) * inner].to_vec(),
        )
    }

    /// Stacks equally shaped tensors along a new first axis.
    pub fn stack<T: Borrow<Tensor>>(items: &[T]) -> Tensor {
        let first = items[0].borrow();
        let mut shape = vec![items.len()];
        shape.extend_from_slice(&first.shape);
        let mut data = Vec::with_capacity(shape.iter().product());
        for t in items {
            assert_eq!(t.borrow().shape, first.shape);
            data.extend_from_slice(&t.borrow().data);
        }
        Tensor::new(shape, data)
    }

    /// Concatenates tensors along their first axis (the batch); the other axes must
    /// agree.
    pub fn concat0<T: Borrow<Tensor>>(parts: &[T]) -> Tensor {
        let first = parts[0].borrow();
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.borrow().shape[0]).sum();
        let mut data = Vec::with_capacity(shape.iter().product());
        for p in parts {
            assert_eq!(p.borrow().shape[1..], first.shape[1..]);
            data.extend_from_slice(&p.borrow().data);
        }
        Tensor::new(shape, data)
    }

    /// The slices `range` along the first axis, keeping the axis.
    pub fn slice0(&self, range: std::ops::Range<usize>) -> Tensor {
        let inner: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = range.len();
        Tensor::new(
            shape,
            self.data[range.start * inner..range.end * inner].to_vec(),
        )
    }

    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }

    /// Sum in float64, so that comparisons of totals do not depend on order.
    pub fn sum_f64(&self) -> f64 {
        self.data.iter().map(|&v| v as f64).sum()
    }
}

/// Row-wise softmax of `[N, C]` logits: each row shifted by its maximum, exponentiated
/// and divided by its total (summed in float64).
pub fn softmax(logits: &Tensor) -> Tensor {
    assert_eq!(logits.shape.len(), 2, "softmax: expected [N, C] logits");
    let c = logits.shape[1];
    let mut out = logits.data.clone();
    for row in out.chunks_mut(c.max(1)) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for v in row.iter_mut() {
            *v = (*v - m).exp();
        }
        let total = row.iter().map(|&v| v as f64).sum::<f64>() as f32;
        for v in row.iter_mut() {
            *v /= total;
        }
    }
    Tensor::new(logits.shape.clone(), out)
}

/// Indices of the `k` largest entries of `row`, largest first; ties go to the lower index.
pub fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    // A stable sort keeps equal values in index order.
    idx.sort_by(|&a, &b| {
        row[b]
            .partial_cmp(&row[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_keep_the_order() {
        let logits = Tensor::new(vec![2, 3], vec![1.0, 2.0, 3.0, 1000.0, 1000.0, -1000.0]);
        let p = softmax(&logits);
        assert_eq!(p.shape, vec![2, 3]);
        let e = [1.0f64, 1f64.exp(), 2f64.exp()];
        let total: f64 = e.iter().sum();
        for (got, want) in p.data[..3].iter().zip(e.iter().map(|v| v / total)) {
            assert!((*got as f64 - want).abs() < 1e-7, "{got} vs {want}");
        }
        // Large logits do not overflow: the row is shifted by its maximum first.
        assert_eq!(&p.data[3..], &[0.5, 0.5, 0.0]);
    }

    #[test]
    fn top_k_is_largest_first_with_ties_to_the_lower_index() {
        let row = [0.1, 0.7, 0.3, 0.7, -1.0];
        assert_eq!(top_k(&row, 3), vec![1, 3, 2]);
        assert_eq!(top_k(&row, 1), vec![1]);
        assert_eq!(top_k(&row, 9), vec![1, 3, 2, 0, 4]);
        assert!(top_k(&row, 0).is_empty());
    }
}
