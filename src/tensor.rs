//! Host-side dense float32 tensors: the currency between the CPU reference, the
//! weight loader, the GPU engine's uploads/readbacks and the tests.

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
