//! Types shared by the dataset readers and the metrics: per-image samples with one
//! ground-truth mask per present class, binary masks, label maps, and class-name lists.

use std::path::PathBuf;

use anyhow::{ensure, Result};

/// The 20 PASCAL VOC classes in the standard order (class index = position).
pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// The 80 COCO 2014 category names sorted by category id (class index = position), as
/// they appear in `instances_val2014.json`. The COCO reader takes its names from the
/// annotation file itself; this list is for callers that need them without one.
pub const COCO_CLASSES: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// A boolean mask over an image, row-major: pixel `(x, y)` is `pixels[y * width + x]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryMask {
    width: usize,
    height: usize,
    pixels: Vec<bool>,
}

impl BinaryMask {
    /// An all-false mask.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![false; width * height],
        }
    }

    /// Wraps row-major `pixels`; errors when their number is not `width * height`.
    pub fn from_pixels(width: usize, height: usize, pixels: Vec<bool>) -> Result<Self> {
        ensure!(
            pixels.len() == width * height,
            "mask of {width}x{height} needs {} pixels, got {}",
            width * height,
            pixels.len()
        );
        Ok(Self {
            width,
            height,
            pixels,
        })
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixels, row-major.
    pub fn pixels(&self) -> &[bool] {
        &self.pixels
    }

    /// Pixel `(x, y)`; `false` outside the mask, so neighbourhood tests need no clipping.
    pub fn get(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.height && self.pixels[y * self.width + x]
    }

    /// Sets pixel `(x, y)` (ignored outside the mask).
    pub fn set(&mut self, x: usize, y: usize, value: bool) {
        if x < self.width && y < self.height {
            self.pixels[y * self.width + x] = value;
        }
    }

    /// Sets every pixel of the inclusive rectangle `[x0, x1] × [y0, y1]`, clipped to the
    /// mask.
    pub fn fill_rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize) {
        if self.width == 0 || self.height == 0 {
            return;
        }
        let x1 = x1.min(self.width - 1);
        let y1 = y1.min(self.height - 1);
        if x0 > x1 || y0 > y1 {
            return;
        }
        for y in y0..=y1 {
            self.pixels[y * self.width + x0..=y * self.width + x1].fill(true);
        }
    }

    /// `self |= other`; errors when the sizes differ.
    pub fn union_with(&mut self, other: &BinaryMask) -> Result<()> {
        ensure!(
            self.width == other.width && self.height == other.height,
            "cannot merge a {}x{} mask into a {}x{} one",
            other.width,
            other.height,
            self.width,
            self.height
        );
        for (pixel, &set) in self.pixels.iter_mut().zip(&other.pixels) {
            *pixel |= set;
        }
        Ok(())
    }

    /// Number of set pixels.
    pub fn count(&self) -> usize {
        self.pixels.iter().filter(|&&set| set).count()
    }

    /// Whether no pixel is set.
    pub fn is_empty(&self) -> bool {
        !self.pixels.contains(&true)
    }
}

/// A per-pixel class label image, as in VOC's `SegmentationClass` PNGs: 0 is background,
/// `class index + 1` is a class, [`LabelMap::VOID`] is a pixel to ignore (object
/// boundaries and ambiguous regions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    width: usize,
    height: usize,
    labels: Vec<u8>,
}

impl LabelMap {
    /// The label of ignored ("void") pixels.
    pub const VOID: u8 = 255;
    /// The label of background pixels.
    pub const BACKGROUND: u8 = 0;

