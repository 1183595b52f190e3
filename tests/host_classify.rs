//! The library's host `softmax`/`top_k` (what `rsp` prints) agree exactly with the CPU
//! oracle's, which keeps its own copy so the oracle depends on nothing it checks.

use rsp::reference::ops as oracle;
use rsp::tensor::{softmax, top_k};
use rsp::Tensor;

#[test]
fn softmax_and_top_k_match_the_oracle_bit_for_bit() {
    let mut logits = rsp::models::zoo::random_tensor(&[4, 1000], 77, -20.0, 20.0);
    // Ties, for top_k's tie order.
    logits.data[5] = logits.data[9];
    let ours = softmax(&logits);
    let theirs = oracle::softmax(&logits);
    assert_eq!(ours.shape, theirs.shape);
    assert!(ours
        .data
        .iter()
        .zip(&theirs.data)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    for row in logits.data.chunks(1000).chain(ours.data.chunks(1000)) {
        for k in [0, 1, 5, 1000, 1001] {
            assert_eq!(top_k(row, k), oracle::top_k(row, k));
        }
    }
    let empty = Tensor::new(vec![2, 0], vec![]);
    assert_eq!(softmax(&empty), oracle::softmax(&empty));
}
