//! mIoU of binarised saliency maps against class segmentation masks.
//!
//! Per (image, class) pair: the map is resized bilinearly to the mask size, only its
//! positive (target-supporting) part is kept, and it is binarised at a threshold
//! ([`Threshold`]); the prediction's intersection and union with the class mask are
//! counted over the non-ignored pixels (VOC's void label 255 is ignored).
//!
//! Aggregation, as for semantic segmentation benchmarks: per class, intersections and
//! unions are summed over all its pairs and `IoU_c = ΣI / ΣU`; the mIoU is the mean of
//! `IoU_c` over the classes that have a non-empty union. Per-pair IoUs are kept as well
//! ([`IouPair::iou`]) for per-image analysis.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use super::dataset::{BinaryMask, Sample};
use super::map::Heatmap;

/// How a (resized) map is binarised. In both cases a pixel is foreground when its value
/// is positive and at least the threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Threshold {
    /// The mean of the map's positive values (computed on the resized map).
    #[default]
    MeanOfPositive,
    /// This fraction of the map's maximum (e.g. 0.5).
    FractionOfMax(f32),
}

impl Threshold {
    /// The threshold value for `values`, `None` when no value is positive (the
    /// prediction is then empty).
    pub fn value(self, values: &[f32]) -> Option<f32> {
        let positive = values.iter().copied().filter(|&v| v > 0.0);
        match self {
            Threshold::MeanOfPositive => {
                let (sum, count) =
                    positive.fold((0.0f64, 0usize), |(s, n), v| (s + v as f64, n + 1));
                (count > 0).then(|| (sum / count as f64) as f32)
            }
            Threshold::FractionOfMax(fraction) => {
                positive.reduce(f32::max).map(|max| fraction * max)
            }
        }
    }
}

/// Foreground of `map` (at its own size) under `threshold`: pixels with
/// `value > 0 && value >= threshold`.
pub fn binarize(map: &Heatmap, threshold: Threshold) -> BinaryMask {
    let pixels = match threshold.value(map.values()) {
        None => vec![false; map.values().len()],
        Some(level) => map
            .values()
            .iter()
            .map(|&v| v > 0.0 && v >= level)
            .collect(),
    };
    BinaryMask::from_pixels(map.width(), map.height(), pixels).expect("one pixel per map value")
}

/// Intersection and union counts of one (image, class) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IouPair {
    /// The class.
    pub class_index: usize,
    /// Pixels in both the prediction and the ground truth.
    pub intersection: u64,
    /// Pixels in either.
    pub union: u64,
}

impl IouPair {
    /// `intersection / union`, `None` when both are empty.
    pub fn iou(&self) -> Option<f64> {
        (self.union > 0).then(|| self.intersection as f64 / self.union as f64)
    }
}

/// Counts the overlap of a prediction with a ground-truth mask, skipping `ignore`d
/// pixels. All masks must have the same size.
pub fn overlap(
    class_index: usize,
    prediction: &BinaryMask,
    truth: &BinaryMask,
    ignore: Option<&BinaryMask>,
) -> Result<IouPair> {
    let same_size =
        |mask: &BinaryMask| mask.width() == truth.width() && mask.height() == truth.height();
    ensure!(
        same_size(prediction) && ignore.is_none_or(same_size),
        "prediction {}x{} and ground truth {}x{} (and the ignore mask) must have the same size",
        prediction.width(),
        prediction.height(),
        truth.width(),
        truth.height()
    );
    let mut intersection = 0;
    let mut union = 0;
    for (index, (&predicted, &actual)) in prediction.pixels().iter().zip(truth.pixels()).enumerate()
    {
        if ignore.is_some_and(|ignore| ignore.pixels()[index]) {
            continue;
        }
        intersection += (predicted && actual) as u64;
        union += (predicted || actual) as u64;
    }
    Ok(IouPair {
        class_index,
        intersection,
        union,
    })
}

