//! The synthetic benchmark (`rsp synth` on the command line): a procedurally generated
//! multi-object dataset in Pascal VOC layout, for evaluating attribution methods
//! (Pointing Game, mIoU, model sensitivity, faithfulness) with nothing downloaded.
//!
//! Every image shows 2-4 objects of [`CLASSES`] (at least two distinct classes that are
//! not [difficult](DIFFICULT_MIN_AREA)), each with a random colour, texture (solid,
//! stripes at a random angle, dots, noise), size, position, aspect and rotation, over a
//! cluttered background (gradient, low-frequency noise, distractor strokes and blobs that
//! belong to no class; a few strokes are drawn over the objects). Objects are drawn back
//! to front, so later ones occlude earlier ones; masks and boxes describe the *visible*
//! pixels exactly (a pixel belongs to an object when its centre is inside the shape and
//! nothing was drawn over it; there is no anti-aliasing, so there is no ambiguity).
//!
//! Output layout (`DIR/`):
//!
//! - `JPEGImages/<id>.jpg`: RGB, JPEG quality [`JPEG_QUALITY`], no chroma subsampling.
//! - `Annotations/<id>.xml`: VOC XML, objects in drawing order (back to front) with
//!   `name`, `pose`, `truncated`, `occluded`, `difficult` and `bndbox` (1-based,
//!   inclusive, of the visible pixels), plus two non-VOC fields `visible_pixels` and
//!   `full_pixels` (the object's area unoccluded and untruncated).
//! - `SegmentationClass/<id>.png`: 8-bit grayscale, pixel value = class index + 1,
//!   0 = background, no void label.
//! - `ImageSets/Main/{train,val,test}.txt` (ids), `ImageSets/Main/<class>_<split>.txt`
//!   (VOC classification lists: `id 1` present, `id -1` absent, `id 0` present only as
//!   difficult objects), `ImageSets/Segmentation/{train,val,test}.txt`.
//! - `classes.txt`: class names in index order.
//! - `difficult.txt`: the Pointing Game's "difficult" flags in the EBP file format, one
//!   row per test image, `id` then one tab-separated 0/1 per class. EBP (Zhang et al.
//!   2016) calls a (image, class) pair difficult when the class covers less than a
//!   quarter of the image and another class is present; this dataset's objects are
//!   all smaller than a quarter, so the area threshold is scaled to
//!   [`POINTING_SMALL_AREA`]: 1 where the class is scored (it has a non-difficult
//!   instance), its visible pixels cover less than that fraction of the image, and
//!   another class is present.
//!
//! An object is **difficult** when its visible area is below [`DIFFICULT_MIN_AREA`] of
//! the image, or less than [`DIFFICULT_MIN_VISIBLE`] of its full (unoccluded,
//! untruncated) area is visible. Objects with no visible pixel are not annotated.
//!
//! Determinism: image `i` of a split depends only on `(seed, split, i, size)`, through a
//! SplitMix64 generator and IEEE-754 basic arithmetic (no platform `sin`/`cos`: a
//! polynomial is used), so a given seed writes byte-identical files on every machine,
//! and `--test 50` writes the first 50 images of `--test 200`.

use std::fmt;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::rng::{mix64, SplitMix64};

/// Object classes in index order (segmentation value = index + 1).
pub const CLASSES: [&str; 6] = ["disc", "square", "triangle", "star", "cross", "ring"];

/// A scored class whose visible pixels cover less than this fraction of the image, with
/// another class present, is a "difficult" Pointing Game pair (`difficult.txt`).
pub const POINTING_SMALL_AREA: f64 = 0.05;

/// Objects whose visible area is below this fraction of the image are difficult.
pub const DIFFICULT_MIN_AREA: f64 = 0.01;

/// Objects of which less than this fraction of the full shape is visible are difficult.
pub const DIFFICULT_MIN_VISIBLE: f64 = 0.5;

/// JPEG quality of `JPEGImages/*.jpg`.
pub const JPEG_QUALITY: u8 = 95;

/// Smallest and largest image side accepted.
pub const SIZE_RANGE: (u32, u32) = (32, 1024);

/// Dataset size and seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthOptions {
    /// Images in the train split.
    pub train: usize,
    /// Images in the val split.
    pub val: usize,
    /// Images in the test split.
    pub test: usize,
    /// Image side length in pixels (square images).
    pub size: u32,
    /// Seed of the whole dataset.
    pub seed: u64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            train: 5000,
            val: 500,
            test: 200,
            size: 64,
            seed: 0,
        }
    }
}