    /// Wraps row-major `labels`; errors when their number is not `width * height`.
    pub fn new(width: usize, height: usize, labels: Vec<u8>) -> Result<Self> {
        ensure!(
            labels.len() == width * height,
            "label map of {width}x{height} needs {} labels, got {}",
            width * height,
            labels.len()
        );
        Ok(Self {
            width,
            height,
            labels,
        })
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The labels, row-major.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Pixels labelled with class `class_index` (label `class_index + 1`).
    pub fn class_mask(&self, class_index: usize) -> BinaryMask {
        let pixels = self
            .labels
            .iter()
            .map(|&label| label != Self::VOID && label as usize == class_index + 1)
            .collect();
        BinaryMask {
            width: self.width,
            height: self.height,
            pixels,
        }
    }

    /// Void pixels.
    pub fn void_mask(&self) -> BinaryMask {
        let pixels = self
            .labels
            .iter()
            .map(|&label| label == Self::VOID)
            .collect();
        BinaryMask {
            width: self.width,
            height: self.height,
            pixels,
        }
    }

    /// Indices of the classes that label at least one pixel, ascending (background and
    /// void excluded).
    pub fn present_classes(&self) -> Vec<usize> {
        let mut seen = [false; 256];
        for &label in &self.labels {
            seen[label as usize] = true;
        }
        (1..Self::VOID as usize)
            .filter(|&label| seen[label])
            .map(|label| label - 1)
            .collect()
    }
}

/// The ground truth of one class present in an image.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassTruth {
    /// Index into the dataset's class list.
    pub class_index: usize,
    /// Where the class is, at the original image size: the union of its boxes (VOC
    /// detection), of its instance masks (COCO), or its segmentation pixels (VOC
    /// `SegmentationClass`).
    pub mask: BinaryMask,
    /// VOC: every box of this class is marked `difficult`, so the Pointing Game skips
    /// the pair. Always `false` for COCO and for segmentation ground truth.
    pub all_difficult: bool,
}

/// One image of a dataset with the ground truth of each class present in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The image id: the file stem (`000001` for VOC, `COCO_val2014_000000262148` for
    /// COCO), which is also the key of the EBP difficult-flag tables.
    pub id: String,
    /// Path of the image file.
    pub image_path: PathBuf,
    /// Original image width in pixels.
    pub width: usize,
    /// Original image height in pixels.
    pub height: usize,
    /// Present classes, by ascending class index, each listed once.
    pub present: Vec<ClassTruth>,
    /// Pixels excluded from mask metrics for every class (VOC segmentation "void"), if
    /// the ground truth has any.
    pub ignore: Option<BinaryMask>,
}

impl Sample {
    /// The ground truth of `class_index`, if that class is present.
    pub fn class(&self, class_index: usize) -> Option<&ClassTruth> {
        self.present
            .iter()
            .find(|truth| truth.class_index == class_index)
    }

    /// Indices of the present classes, ascending.
    pub fn class_indices(&self) -> Vec<usize> {
        self.present.iter().map(|truth| truth.class_index).collect()
    }
}

/// A dataset whose images can be enumerated and loaded one at a time (ground-truth masks
/// are built on demand, so a 40k-image COCO split never holds all masks at once).
pub trait Dataset: Send + Sync {
    /// Class names in class-index order.
    fn class_names(&self) -> &[String];
    /// Image ids in evaluation order.
    fn ids(&self) -> &[String];
    /// Loads the `index`-th image's ground truth (the image pixels are not read).
    fn sample(&self, index: usize) -> Result<Sample>;

    /// Number of images.
    fn len(&self) -> usize {
        self.ids().len()
    }

    /// Whether there are no images.
    fn is_empty(&self) -> bool {
        self.ids().is_empty()
    }

    /// Number of classes.
    fn num_classes(&self) -> usize {
        self.class_names().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_lists_have_the_standard_sizes() {
        assert_eq!(VOC_CLASSES.len(), 20);
        assert_eq!(COCO_CLASSES.len(), 80);
        assert_eq!(VOC_CLASSES[14], "person");
        assert_eq!(COCO_CLASSES[0], "person");
    }

    #[test]
    fn fill_rect_clips_and_counts() {
        let mut mask = BinaryMask::new(4, 3);
        mask.fill_rect(2, 1, 10, 10);
        assert_eq!(mask.count(), 4);
        assert!(mask.get(3, 2) && !mask.get(1, 1) && !mask.get(4, 2));
        mask.fill_rect(3, 0, 2, 0); // empty: x0 > x1
        assert_eq!(mask.count(), 4);
        let mut other = BinaryMask::new(4, 3);
        other.set(0, 0, true);
        mask.union_with(&other).unwrap();
        assert_eq!(mask.count(), 5);
        assert!(mask.union_with(&BinaryMask::new(3, 4)).is_err());
    }

    #[test]
    fn label_map_masks() {
        let labels = LabelMap::new(3, 2, vec![0, 1, 255, 3, 3, 1]).unwrap();
        assert_eq!(labels.present_classes(), vec![0, 2]);
        assert_eq!(
            labels.class_mask(2).pixels(),
            &[false, false, false, true, true, false]
        );
        assert_eq!(labels.void_mask().count(), 1);
        assert!(LabelMap::new(3, 2, vec![0; 5]).is_err());
    }
}