/// Scores a saliency map (any size) against a class mask: resize to the mask size,
/// binarise, count the overlap outside `ignore`.
pub fn score_map(
    map: &Heatmap,
    class_index: usize,
    truth: &BinaryMask,
    ignore: Option<&BinaryMask>,
    threshold: Threshold,
) -> Result<IouPair> {
    let resized = map.resize_bilinear(truth.width(), truth.height());
    let prediction = binarize(&resized, threshold);
    overlap(class_index, &prediction, truth, ignore)
}

/// Scores every present class of `sample` with the map `map_for_class(class_index)`
/// gives, ignoring the sample's ignore mask.
pub fn score_sample<F>(
    sample: &Sample,
    threshold: Threshold,
    mut map_for_class: F,
) -> Result<Vec<IouPair>>
where
    F: FnMut(usize) -> Result<Heatmap>,
{
    sample
        .present
        .iter()
        .map(|truth| {
            let map = map_for_class(truth.class_index)?;
            score_map(
                &map,
                truth.class_index,
                &truth.mask,
                sample.ignore.as_ref(),
                threshold,
            )
        })
        .collect()
}

/// Summed intersections and unions of one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassOverlap {
    /// Σ intersection.
    pub intersection: u64,
    /// Σ union.
    pub union: u64,
    /// Number of pairs.
    pub pairs: u64,
}

impl ClassOverlap {
    /// `ΣI / ΣU`, `None` when the union is empty.
    pub fn iou(&self) -> Option<f64> {
        (self.union > 0).then(|| self.intersection as f64 / self.union as f64)
    }
}

/// Per-class sums of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiouScores {
    /// Per class.
    pub per_class: Vec<ClassOverlap>,
}