/// A dataset split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// `train`, `val` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Image id of the `index`-th image of this split, e.g. `test_00007`.
    pub fn id(self, index: usize) -> String {
        format!("{}_{index:05}", self.name())
    }
}

/// One annotated (at least partly visible) object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthObject {
    /// Index into [`CLASSES`].
    pub class: usize,
    /// Box of the visible pixels, 0-based inclusive: `[xmin, ymin, xmax, ymax]`.
    pub bbox: [u32; 4],
    /// Pixels of the object left visible.
    pub visible_pixels: u32,
    /// Pixels of the whole shape, unoccluded, including any part outside the image.
    pub full_pixels: u32,
    /// Part of the shape lies outside the image.
    pub truncated: bool,
    /// Something drawn later covers part of it.
    pub occluded: bool,
    /// Tiny or mostly hidden (see [`DIFFICULT_MIN_AREA`], [`DIFFICULT_MIN_VISIBLE`]).
    pub difficult: bool,
}

/// One generated image with its ground truth.
#[derive(Clone, Debug)]
pub struct SynthImage {
    /// Side length.
    pub size: u32,
    /// RGB pixels, row-major, `size * size * 3` bytes.
    pub rgb: Vec<u8>,
    /// Class mask, row-major: class index + 1, 0 = background.
    pub mask: Vec<u8>,
    /// Annotated objects in drawing order (back to front).
    pub objects: Vec<SynthObject>,
}

impl SynthImage {
    /// Classes with at least one visible object.
    pub fn present(&self) -> [bool; CLASSES.len()] {
        let mut p = [false; CLASSES.len()];
        for o in &self.objects {
            p[o.class] = true;
        }
        p
    }

    /// The `difficult.txt` row: scored classes (with a non-difficult instance) whose
    /// visible pixels cover less than [`POINTING_SMALL_AREA`] of the `size × size`
    /// image while another class is present.
    pub fn pointing_difficult(&self, size: u32) -> [bool; CLASSES.len()] {
        let present = self.present();
        let hard = self.difficult_classes();
        let classes = present.iter().filter(|&&p| p).count();
        let mut area = [0u64; CLASSES.len()];
        for o in &self.objects {
            area[o.class] += o.visible_pixels as u64;
        }
        let limit = POINTING_SMALL_AREA * (size as f64 * size as f64);
        std::array::from_fn(|c| present[c] && !hard[c] && classes >= 2 && (area[c] as f64) < limit)
    }

    /// Classes present only as difficult objects.
    pub fn difficult_classes(&self) -> [bool; CLASSES.len()] {
        let mut easy = [false; CLASSES.len()];
        for o in self.objects.iter().filter(|o| !o.difficult) {
            easy[o.class] = true;
        }
        let present = self.present();
        std::array::from_fn(|c| present[c] && !easy[c])
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthSummary {
    /// Images per split (train, val, test).
    pub images: [usize; 3],
    /// Annotated object instances per class (all splits).
    pub instances: [usize; CLASSES.len()],
    /// Difficult object instances (all splits).
    pub difficult_objects: usize,
    /// Entries equal to 1 in `difficult.txt` (test images × classes).
    pub difficult_test_labels: usize,
}

impl fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "images: train {}, val {}, test {}; objects:",
            self.images[0], self.images[1], self.images[2]
        )?;
        for (name, n) in CLASSES.iter().zip(self.instances) {
            write!(f, " {name} {n}")?;
        }
        write!(
            f,
            "; difficult objects {}; difficult test labels {}",
            self.difficult_objects, self.difficult_test_labels
        )
    }
}

