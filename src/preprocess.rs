//! Image loading and torchvision-style preprocessing: resize the shorter side, centre
//! crop, RGB, ImageNet mean/std.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use image::{imageops::FilterType, ImageDecoder, RgbImage};

/// A decoded image, as [`load_image`] returns it and [`preprocess_for`] takes it (callers
/// with pixels in memory build one without depending on `image` themselves).
pub use image::DynamicImage;

use crate::tensor::Tensor;

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Largest image accepted, in pixels per side: a file claiming more (a decompression
/// bomb, or a header that lies) is refused before any pixel buffer is allocated.
pub const MAX_SIDE: u32 = 16384;

/// Largest decoded pixel buffer accepted (bytes), whatever the side lengths.
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// A preprocessed image: the normalised tensor `[3, size, size]` and the cropped RGB
/// picture it came from (for overlays).
pub struct Prepared {
    pub tensor: Tensor,
    pub cropped: RgbImage,
}

/// Decodes an image file (PNG or JPEG; grayscale, RGBA, palette and 16-bit inputs are
/// converted to 8-bit RGB later). Images beyond [`MAX_SIDE`] or [`MAX_DECODED_BYTES`]
/// are refused with an error naming the file and its claimed size; truncated or damaged
/// files (see [`check_structure`]) with an error naming the file and what is wrong.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    // A file that cannot be read keeps its I/O error; one that is no image, damaged or
    // too large is invalid input.
    decode_image(&Source::File(path)).map_err(|e| match crate::error::kind(&e) {
        crate::error::ErrorKind::NotFound | crate::error::ErrorKind::Io => e,
        _ => crate::error::invalid(format!("{e:#}")),
    })
}

/// [`load_image`] for an image held in memory (an upload), named `name` in errors:
/// the same formats, limits and damage checks; every failure is invalid input.
pub fn load_image_bytes(bytes: &[u8], name: &str) -> Result<DynamicImage> {
    decode_image(&Source::Bytes(bytes, name)).map_err(|e| crate::error::invalid(format!("{e:#}")))
}

/// Where an image's bytes are.
enum Source<'a> {
    File(&'a Path),
    /// The bytes and the name errors give them.
    Bytes(&'a [u8], &'a str),
}

impl Source<'_> {
    fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Bytes(_, name) => name.to_string(),
        }
    }

    /// See [`check_structure`].
    fn check_structure(&self, format: image::ImageFormat) -> std::result::Result<(), String> {
        match self {
            Source::File(p) => check_structure(p, format),
            Source::Bytes(b, _) => match format {
                image::ImageFormat::Png => check_png(std::io::Cursor::new(b)),
                image::ImageFormat::Jpeg => check_jpeg(b),
                _ => Ok(()),
            },
        }
    }

    /// The dimensions the header claims, read without limits (only the header is
    /// parsed).
    fn claimed_dimensions(&self) -> Option<(u32, u32)> {
        fn dims<R: std::io::BufRead + std::io::Seek>(
            r: image::ImageReader<R>,
        ) -> Option<(u32, u32)> {
            let mut r = r.with_guessed_format().ok()?;
            r.no_limits();
            r.into_dimensions().ok()
        }
        match self {
            Source::File(p) => dims(image::ImageReader::open(p).ok()?),
            Source::Bytes(b, _) => dims(image::ImageReader::new(std::io::Cursor::new(*b))),
        }
    }
}

fn decode_image(src: &Source) -> Result<DynamicImage> {
    match src {
        Source::File(path) => {
            if path.is_dir() {
                bail!("{}: is a directory, not an image", path.display());
            }
            let reader = image::ImageReader::open(path)
                .with_context(|| format!("{}: cannot open", path.display()))?;
            decode_from(src, reader)
        }
        Source::Bytes(bytes, _) => {
            decode_from(src, image::ImageReader::new(std::io::Cursor::new(*bytes)))
        }
    }
}

