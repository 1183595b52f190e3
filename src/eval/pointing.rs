//! The Pointing Game (Zhang et al., "Top-down neural attention by Excitation Backprop")
//! with TorchRay's protocol:
//!
//! 1. For each image and each class present in it, the saliency map for that class is
//!    resized bilinearly to the original image size ([`Heatmap::resize_bilinear`]) and
//!    its first maximum in row-major order is the point.
//! 2. The pair is a hit when some ground-truth pixel `(x, y)` of the class satisfies
//!    `(x − px)² + (y − py)² < tolerance²` (strict; tolerance 15 px by default).
//! 3. VOC pairs whose boxes are all `difficult` are skipped entirely.
//! 4. Accuracy is the mean over classes of `hits / (hits + misses)`. Classes without any
//!    pair are left out of the mean (TorchRay averages all classes, counting an empty one
//!    as 0; on VOC07 test and COCO val2014 every class has pairs, so the two agree).
//! 5. The "difficult" score is the same over the pairs flagged 1 in the EBP table
//!    ([`DifficultFlags`]).
//!
//! The center baseline points at `(width / 2, height / 2)` in real coordinates, as
//! TorchRay does (so a 375-pixel-high image is pointed at row 187.5).
//!
//! Per-pair outcomes ([`PointingPair`]) are plain serialisable data, so runs can be logged
//! and re-aggregated ([`PointingScores::from_pairs`]).

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use super::dataset::{BinaryMask, ClassTruth, Sample};
use super::difficult::DifficultFlags;
use super::map::Heatmap;

/// TorchRay's default tolerance, in pixels of the original image.
pub const DEFAULT_TOLERANCE: f64 = 15.0;

/// A point in original-image pixel coordinates (column `x`, row `y`); pixel `(i, j)` is
/// at `(i, j)` exactly.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Column.
    pub x: f64,
    /// Row.
    pub y: f64,
}

/// The outcome of one (image, class) pair.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointingPair {
    /// The class.
    pub class_index: usize,
    /// Where the method pointed; `None` when the map had no usable maximum (all NaN),
    /// which counts as a miss.
    pub point: Option<Point>,
    /// Whether the point is within the tolerance of the class's ground truth.
    pub hit: bool,
    /// The pair's EBP difficult flag; `None` when no table was given or the table has no
    /// row for the image. Only `Some(true)` pairs enter the "difficult" score.
    pub difficult: Option<bool>,
}

/// The scorer, holding the tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointingGame {
    /// Hit radius in pixels (strict: a ground-truth pixel exactly this far is a miss).
    pub tolerance: f64,
}

