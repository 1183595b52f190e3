//! Image loading and torchvision-style preprocessing: resize the shorter side, centre
//! crop, RGB, ImageNet mean/std.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use image::{imageops::FilterType, DynamicImage, ImageDecoder, RgbImage};

use crate::tensor::Tensor;

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Largest decoded image accepted (pixels per side); bigger files are refused rather
/// than exhausting memory.
pub const MAX_SIDE: u32 = 16384;

/// A preprocessed image: the normalised tensor `[3, size, size]` and the cropped RGB
/// picture it came from (for overlays).
pub struct Prepared {
    pub tensor: Tensor,
    pub cropped: RgbImage,
}

/// Decodes an image file (PNG or JPEG; grayscale, RGBA, palette and 16-bit inputs are
/// converted to 8-bit RGB).
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    if path.is_dir() {
        bail!("{}: is a directory, not an image", path.display());
    }
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let bad = |e: image::ImageError| anyhow!("{}: not a readable image: {e}", path.display());
    let mut decoder = reader.into_decoder().map_err(bad)?;
    // Photos from cameras and phones store their rotation in EXIF; honour it.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// torchvision's `Resize(resize) → CenterCrop(crop) → ToTensor → Normalize`.
pub fn preprocess(img: &DynamicImage, resize: u32, crop: u32) -> Prepared {
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let scale = resize as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(crop),
        ((h as f64 * scale).round() as u32).max(crop),
    );
    let resized = image::imageops::resize(&rgb, nw, nh, FilterType::Triangle);
    let (x0, y0) = ((nw - crop) / 2, (nh - crop) / 2);
    let cropped = image::imageops::crop_imm(&resized, x0, y0, crop, crop).to_image();
    let plane = (crop * crop) as usize;
    let mut data = vec![0.0f32; 3 * plane];
    for (i, px) in cropped.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (px[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    Prepared {
        tensor: Tensor::new(vec![3, crop as usize, crop as usize], data),
        cropped,
    }
}

/// Pixel normalisation of a classifier's training pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Normalisation {
    /// RGB in [0, 1], minus the ImageNet mean, divided by its std (torchvision).
    Torchvision,
    /// BGR in [0, 255] minus [103.939, 116.779, 123.68] (Caffe models, as TorchRay's
    /// VGG16/ResNet50 for VOC and COCO).
    Caffe,
}

/// Caffe's BGR means on 0–255.
pub const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];

/// The whole image (no crop, aspect kept), its shorter side resized to `shorter` if
/// given, normalised: `[3, H, W]` in the network's channel order. Evaluation protocols
/// score the map over the whole image, so nothing may be cropped away.
pub fn preprocess_whole(img: &DynamicImage, shorter: Option<u32>, norm: Normalisation) -> Tensor {
    let mut rgb = img.to_rgb8();
    if let Some(s) = shorter {
        let (w, h) = rgb.dimensions();
        if w.min(h) != s {
            let scale = s as f64 / w.min(h) as f64;
            let nw = ((w as f64 * scale).round() as u32).max(1);
            let nh = ((h as f64 * scale).round() as u32).max(1);
            rgb = image::imageops::resize(&rgb, nw, nh, FilterType::Triangle);
        }
    }
    let (w, h) = rgb.dimensions();
    let plane = (w * h) as usize;
    let mut data = vec![0.0f32; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = match norm {
                Normalisation::Torchvision => {
                    (px[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
                }
                Normalisation::Caffe => px[2 - c] as f32 - CAFFE_MEAN_BGR[c],
            };
        }
    }
    Tensor::new(vec![3, h as usize, w as usize], data)
}