impl MiouScores {
    /// Empty sums for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            per_class: vec![ClassOverlap::default(); num_classes],
        }
    }

    /// Sums `pairs`; errors on a class index out of range.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = &'a IouPair>,
        num_classes: usize,
    ) -> Result<Self> {
        let mut scores = Self::new(num_classes);
        for pair in pairs {
            scores.add(pair)?;
        }
        Ok(scores)
    }

    /// Adds one pair; errors on a class index out of range.
    pub fn add(&mut self, pair: &IouPair) -> Result<()> {
        let classes = self.per_class.len();
        let class = self.per_class.get_mut(pair.class_index).ok_or_else(|| {
            anyhow::anyhow!(
                "class index {} out of range ({classes} classes)",
                pair.class_index
            )
        })?;
        class.intersection += pair.intersection;
        class.union += pair.union;
        class.pairs += 1;
        Ok(())
    }

    /// Mean of the per-class IoUs over classes with a non-empty union.
    pub fn miou(&self) -> Option<f64> {
        let ious: Vec<f64> = self
            .per_class
            .iter()
            .filter_map(ClassOverlap::iou)
            .collect();
        (!ious.is_empty()).then(|| ious.iter().sum::<f64>() / ious.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::eval::dataset::{ClassTruth, LabelMap};

    fn mask(width: usize, height: usize, rows: &[&str]) -> BinaryMask {
        let pixels = rows
            .iter()
            .flat_map(|row| row.chars().map(|c| c == '#'))
            .collect();
        BinaryMask::from_pixels(width, height, pixels).unwrap()
    }

    #[test]
    fn thresholds() {
        let values = [-2.0, 0.0, 1.0, 2.0, 6.0];
        assert_eq!(Threshold::MeanOfPositive.value(&values), Some(3.0));
        assert_eq!(Threshold::FractionOfMax(0.5).value(&values), Some(3.0));
        assert_eq!(Threshold::MeanOfPositive.value(&[-1.0, 0.0]), None);
        let map = Heatmap::new(5, 1, values.to_vec()).unwrap();
        assert_eq!(
            binarize(&map, Threshold::MeanOfPositive).pixels(),
            &[false, false, false, false, true]
        );
        assert_eq!(
            binarize(&map, Threshold::FractionOfMax(0.0)).pixels(),
            &[false, false, true, true, true]
        );
        let negative = Heatmap::new(2, 1, vec![-1.0, -3.0]).unwrap();
        assert!(binarize(&negative, Threshold::MeanOfPositive).is_empty());
    }

    /// A 4×2 map, positive mean (4 + 2 + 6 + 4) / 4 = 4 → foreground {4, 6, 4}; the
    /// truth covers the left half; one truth pixel is void.
    #[test]
    fn hand_computed_iou_with_void() {
        let map = Heatmap::new(4, 2, vec![4.0, 2.0, -1.0, 0.0, 6.0, -5.0, 0.0, 4.0]).unwrap();
        let truth = mask(4, 2, &["##..", "##.."]);
        let prediction = binarize(&map, Threshold::MeanOfPositive);
        assert_eq!(prediction, mask(4, 2, &["#...", "#..#"]));
        // I = {(0,0), (0,1)} = 2, U = {(0,0), (1,0), (0,1), (1,1), (3,1)} = 5.
        let pair = score_map(&map, 3, &truth, None, Threshold::MeanOfPositive).unwrap();
        assert_eq!((pair.intersection, pair.union), (2, 5));
        assert_eq!(pair.iou(), Some(0.4));
        // Making (1, 0) void removes it from the union: 2 / 4.
        let void = mask(4, 2, &[".#..", "...."]);
        let pair = score_map(&map, 3, &truth, Some(&void), Threshold::MeanOfPositive).unwrap();
        assert_eq!((pair.intersection, pair.union), (2, 4));
        assert!(score_map(
            &map,
            3,
            &truth,
            Some(&BinaryMask::new(2, 2)),
            Threshold::MeanOfPositive
        )
        .is_err());
    }

    #[test]
    fn map_is_resized_to_the_mask() {
        // 2×1 map [1, 0] upsampled to 4×1: [1, 0.75, 0.25, 0]; mean of positives 2/3
        // → foreground columns 0 and 1; truth = column 0 → IoU 1/2.
        let map = Heatmap::new(2, 1, vec![1.0, 0.0]).unwrap();
        let truth = mask(4, 1, &["#..."]);
        let pair = score_map(&map, 0, &truth, None, Threshold::MeanOfPositive).unwrap();
        assert_eq!((pair.intersection, pair.union), (1, 2));
    }

    #[test]
    fn aggregation_sums_per_class_then_averages() {
        let pairs = [
            IouPair {
                class_index: 0,
                intersection: 1,
                union: 2,
            },
            IouPair {
                class_index: 0,
                intersection: 3,
                union: 6,
            },
            IouPair {
                class_index: 2,
                intersection: 1,
                union: 1,
            },
            IouPair {
                class_index: 1,
                intersection: 0,
                union: 0,
            },
        ];
        let scores = MiouScores::from_pairs(&pairs, 3).unwrap();
        assert_eq!(
            scores.per_class[0],
            ClassOverlap {
                intersection: 4,
                union: 8,
                pairs: 2
            }
        );
        // Class 0: 4/8, class 2: 1/1, class 1 (empty union) left out → 0.75.
        assert_eq!(scores.miou(), Some(0.75));
        assert_eq!(pairs[3].iou(), None);
        assert!(MiouScores::from_pairs(&pairs, 2).is_err());
        assert_eq!(MiouScores::new(2).miou(), None);
    }

    #[test]
    fn score_sample_uses_the_segmentation_ground_truth() {
        let labels = LabelMap::new(3, 1, vec![1, 255, 0]).unwrap();
        let sample = Sample {
            id: "x".to_owned(),
            image_path: PathBuf::from("x.jpg"),
            width: 3,
            height: 1,
            present: vec![ClassTruth {
                class_index: 0,
                mask: labels.class_mask(0),
                all_difficult: false,
            }],
            ignore: Some(labels.void_mask()),
        };
        let pairs = score_sample(&sample, Threshold::FractionOfMax(0.5), |class_index| {
            assert_eq!(class_index, 0);
            Heatmap::new(3, 1, vec![1.0, 1.0, 1.0])
        })
        .unwrap();
        // The prediction covers all 3 pixels; the void one is ignored: I = 1, U = 2.
        assert_eq!(
            pairs,
            vec![IouPair {
                class_index: 0,
                intersection: 1,
                union: 2
            }]
        );
    }
}