impl Default for PointingGame {
    fn default() -> Self {
        Self {
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

impl PointingGame {
    /// A scorer with the given tolerance in pixels.
    pub fn new(tolerance: f64) -> Self {
        Self { tolerance }
    }

    /// The classes of `sample` that are scored: all present classes except VOC classes
    /// whose boxes are all difficult. The caller needs maps for exactly these.
    pub fn targets(sample: &Sample) -> impl Iterator<Item = &ClassTruth> {
        sample.present.iter().filter(|truth| !truth.all_difficult)
    }

    /// Scores a given point against one class's ground truth.
    pub fn score_point(
        &self,
        truth: &ClassTruth,
        point: Option<Point>,
        difficult: Option<bool>,
    ) -> PointingPair {
        PointingPair {
            class_index: truth.class_index,
            point,
            hit: point.is_some_and(|point| is_hit(&truth.mask, point, self.tolerance)),
            difficult,
        }
    }

    /// Scores a saliency map (any size) for one class of `sample`: resize to the image
    /// size, point at the maximum.
    pub fn score_map(
        &self,
        sample: &Sample,
        truth: &ClassTruth,
        map: &Heatmap,
        difficult: Option<bool>,
    ) -> PointingPair {
        let point = saliency_point(map, sample.width, sample.height);
        self.score_point(truth, point, difficult)
    }

    /// Scores every target class of `sample` ([`PointingGame::targets`]) with the point
    /// `point_for_class(class_index)` gives (e.g. from a map via [`saliency_point`]).
    /// Difficult flags come from `flags` when given.
    pub fn score_sample<F>(
        &self,
        sample: &Sample,
        flags: Option<&DifficultFlags>,
        mut point_for_class: F,
    ) -> Result<Vec<PointingPair>>
    where
        F: FnMut(usize) -> Result<Option<Point>>,
    {
        Self::targets(sample)
            .map(|truth| {
                let point = point_for_class(truth.class_index)?;
                let difficult = flags.and_then(|f| f.is_difficult(&sample.id, truth.class_index));
                Ok(self.score_point(truth, point, difficult))
            })
            .collect()
    }

    /// The center baseline for every target class of `sample`.
    pub fn score_center(
        &self,
        sample: &Sample,
        flags: Option<&DifficultFlags>,
    ) -> Vec<PointingPair> {
        let center = center_point(sample.width, sample.height);
        Self::targets(sample)
            .map(|truth| {
                let difficult = flags.and_then(|f| f.is_difficult(&sample.id, truth.class_index));
                self.score_point(truth, Some(center), difficult)
            })
            .collect()
    }
}

/// The point a saliency map designates on a `width × height` image: the first maximum
/// (row-major) of the map resized bilinearly to that size.
pub fn saliency_point(map: &Heatmap, width: usize, height: usize) -> Option<Point> {
    map.resize_bilinear(width, height)
        .argmax()
        .map(|(x, y)| Point {
            x: x as f64,
            y: y as f64,
        })
}

/// The center baseline's point, `(width / 2, height / 2)`.
pub fn center_point(width: usize, height: usize) -> Point {
    Point {
        x: width as f64 / 2.0,
        y: height as f64 / 2.0,
    }
}

/// Whether some set pixel `(x, y)` of `mask` has `(x − px)² + (y − py)² < tolerance²`.
pub fn is_hit(mask: &BinaryMask, point: Point, tolerance: f64) -> bool {
    if !(point.x.is_finite() && point.y.is_finite() && tolerance > 0.0) {
        return false;
    }
    let limit = tolerance * tolerance;
    // Only pixels in the bounding square of the disc can qualify.
    let first = |centre: f64| (centre - tolerance).floor().max(0.0) as usize;
    let last = |centre: f64, size: usize| {
        let end = (centre + tolerance).ceil();
        if end < 0.0 {
            None
        } else {
            Some((end as usize).min(size.saturating_sub(1)))
        }
    };
    let (Some(last_x), Some(last_y)) = (last(point.x, mask.width()), last(point.y, mask.height()))
    else {
        return false;
    };
    for y in first(point.y)..=last_y {
        let dy = y as f64 - point.y;
        for x in first(point.x)..=last_x {
            let dx = x as f64 - point.x;
            if dx * dx + dy * dy < limit && mask.get(x, y) {
                return true;
            }
        }
    }
    false
}

/// Hits and misses of one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Pairs that hit.
    pub hits: u64,
    /// Pairs that missed.
    pub misses: u64,
}

impl Tally {
    /// `hits / (hits + misses)`, `None` without pairs.
    pub fn accuracy(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }

    fn add(&mut self, hit: bool) {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }
}

/// Per-class tallies of a run, for all pairs and for the difficult subset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointingScores {
    /// Per class, every scored pair.
    pub all: Vec<Tally>,
    /// Per class, the pairs flagged difficult.
    pub difficult: Vec<Tally>,
}

impl PointingScores {
    /// Empty tallies for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            all: vec![Tally::default(); num_classes],
            difficult: vec![Tally::default(); num_classes],
        }
    }

    /// Tallies `pairs`; errors on a class index out of range.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = &'a PointingPair>,
        num_classes: usize,
    ) -> Result<Self> {
        let mut scores = Self::new(num_classes);
        for pair in pairs {
            scores.add(pair)?;
        }
        Ok(scores)
    }

    /// Adds one pair; errors on a class index out of range.
    pub fn add(&mut self, pair: &PointingPair) -> Result<()> {
        ensure!(
            pair.class_index < self.all.len(),
            "class index {} out of range ({} classes)",
            pair.class_index,
            self.all.len()
        );
        self.all[pair.class_index].add(pair.hit);
        if pair.difficult == Some(true) {
            self.difficult[pair.class_index].add(pair.hit);
        }
        Ok(())
    }

    /// Mean per-class accuracy over all pairs (`None` without pairs).
    pub fn accuracy_all(&self) -> Option<f64> {
        mean_class_accuracy(&self.all)
    }

    /// Mean per-class accuracy over the difficult subset (`None` without such pairs).
    pub fn accuracy_difficult(&self) -> Option<f64> {
        mean_class_accuracy(&self.difficult)
    }
}