/// Generates the dataset described by `opts` into `out_dir` (VOC layout, see the module
/// documentation).
pub fn generate(opts: &SynthOptions, out_dir: &Path) -> Result<SynthSummary> {
    if opts.size < SIZE_RANGE.0 || opts.size > SIZE_RANGE.1 {
        bail!(
            "image size {} is out of range ({}..={} pixels)",
            opts.size,
            SIZE_RANGE.0,
            SIZE_RANGE.1
        );
    }
    let dirs = [
        "JPEGImages",
        "Annotations",
        "SegmentationClass",
        "ImageSets/Main",
        "ImageSets/Segmentation",
    ];
    for d in dirs {
        let p = out_dir.join(d);
        fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    write_file(
        &out_dir.join("classes.txt"),
        lines(CLASSES.iter()).as_bytes(),
    )?;

    let mut summary = SynthSummary::default();
    let mut difficult_rows = String::new();
    for (s, split) in Split::ALL.into_iter().enumerate() {
        let count = [opts.train, opts.val, opts.test][s];
        let mut ids = Vec::with_capacity(count);
        let mut class_lists = vec![String::new(); CLASSES.len()];
        for i in 0..count {
            let id = split.id(i);
            let img = render(opts.seed, split, i, opts.size);
            write_image(out_dir, &id, &img)?;
            let present = img.present();
            let hard = img.difficult_classes();
            for (c, list) in class_lists.iter_mut().enumerate() {
                let flag = match (present[c], hard[c]) {
                    (false, _) => "-1",
                    (true, true) => " 0",
                    (true, false) => " 1",
                };
                list.push_str(&format!("{id} {flag}\n"));
            }
            for o in &img.objects {
                summary.instances[o.class] += 1;
                summary.difficult_objects += o.difficult as usize;
            }
            if split == Split::Test {
                difficult_rows.push_str(&id);
                for h in img.pointing_difficult(opts.size) {
                    difficult_rows.push_str(if h { "\t1" } else { "\t0" });
                    summary.difficult_test_labels += h as usize;
                }
                difficult_rows.push('\n');
            }
            ids.push(id);
        }
        summary.images[s] = count;
        let list = lines(ids.iter());
        for sub in ["Main", "Segmentation"] {
            let p = out_dir.join(format!("ImageSets/{sub}/{}.txt", split.name()));
            write_file(&p, list.as_bytes())?;
        }
        for (c, l) in class_lists.iter().enumerate() {
            let p = out_dir.join(format!(
                "ImageSets/Main/{}_{}.txt",
                CLASSES[c],
                split.name()
            ));
            write_file(&p, l.as_bytes())?;
        }
    }
    write_file(&out_dir.join("difficult.txt"), difficult_rows.as_bytes())?;
    Ok(summary)
}

fn lines<T: AsRef<str>>(items: impl Iterator<Item = T>) -> String {
    let mut s = String::new();
    for i in items {
        s.push_str(i.as_ref());
        s.push('\n');
    }
    s
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn write_image(out_dir: &Path, id: &str, img: &SynthImage) -> Result<()> {
    let jpg_path = out_dir.join(format!("JPEGImages/{id}.jpg"));
    let mut jpg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpg, JPEG_QUALITY)
        .write_image(&img.rgb, img.size, img.size, ExtendedColorType::Rgb8)
        .with_context(|| format!("cannot encode {}", jpg_path.display()))?;
    write_file(&jpg_path, &jpg)?;

    let png_path = out_dir.join(format!("SegmentationClass/{id}.png"));
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(&img.mask, img.size, img.size, ExtendedColorType::L8)
        .with_context(|| format!("cannot encode {}", png_path.display()))?;
    write_file(&png_path, &png)?;

    write_file(
        &out_dir.join(format!("Annotations/{id}.xml")),
        annotation_xml(id, img).as_bytes(),
    )
}

/// The VOC XML annotation of one image.
pub fn annotation_xml(id: &str, img: &SynthImage) -> String {
    let mut x = format!(
        "<annotation>\n\t<folder>synth</folder>\n\t<filename>{id}.jpg</filename>\n\
         \t<source>\n\t\t<database>rsp synth</database>\n\t</source>\n\
         \t<size>\n\t\t<width>{s}</width>\n\t\t<height>{s}</height>\n\t\t<depth>3</depth>\n\t</size>\n\
         \t<segmented>1</segmented>\n",
        s = img.size
    );
    for o in &img.objects {
        x.push_str(&format!(
            "\t<object>\n\t\t<name>{}</name>\n\t\t<pose>Unspecified</pose>\n\
             \t\t<truncated>{}</truncated>\n\t\t<occluded>{}</occluded>\n\
             \t\t<difficult>{}</difficult>\n\
             \t\t<visible_pixels>{}</visible_pixels>\n\t\t<full_pixels>{}</full_pixels>\n\
             \t\t<bndbox>\n\t\t\t<xmin>{}</xmin>\n\t\t\t<ymin>{}</ymin>\n\
             \t\t\t<xmax>{}</xmax>\n\t\t\t<ymax>{}</ymax>\n\t\t</bndbox>\n\t</object>\n",
            CLASSES[o.class],
            o.truncated as u8,
            o.occluded as u8,
            o.difficult as u8,
            o.visible_pixels,
            o.full_pixels,
            o.bbox[0] + 1,
            o.bbox[1] + 1,
            o.bbox[2] + 1,
            o.bbox[3] + 1,
        ));
    }
    x.push_str("</annotation>\n");
    x
}

// ---------------------------------------------------------------------------------
// Deterministic randomness and trigonometry.

/// The library's SplitMix64 ([`crate::rng`]) seeded per image, with the draws the
/// generator needs.
struct Rng(SplitMix64);

impl Rng {
    fn for_image(seed: u64, split: Split, index: usize, size: u32) -> Rng {
        let s = mix64(seed ^ 0x5EED_5EED_0000_0000);
        let s = mix64(s ^ ((split as u64) << 56) ^ index as u64);
        Rng(SplitMix64(mix64(s ^ ((size as u64) << 32))))
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0.unit_f64()
    }
    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Uniform integer in [lo, hi] (inclusive).
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn colour(&mut self) -> [f64; 3] {
        [
            self.range(0.0, 255.0),
            self.range(0.0, 255.0),
            self.range(0.0, 255.0),
        ]
    }
    fn angle(&mut self) -> f64 {
        self.range(0.0, std::f64::consts::TAU)
    }
}

/// Hash of a pixel position to [0, 1), for per-pixel noise without consuming the stream.
fn hash01(key: u64, x: u32, y: u32, c: u32) -> f64 {
    let h = mix64(key ^ ((x as u64) << 40) ^ ((y as u64) << 16) ^ c as u64);
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// `(sin x, cos x)` from basic IEEE operations only (platform `sin`/`cos` may differ in
/// the last bit between C libraries; this may not). Accurate to ~1e-15 for |x| ≤ 100.
fn sin_cos(x: f64) -> (f64, f64) {
    use std::f64::consts::{FRAC_PI_2, TAU};
    let r = x - (x / TAU).round() * TAU;
    let q = (r / FRAC_PI_2).round();
    let t = r - q * FRAC_PI_2;
    let t2 = t * t;
    // Taylor series to t^15 / t^14 (|t| ≤ π/4: remainder below 1e-15).
    let mut s = 0.0;
    let mut c = 0.0;
    let mut term_s = t;
    let mut term_c = 1.0;
    for k in 0..8 {
        s += term_s;
        c += term_c;
        let k2 = (2 * k + 2) as f64;
        term_s = -term_s * t2 / (k2 * (k2 + 1.0));
        term_c = -term_c * t2 / ((k2 - 1.0) * k2);
    }
    match (q as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

// ---------------------------------------------------------------------------------
// Shapes and textures.

#[derive(Clone, Copy, Debug)]
enum Shape {
    Disc,
    Square,
    Triangle,
    /// Polygon vertices (outer radius 1.1, point up), alternating tip and inner vertex.
    Star([(f64, f64); 10]),
    /// Arm half-width (relative to the half-length 1).
    Cross(f64),
    /// Inner/outer radius ratio.
    Ring(f64),
}

impl Shape {
    fn random(class: usize, rng: &mut Rng) -> Shape {
        match class {
            0 => Shape::Disc,
            1 => Shape::Square,
            2 => Shape::Triangle,
            3 => Shape::Star(star_vertices(rng.range(0.38, 0.5))),
            4 => Shape::Cross(rng.range(0.24, 0.34)),
            _ => Shape::Ring(rng.range(0.45, 0.62)),
        }
    }

    /// Is the local point (unit scale, shape-aligned) inside?
    fn contains(self, u: f64, v: f64) -> bool {
        match self {
            Shape::Disc => u * u + v * v <= 1.0,
            Shape::Square => u.abs() <= 0.82 && v.abs() <= 0.82,
            Shape::Triangle => {
                // Equilateral, circumradius 1.1, apex up.
                const H: f64 = 1.1 * 0.866_025_403_784_438_6;
                polygon_contains(&[(0.0, -1.1), (-H, 0.55), (H, 0.55)], u, v)
            }
            Shape::Star(verts) => polygon_contains(&verts, u, v),
            Shape::Cross(w) => {
                let (au, av) = (u.abs(), v.abs());
                (au <= 1.0 && av <= w) || (av <= 1.0 && au <= w)
            }
            Shape::Ring(inner) => {
                let d = u * u + v * v;
                d <= 1.0 && d >= inner * inner
            }
        }
    }
}

/// Vertices of a five-pointed star, outer radius 1.1, point up; `inner` is the ratio
/// of the inner to the outer radius.
fn star_vertices(inner: f64) -> [(f64, f64); 10] {
    let outer = 1.1;
    std::array::from_fn(|k| {
        let ang = -std::f64::consts::FRAC_PI_2 + k as f64 * std::f64::consts::PI / 5.0;
        let (s, c) = sin_cos(ang);
        let r = if k % 2 == 0 { outer } else { outer * inner };
        (r * c, r * s)
    })
}

/// Point in a simple polygon by the crossing number.
fn polygon_contains(verts: &[(f64, f64)], u: f64, v: f64) -> bool {
    let mut inside = false;
    let mut j = verts.len() - 1;
    for i in 0..verts.len() {
        let (xi, yi) = verts[i];
        let (xj, yj) = verts[j];
        if (yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[derive(Clone, Copy, Debug)]
enum Texture {
    Solid,
    /// Direction (cos, sin), period in px, duty cycle, second colour.
    Stripes((f64, f64), f64, f64, [f64; 3]),
    /// Grid rotation (cos, sin), period px, dot radius px, second colour.
    Dots((f64, f64), f64, f64, [f64; 3]),
    /// Per-pixel noise amplitude and hash key.
    Noise(f64, u64),
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

/// A random colour at least `min` away from `avoid` (best of a few tries).
fn contrasting(rng: &mut Rng, avoid: [f64; 3], min: f64) -> [f64; 3] {
    let mut best = rng.colour();
    for _ in 0..24 {
        if dist(best, avoid) >= min {
            break;
        }
        let c = rng.colour();
        if dist(c, avoid) > dist(best, avoid) {
            best = c;
        }
    }
    best
}

impl Texture {
    fn random(rng: &mut Rng, base: [f64; 3], scale: f64) -> Texture {
        match rng.int(0, 3) {
            0 => Texture::Solid,
            1 => Texture::Stripes(
                sin_cos(rng.angle()),
                rng.range(3.0, 6.5) * scale,
                rng.range(0.35, 0.65),
                contrasting(rng, base, 90.0),
            ),
            2 => {
                let period = rng.range(3.5, 6.5) * scale;
                Texture::Dots(
                    sin_cos(rng.angle()),
                    period,
                    rng.range(0.22, 0.36) * period,
                    contrasting(rng, base, 90.0),
                )
            }
            _ => Texture::Noise(rng.range(25.0, 60.0), rng.next_u64()),
        }
    }

    fn colour(&self, base: [f64; 3], x: u32, y: u32) -> [f64; 3] {
        let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
        match *self {
            Texture::Solid => base,
            Texture::Stripes((s, c), period, duty, other) => {
                let t = (px * c + py * s) / period;
                if t - t.floor() < duty {
                    other
                } else {
                    base
                }
            }
            Texture::Dots((s, c), period, radius, other) => {
                let (u, v) = (px * c + py * s, -px * s + py * c);
                let du = u - (u / period).round() * period;
                let dv = v - (v / period).round() * period;
                if du * du + dv * dv <= radius * radius {
                    other
                } else {
                    base
                }
            }
            Texture::Noise(amp, key) => std::array::from_fn(|ch| {
                base[ch] + amp * (2.0 * hash01(key, x, y, ch as u32) - 1.0)
            }),
        }
    }
}

/// A placed object: shape, pose and paint.
struct Placed {
    class: usize,
    shape: Shape,
    centre: (f64, f64),
    /// Half-extent in pixels along the shape's own axes.
    radius: (f64, f64),
    /// Rotation (sin, cos).
    rot: (f64, f64),
    base: [f64; 3],
    texture: Texture,
    /// Linear shading: direction (cos, sin) and strength per pixel.
    shade: ((f64, f64), f64),
}

impl Placed {
    fn contains(&self, x: i64, y: i64) -> bool {
        let dx = x as f64 + 0.5 - self.centre.0;
        let dy = y as f64 + 0.5 - self.centre.1;
        let (s, c) = self.rot;
        let u = (c * dx + s * dy) / self.radius.0;
        let v = (-s * dx + c * dy) / self.radius.1;
        self.shape.contains(u, v)
    }

    /// Integer pixel range that may contain the shape (may extend past the image).
    fn extent(&self) -> (i64, i64, i64, i64) {
        let r = 1.2 * self.radius.0.max(self.radius.1) + 1.0;
        (
            (self.centre.0 - r).floor() as i64,
            (self.centre.1 - r).floor() as i64,
            (self.centre.0 + r).ceil() as i64,
            (self.centre.1 + r).ceil() as i64,
        )
    }

    fn paint(&self, x: u32, y: u32) -> [f64; 3] {
        let col = self.texture.colour(self.base, x, y);
        let ((c, s), k) = self.shade;
        let d = (x as f64 + 0.5 - self.centre.0) * c + (y as f64 + 0.5 - self.centre.1) * s;
        col.map(|v| v + k * d)
    }
}

// ---------------------------------------------------------------------------------
// Rendering.

struct Canvas {
    size: u32,
    rgb: Vec<f64>,
    /// 0 = background, k = object k-1 (index into the placed list).
    owner: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: u32, y: u32, col: [f64; 3]) {
        let i = (y * self.size + x) as usize;
        self.rgb[3 * i..3 * i + 3].copy_from_slice(&col);
    }
}

/// Distance from point `p` to segment `a-b`.
fn seg_dist(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let (wx, wy) = (p.0 - a.0, p.1 - a.1);
    let len2 = vx * vx + vy * vy;
    let t = if len2 > 0.0 {
        ((wx * vx + wy * vy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (dx, dy) = (wx - t * vx, wy - t * vy);
    (dx * dx + dy * dy).sqrt()
}

/// A clutter item: a polyline stroke or an irregular blob (union of small discs).
enum Distractor {
    Stroke(Vec<(f64, f64)>, f64, [f64; 3]),
    Blob(Vec<(f64, f64, f64)>, [f64; 3]),
}

impl Distractor {
    fn random(rng: &mut Rng, size: f64) -> Distractor {
        let colour = rng.colour();
        if rng.chance(0.7) {
            let n = rng.int(2, 4);
            let mut pts = vec![(rng.range(0.0, size), rng.range(0.0, size))];
            for _ in 1..n {
                let (s, c) = sin_cos(rng.angle());
                let len = rng.range(0.12, 0.4) * size;
                let last = pts[pts.len() - 1];
                pts.push((last.0 + c * len, last.1 + s * len));
            }
            let width = rng.range(0.6, 1.6) * size / 64.0;
            Distractor::Stroke(pts, width, colour)
        } else {
            let (cx, cy) = (rng.range(0.0, size), rng.range(0.0, size));
            let parts = (0..rng.int(3, 5))
                .map(|_| {
                    (
                        cx + rng.range(-0.05, 0.05) * size,
                        cy + rng.range(-0.05, 0.05) * size,
                        rng.range(0.02, 0.04) * size,
                    )
                })
                .collect();
            Distractor::Blob(parts, colour)
        }
    }

    fn contains(&self, x: u32, y: u32) -> bool {
        let p = (x as f64 + 0.5, y as f64 + 0.5);
        match self {
            Distractor::Stroke(pts, w, _) => pts.windows(2).any(|s| seg_dist(p, s[0], s[1]) <= *w),
            Distractor::Blob(parts, _) => parts
                .iter()
                .any(|&(cx, cy, r)| (p.0 - cx) * (p.0 - cx) + (p.1 - cy) * (p.1 - cy) <= r * r),
        }
    }

    fn draw(&self, canvas: &mut Canvas, clear_owner: bool) {
        let colour = match self {
            Distractor::Stroke(_, _, c) | Distractor::Blob(_, c) => *c,
        };
        for y in 0..canvas.size {
            for x in 0..canvas.size {
                if self.contains(x, y) {
                    canvas.set(x, y, colour);
                    if clear_owner {
                        canvas.owner[(y * canvas.size + x) as usize] = 0;
                    }
                }
            }
        }
    }
}

fn background(rng: &mut Rng, canvas: &mut Canvas) {
    let n = canvas.size;
    let size = n as f64;
    let (c1, c2) = (rng.colour(), rng.colour());
    let (gs, gc) = sin_cos(rng.angle());
    // Low-frequency value noise on a (g+1)² lattice, bilinear with smoothstep.
    let g = rng.int(3, 5);
    let amp = rng.range(10.0, 40.0);
    let lattice: Vec<[f64; 3]> = (0..(g + 1) * (g + 1))
        .map(|_| {
            let l = rng.range(-1.0, 1.0);
            [0, 1, 2].map(|_| amp * (0.7 * l + 0.3 * rng.range(-1.0, 1.0)))
        })
        .collect();
    let pix_amp = rng.range(0.0, 12.0);
    let key = rng.next_u64();
    for y in 0..n {
        for x in 0..n {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let t =
                (((px - size / 2.0) * gc + (py - size / 2.0) * gs) / size + 0.5).clamp(0.0, 1.0);
            let fx = px / size * g as f64;
            let fy = py / size * g as f64;
            let (ix, iy) = (
                (fx.floor() as usize).min(g - 1),
                (fy.floor() as usize).min(g - 1),
            );
            let smooth = |f: f64| f * f * (3.0 - 2.0 * f);
            let (ax, ay) = (smooth(fx - ix as f64), smooth(fy - iy as f64));
            let at = |i: usize, j: usize| lattice[j * (g + 1) + i];
            let col: [f64; 3] = std::array::from_fn(|c| {
                let top = at(ix, iy)[c] * (1.0 - ax) + at(ix + 1, iy)[c] * ax;
                let bottom = at(ix, iy + 1)[c] * (1.0 - ax) + at(ix + 1, iy + 1)[c] * ax;
                let noise = top * (1.0 - ay) + bottom * ay;
                c1[c] * (1.0 - t)
                    + c2[c] * t
                    + noise
                    + pix_amp * (2.0 * hash01(key, x, y, c as u32) - 1.0)
            });
            canvas.set(x, y, col);
        }
    }
}

/// Mean colour of the canvas in a square window (for picking contrasting colours).
fn local_mean(canvas: &Canvas, cx: f64, cy: f64, r: f64) -> [f64; 3] {
    let n = canvas.size as i64;
    let clampi = |v: f64| (v.floor() as i64).clamp(0, n - 1);
    let (x0, x1, y0, y1) = (
        clampi(cx - r),
        clampi(cx + r),
        clampi(cy - r),
        clampi(cy + r),
    );
    let mut sum = [0.0; 3];
    let mut count = 0.0;
    for y in y0..=y1 {
        for x in x0..=x1 {
            let i = (y * n + x) as usize;
            for (s, v) in sum.iter_mut().zip(&canvas.rgb[3 * i..3 * i + 3]) {
                *s += v;
            }
            count += 1.0;
        }
    }
    sum.map(|s| s / count)
}

fn place(rng: &mut Rng, class: usize, canvas: &Canvas) -> Placed {
    let size = canvas.size as f64;
    let shape = Shape::random(class, rng);
    let r = rng.range(0.13, 0.24) * size;
    let aspect = rng.range(0.85, 1.15);
    let centre = (rng.range(0.12, 0.88) * size, rng.range(0.12, 0.88) * size);
    let rot = sin_cos(rng.angle());
    let base = contrasting(rng, local_mean(canvas, centre.0, centre.1, r), 110.0);
    let texture = Texture::random(rng, base, size / 64.0);
    let shade = (sin_cos(rng.angle()), rng.range(0.0, 2.5) * 64.0 / size);
    Placed {
        class,
        shape,
        centre,
        radius: (r * aspect, r / aspect),
        rot,
        base,
        texture,
        shade,
    }
}

/// Renders image `index` of `split` for a dataset `seed` at `size × size` pixels.
pub fn render(seed: u64, split: Split, index: usize, size: u32) -> SynthImage {
    let mut rng = Rng::for_image(seed, split, index, size);
    let n = size as usize;
    loop {
        if let Some(img) = try_render(&mut rng, size, n) {
            return img;
        }
    }
}

/// One attempt; `None` when fewer than two distinct classes ended up non-difficult.
fn try_render(rng: &mut Rng, size: u32, n: usize) -> Option<SynthImage> {
    let mut canvas = Canvas {
        size,
        rgb: vec![0.0; n * n * 3],
        owner: vec![0; n * n],
    };
    background(rng, &mut canvas);
    for _ in 0..rng.int(2, 5) {
        Distractor::random(rng, size as f64).draw(&mut canvas, false);
    }

    let count = match rng.int(0, 9) {
        0..=4 => 2,
        5..=8 => 3,
        _ => 4,
    };
    let first = rng.int(0, CLASSES.len() - 1);
    let second = (first + rng.int(1, CLASSES.len() - 1)) % CLASSES.len();
    let mut classes = vec![first, second];
    while classes.len() < count {
        classes.push(rng.int(0, CLASSES.len() - 1));
    }
    // Random drawing order so the guaranteed pair is not always at the back.
    for i in (1..classes.len()).rev() {
        classes.swap(i, rng.int(0, i));
    }

    let mut placed = Vec::with_capacity(count);
    let mut full = Vec::with_capacity(count);
    let mut in_image = Vec::with_capacity(count);
    for &class in &classes {
        let p = place(rng, class, &canvas);
        let (x0, y0, x1, y1) = p.extent();
        let (mut total, mut outside) = (0u32, 0u32);
        let id = placed.len() as u8 + 1;
        for y in y0..=y1 {
            for x in x0..=x1 {
                if !p.contains(x, y) {
                    continue;
                }
                total += 1;
                if x < 0 || y < 0 || x >= n as i64 || y >= n as i64 {
                    outside += 1;
                    continue;
                }
                let (x, y) = (x as u32, y as u32);
                let col = p.paint(x, y);
                canvas.set(x, y, col);
                canvas.owner[y as usize * n + x as usize] = id;
            }
        }
        full.push(total);
        in_image.push(total - outside);
        placed.push(p);
    }

    // Clutter in front of the objects now and then (occludes them; masks follow).
    if rng.chance(0.15) {
        for _ in 0..rng.int(1, 2) {
            Distractor::random(rng, size as f64).draw(&mut canvas, true);
        }
    }

    // Sensor noise over everything, then quantise.
    let amp = rng.range(0.0, 6.0);
    let key = rng.next_u64();
    let mut rgb = vec![0u8; n * n * 3];
    for y in 0..size {
        for x in 0..size {
            let i = (y * size + x) as usize;
            for c in 0..3 {
                let v = canvas.rgb[3 * i + c] + amp * (2.0 * hash01(key, x, y, c as u32) - 1.0);
                rgb[3 * i + c] = (v.clamp(0.0, 255.0) + 0.5).floor() as u8;
            }
        }
    }

    // Visible pixels, boxes, masks.
    let mut visible = vec![0u32; placed.len()];
    let mut bbox = vec![[u32::MAX, u32::MAX, 0, 0]; placed.len()];
    let mut mask = vec![0u8; n * n];
    for y in 0..size {
        for x in 0..size {
            let o = canvas.owner[(y * size + x) as usize];
            if o == 0 {
                continue;
            }
            let k = o as usize - 1;
            visible[k] += 1;
            let b = &mut bbox[k];
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
            mask[(y * size + x) as usize] = placed[k].class as u8 + 1;
        }
    }
    let image_area = (n * n) as f64;
    let mut objects = Vec::new();
    for k in 0..placed.len() {
        if visible[k] == 0 {
            continue;
        }
        let difficult = (visible[k] as f64) < DIFFICULT_MIN_AREA * image_area
            || (visible[k] as f64) < DIFFICULT_MIN_VISIBLE * full[k] as f64;
        objects.push(SynthObject {
            class: placed[k].class,
            bbox: bbox[k],
            visible_pixels: visible[k],
            full_pixels: full[k],
            truncated: in_image[k] < full[k],
            occluded: visible[k] < in_image[k],
            difficult,
        });
    }
    let mut easy = [false; CLASSES.len()];
    for o in objects.iter().filter(|o| !o.difficult) {
        easy[o.class] = true;
    }
    if easy.iter().filter(|&&e| e).count() < 2 {
        return None;
    }
    Some(SynthImage {
        size,
        rgb,
        mask,
        objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_cos_matches_std() {
        for i in -200..200 {
            let x = i as f64 * 0.173;
            let (s, c) = sin_cos(x);
            assert!((s - x.sin()).abs() < 1e-13, "sin {x}");
            assert!((c - x.cos()).abs() < 1e-13, "cos {x}");
        }
    }

    #[test]
    fn shapes_are_nonempty_and_bounded() {
        let shapes = [
            Shape::Disc,
            Shape::Square,
            Shape::Triangle,
            Shape::Star(star_vertices(0.4)),
            Shape::Cross(0.3),
            Shape::Ring(0.5),
        ];
        for s in shapes {
            let mut inside = 0;
            for j in -60..=60 {
                for i in -60..=60 {
                    let (u, v) = (i as f64 / 50.0, j as f64 / 50.0);
                    if s.contains(u, v) {
                        inside += 1;
                        assert!(u * u + v * v <= 1.2 * 1.2, "{s:?} leaks at {u},{v}");
                    }
                }
            }
            assert!(inside > 1000, "{s:?}: {inside}");
        }
    }
}