fn decode_from<R: std::io::BufRead + std::io::Seek>(
    src: &Source,
    reader: image::ImageReader<R>,
) -> Result<DynamicImage> {
    let name = src.name();
    let mut reader = reader
        .with_guessed_format()
        .with_context(|| format!("{name}: cannot read"))?;
    let format = reader.format();
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let bad = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => too_large(src),
        // A PNG or JPEG the decoder gives up on is damaged or cut short; the structure
        // check says which part is missing, if it can.
        image::ImageError::Decoding(_) | image::ImageError::IoError(_) if format.is_some() => {
            let why = format
                .and_then(|f| src.check_structure(f).err())
                .unwrap_or_else(|| one_line(&e.to_string()));
            damaged(&name, &why)
        }
        e => anyhow!("{name}: not a readable image: {e}"),
    };
    let mut decoder = reader.into_decoder().map_err(bad)?;
    // `into_decoder` checks the sides only; the buffer size is checked here, before
    // `from_decoder` allocates it.
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(too_large(src));
    }
    // The decoders accept some cut-off files (the JPEG decoder greys out what is
    // missing; the PNG decoder never reads past the pixel data), so the file's
    // structure is checked before the pixels are decoded.
    if let Some(format) = format {
        src.check_structure(format)
            .map_err(|why| damaged(&name, &why))?;
    }
    // Photos from cameras and phones store their rotation in EXIF; honour it.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// A decoder's message on one line (some end in a newline or span several).
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The error for a truncated or damaged file.
fn damaged(name: &str, why: &str) -> anyhow::Error {
    anyhow!("{name}: not a readable image, truncated or damaged: {why}")
}

/// Checks that a PNG or JPEG file is complete, without decoding its pixels; `Err` says
/// what is missing or wrong. Other formats pass.
///
/// * PNG: every chunk is whole and its CRC matches (ancillary chunks included, as PIL
///   does), up to the `IEND` chunk. The `png` crate's chunk parser does the work; the
///   compressed pixel data is not inflated here (the decoder does that and refuses a cut
///   or damaged zlib stream itself). Data after `IEND` is ignored.
/// * JPEG: the marker segments are followed (their lengths must fit in the file) through
///   the compressed scans to the end-of-image marker `FFD9`. A file that ends before it
///   is truncated: the decoder would grey out the rest without an error. Bytes after
///   `FFD9` (phones and cameras append previews and motion clips there) are ignored, as
///   are stray bytes between segments, which decoders skip.
pub fn check_structure(path: &Path, format: image::ImageFormat) -> std::result::Result<(), String> {
    match format {
        image::ImageFormat::Png => {
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            check_png(std::io::BufReader::new(file))
        }
        image::ImageFormat::Jpeg => check_jpeg(&std::fs::read(path).map_err(|e| e.to_string())?),
        _ => Ok(()),
    }
}

/// The PNG half of [`check_structure`], streaming.
fn check_png(mut r: impl std::io::BufRead) -> std::result::Result<(), String> {
    use png::{chunk::IEND, Decoded};
    let mut options = png::DecodeOptions::default();
    options.set_skip_ancillary_crc_failures(false);
    // Text and ICC chunks are only walked over, not decompressed.
    options.set_ignore_text_chunk(true);
    options.set_ignore_iccp_chunk(true);
    let mut decoder = png::StreamingDecoder::new_with_options(options);
    let name = |kind: png::chunk::ChunkType| String::from_utf8_lossy(&kind.0).into_owned();
    // The chunk being read, if the file ends inside it.
    let mut open_chunk = None;
    loop {
        let buf = r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Err(match open_chunk {
                Some(kind) => format!("the file ends inside its {} chunk", name(kind)),
                None => "the file ends before the PNG's end chunk IEND".into(),
            });
        }
        let (n, decoded) = decoder.update(buf, None).map_err(|e| {
            let e = e.to_string();
            match open_chunk {
                Some(kind) if e.starts_with("CRC error") => {
                    format!("the CRC of its {} chunk does not match", name(kind))
                }
                Some(kind) => format!("in its {} chunk: {e}", name(kind)),
                None => e,
            }
        })?;
        r.consume(n);
        match decoded {
            Decoded::ChunkBegin(_, kind) => open_chunk = Some(kind),
            Decoded::ChunkComplete(IEND) => return Ok(()),
            Decoded::ChunkComplete(_)
            | Decoded::SkippedAncillaryChunk(_)
            | Decoded::BadAncillaryChunk(_) => open_chunk = None,
            _ => {}
        }
    }
}