/// The mean of the per-class accuracies of the classes that have pairs.
pub fn mean_class_accuracy(tallies: &[Tally]) -> Option<f64> {
    let accuracies: Vec<f64> = tallies.iter().filter_map(Tally::accuracy).collect();
    (!accuracies.is_empty()).then(|| accuracies.iter().sum::<f64>() / accuracies.len() as f64)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn truth(class_index: usize, mask: BinaryMask, all_difficult: bool) -> ClassTruth {
        ClassTruth {
            class_index,
            mask,
            all_difficult,
        }
    }

    fn single_pixel(width: usize, height: usize, x: usize, y: usize) -> BinaryMask {
        let mut mask = BinaryMask::new(width, height);
        mask.set(x, y, true);
        mask
    }

    fn sample(width: usize, height: usize, present: Vec<ClassTruth>) -> Sample {
        Sample {
            id: "img".to_owned(),
            image_path: PathBuf::from("img.jpg"),
            width,
            height,
            present,
            ignore: None,
        }
    }

    fn pair(class_index: usize, hit: bool, difficult: Option<bool>) -> PointingPair {
        PointingPair {
            class_index,
            point: None,
            hit,
            difficult,
        }
    }

    /// A map peaking at (x, y) on a `width × height` grid (no resize needed).
    fn peak_map(width: usize, height: usize, x: usize, y: usize) -> Heatmap {
        Heatmap::from_fn(
            width,
            height,
            |i, j| if (i, j) == (x, y) { 1.0 } else { 0.0 },
        )
    }

    #[test]
    fn hit_at_14_pixels_miss_at_exactly_15() {
        let game = PointingGame::default();
        let class = truth(0, single_pixel(60, 60, 44, 10), false);
        let scene = sample(60, 60, vec![class.clone()]);
        // The map points at (30, 10): the only ground-truth pixel is 14 px away.
        let near = game.score_map(&scene, &class, &peak_map(60, 60, 30, 10), None);
        assert_eq!(near.point, Some(Point { x: 30.0, y: 10.0 }));
        assert!(near.hit);
        // At (29, 10) it is exactly 15 px away: a miss (the test is strict).
        let far = game.score_map(&scene, &class, &peak_map(60, 60, 29, 10), None);
        assert!(!far.hit);
        // Diagonal: (9, 12) from (0, 0) is exactly 15 px (9² + 12² = 225).
        let diagonal = truth(0, single_pixel(30, 30, 9, 12), false);
        assert!(
            !game
                .score_point(&diagonal, Some(Point { x: 0.0, y: 0.0 }), None)
                .hit
        );
        assert!(
            game.score_point(&diagonal, Some(Point { x: 1.0, y: 0.0 }), None)
                .hit
        );
        // A larger tolerance turns the 15-px miss into a hit.
        assert!(
            PointingGame::new(15.5)
                .score_point(&diagonal, Some(Point { x: 0.0, y: 0.0 }), None)
                .hit
        );
        // No point: a miss.
        assert!(!game.score_point(&class, None, None).hit);
    }

    #[test]
    fn map_is_resized_to_the_image_before_the_argmax() {
        // A 2×2 map whose maximum is the bottom-right cell points, on a 40×20 image, at
        // the first pixel where the bilinear upsampling reaches the corner value:
        // column x samples the source at (x + 0.5)/20 − 0.5, which is ≥ 1 from x = 30.
        let map = Heatmap::new(2, 2, vec![0.0, 0.0, 0.0, 1.0]).unwrap();
        assert_eq!(
            saliency_point(&map, 40, 20),
            Some(Point { x: 30.0, y: 15.0 })
        );
        let all_nan = Heatmap::new(1, 1, vec![f32::NAN]).unwrap();
        assert_eq!(saliency_point(&all_nan, 10, 10), None);
    }

    #[test]
    fn hit_test_near_borders_and_outside() {
        let mask = single_pixel(10, 10, 0, 0);
        assert!(is_hit(&mask, Point { x: -5.0, y: -5.0 }, 15.0));
        assert!(!is_hit(&mask, Point { x: -20.0, y: 0.0 }, 15.0));
        assert!(!is_hit(&mask, Point { x: 0.0, y: 100.0 }, 15.0));
        assert!(!is_hit(
            &mask,
            Point {
                x: f64::NAN,
                y: 0.0
            },
            15.0
        ));
        assert!(!is_hit(
            &BinaryMask::new(10, 10),
            Point { x: 5.0, y: 5.0 },
            15.0
        ));
    }

    #[test]
    fn all_difficult_voc_pairs_are_skipped() {
        let game = PointingGame::default();
        let scene = sample(
            20,
            20,
            vec![
                truth(1, single_pixel(20, 20, 5, 5), false),
                truth(4, single_pixel(20, 20, 5, 5), true),
            ],
        );
        let mut asked = Vec::new();
        let pairs = game
            .score_sample(&scene, None, |class_index| {
                asked.push(class_index);
                Ok(Some(Point { x: 5.0, y: 5.0 }))
            })
            .unwrap();
        assert_eq!(asked, vec![1]);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].class_index, 1);
        assert!(pairs[0].hit);
        assert_eq!(game.score_center(&scene, None).len(), 1);
        // An error from the map producer is passed on.
        assert!(game
            .score_sample(&scene, None, |_| anyhow::bail!("GPU lost"))
            .is_err());
    }

    #[test]
    fn accuracy_is_the_mean_of_per_class_accuracies() {
        // Class 0: 1/1, class 2: 1/3, class 1: no pairs (left out) → (1 + 1/3) / 2.
        let pairs = [
            pair(0, true, None),
            pair(2, true, None),
            pair(2, false, None),
            pair(2, false, None),
        ];
        let scores = PointingScores::from_pairs(&pairs, 3).unwrap();
        assert_eq!(scores.all[2], Tally { hits: 1, misses: 2 });
        let accuracy = scores.accuracy_all().unwrap();
        assert!((accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(format!("{:.1}", 100.0 * accuracy), "66.7");
        assert_eq!(scores.accuracy_difficult(), None);
        assert!(PointingScores::from_pairs(&[pair(3, true, None)], 3).is_err());
        assert_eq!(PointingScores::new(3).accuracy_all(), None);
    }

    #[test]
    fn difficult_subset_takes_only_flagged_pairs() {
        let pairs = [
            pair(0, true, Some(false)),
            pair(0, false, Some(true)),
            pair(1, true, Some(true)),
            pair(1, true, None),
            pair(1, false, Some(false)),
        ];
        let scores = PointingScores::from_pairs(&pairs, 2).unwrap();
        // difficult: class 0 0/1, class 1 1/1 → 50 %; all: class 0 1/2, class 1 2/3.
        assert_eq!(scores.accuracy_difficult(), Some(0.5));
        let all = scores.accuracy_all().unwrap();
        assert!((all - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn difficult_flags_are_looked_up_per_pair() {
        let flags =
            DifficultFlags::parse("img 0 1 0\nother 1 1 1\n", 3, std::path::Path::new("t.txt"))
                .unwrap();
        let game = PointingGame::default();
        let scene = sample(
            10,
            10,
            vec![
                truth(0, single_pixel(10, 10, 5, 5), false),
                truth(1, single_pixel(10, 10, 5, 5), false),
            ],
        );
        let pairs = game.score_center(&scene, Some(&flags));
        assert_eq!(pairs[0].difficult, Some(false));
        assert_eq!(pairs[1].difficult, Some(true));
        let unlisted = Sample {
            id: "unlisted".to_owned(),
            ..scene
        };
        assert!(game
            .score_center(&unlisted, Some(&flags))
            .iter()
            .all(|p| p.difficult.is_none()));
    }

    #[test]
    fn center_baseline_points_at_the_real_centre() {
        let game = PointingGame::default();
        assert_eq!(center_point(500, 375), Point { x: 250.0, y: 187.5 });
        // Ground truth 15 px right of the centre column of a 100×51 image: the centre
        // is (50, 25.5), so pixel (65, 25) is √(15² + 0.5²) away → miss; (64, 25) hits.
        let far = truth(0, single_pixel(100, 51, 65, 25), false);
        let near = truth(1, single_pixel(100, 51, 64, 25), false);
        let scene = sample(100, 51, vec![far, near]);
        let pairs = game.score_center(&scene, None);
        assert_eq!(pairs.len(), 2);
        assert!(pairs
            .iter()
            .all(|p| p.point == Some(Point { x: 50.0, y: 25.5 })));
        assert!(!pairs[0].hit);
        assert!(pairs[1].hit);
    }

    #[test]
    fn pairs_serialise_as_plain_data() {
        let pair = PointingPair {
            class_index: 3,
            point: Some(Point { x: 1.0, y: 2.5 }),
            hit: true,
            difficult: Some(false),
        };
        let json = serde_json::to_string(&pair).unwrap();
        assert_eq!(
            json,
            r#"{"class_index":3,"point":{"x":1.0,"y":2.5},"hit":true,"difficult":false}"#
        );
        assert_eq!(serde_json::from_str::<PointingPair>(&json).unwrap(), pair);
    }
}