/// The JPEG half of [`check_structure`]: follows the markers to `FFD9`.
fn check_jpeg(b: &[u8]) -> std::result::Result<(), String> {
    const EOI: u8 = 0xd9;
    let ends = "the file ends before the JPEG's end-of-image marker FFD9";
    if !b.starts_with(&[0xff, 0xd8]) {
        return Err("no JPEG start-of-image marker (FFD8)".into());
    }
    let mut i = 2;
    loop {
        // The next marker: 0xFF, any fill bytes 0xFF, then a code. Inside compressed
        // data 0xFF00 is an escaped 0xFF and 0xFFD0-D7 are restart markers; neither
        // ends the scan.
        let Some(at) = b[i..].iter().position(|&x| x == 0xff) else {
            return Err(ends.into());
        };
        i += at;
        while b.get(i) == Some(&0xff) {
            i += 1;
        }
        let Some(&code) = b.get(i) else {
            return Err(ends.into());
        };
        i += 1;
        match code {
            EOI => return Ok(()),
            0x00 | 0xd0..=0xd7 | 0xd8 | 0x01 => continue,
            _ => {
                // A segment: a big-endian length that counts itself.
                let len = match b.get(i..i + 2) {
                    Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]) as usize,
                    _ => return Err(ends.into()),
                };
                if len < 2 {
                    return Err(format!("marker FF{code:02X} has a bad length {len}"));
                }
                if i + len > b.len() {
                    return Err(format!(
                        "the file ends inside a segment (marker FF{code:02X}) that claims {len} \
                         bytes"
                    ));
                }
                i += len;
            }
        }
    }
}

/// The error for an image over the limits, with the size its header claims.
fn too_large(src: &Source) -> anyhow::Error {
    let claimed = src
        .claimed_dimensions()
        .map(|(w, h)| format!("{w}×{h} pixels"))
        .unwrap_or_else(|| "size unknown".into());
    anyhow!(
        "{}: image too large to decode ({claimed}; the limit is {MAX_SIDE} pixels per side \
         and {} MiB decoded)",
        src.name(),
        MAX_DECODED_BYTES >> 20
    )
}

/// torchvision's ImageNet evaluation transform for a `size` crop: the shorter side
/// resized to `size · 256/224` (256 for 224), then [`preprocess`].
pub fn preprocess_for(img: &DynamicImage, size: u32) -> Prepared {
    preprocess(img, (size as u64 * 256 / 224) as u32, size)
}

/// torchvision's `Resize(resize) → CenterCrop(crop) → ToTensor → Normalize`.
/// The resize dominates the cost; 8-bit RGB images are not copied first.
pub fn preprocess(img: &DynamicImage, resize: u32, crop: u32) -> Prepared {
    // Borrow 8-bit RGB images instead of copying them.
    let rgb: Cow<RgbImage> = match img.as_rgb8() {
        Some(r) => Cow::Borrowed(r),
        None => Cow::Owned(img.to_rgb8()),
    };
    let (w, h) = rgb.dimensions();
    let scale = resize as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(crop),
        ((h as f64 * scale).round() as u32).max(crop),
    );
    let resized = image::imageops::resize(rgb.as_ref(), nw, nh, FilterType::Triangle);
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalisation {
    /// RGB in [0, 1], minus the ImageNet mean, divided by its std (torchvision).
    Torchvision,
    /// BGR in [0, 255] minus [103.939, 116.779, 123.68] (Caffe models, as TorchRay's
    /// VGG16/ResNet50 for VOC and COCO).
    Caffe,
}

impl Normalisation {
    /// Every normalisation, torchvision first.
    pub const ALL: [Normalisation; 2] = [Normalisation::Torchvision, Normalisation::Caffe];

    /// The name users give (`--norm`).
    pub fn name(self) -> &'static str {
        match self {
            Normalisation::Torchvision => "torchvision",
            Normalisation::Caffe => "caffe",
        }
    }

    /// The normalisation of a [`Normalisation::name`].
    pub fn from_name(name: &str) -> Option<Normalisation> {
        Normalisation::ALL.into_iter().find(|n| n.name() == name)
    }

    /// One line on the normalisation, for lists of choices.
    pub fn description(self) -> &'static str {
        match self {
            Normalisation::Torchvision => {
                "RGB in [0, 1], minus the ImageNet mean, divided by its std (torchvision)"
            }
            Normalisation::Caffe => {
                "BGR in [0, 255] minus [103.939, 116.779, 123.68] (Caffe models, as TorchRay's \
                 VGG16/ResNet50 for VOC and COCO)"
            }
        }
    }
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
