//! Reader for datasets in the PASCAL VOC 2007 layout:
//!
//! ```text
//! <root>/ImageSets/Main/<split>.txt          image ids, one per line (first token)
//! <root>/ImageSets/Segmentation/<split>.txt  ids of the images with segmentation truth
//! <root>/JPEGImages/<id>.jpg
//! <root>/Annotations/<id>.xml                size and objects (name, difficult, bndbox)
//! <root>/SegmentationClass/<id>.png          palette PNG: class index + 1, 0, 255 = void
//! <root>/classes.txt                         optional class list, one name per line
//! ```
//!
//! Box coordinates are VOC's 1-based inclusive pixel coordinates: a box `xmin..=xmax`
//! covers the 0-based pixel columns `xmin − 1 ..= xmax − 1`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::dataset::{BinaryMask, ClassTruth, Dataset, LabelMap, Sample, VOC_CLASSES};

/// Which ground truth [`VocDataset::sample`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocGroundTruth {
    /// The union of each class's bounding boxes from `Annotations/<id>.xml`, with the
    /// all-difficult flag (the Pointing Game).
    Boxes,
    /// The class pixels of `SegmentationClass/<id>.png`, void pixels as the sample's
    /// ignore mask (mIoU).
    Segmentation,
}

impl VocGroundTruth {
    /// The folder under `ImageSets` whose split files list the images with this truth.
    pub fn image_set_folder(self) -> &'static str {
        match self {
            VocGroundTruth::Boxes => "Main",
            VocGroundTruth::Segmentation => "Segmentation",
        }
    }
}

/// One object of an annotation file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocObject {
    /// Index of the object's `name` in the class list.
    pub class_index: usize,
    /// The `difficult` flag (absent counts as 0).
    pub difficult: bool,
    /// 0-based inclusive pixel box `[xmin, ymin, xmax, ymax]`, clipped to the image.
    pub bbox: [usize; 4],
}

/// The parsed contents of `Annotations/<id>.xml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocAnnotation {
    /// `size/width`.
    pub width: usize,
    /// `size/height`.
    pub height: usize,
    /// The objects in file order.
    pub objects: Vec<VocObject>,
}

impl VocAnnotation {
    /// One [`ClassTruth`] per present class (ascending index): the union of the class's
    /// boxes, difficult ones included, and whether all of them are difficult. This is
    /// TorchRay's VOC mask; it skips a pair only when every box is difficult.
    pub fn class_truths(&self) -> Vec<ClassTruth> {
        let mut class_indices: Vec<usize> = self.objects.iter().map(|o| o.class_index).collect();
        class_indices.sort_unstable();
        class_indices.dedup();
        class_indices
            .into_iter()
            .map(|class_index| {
                let mut mask = BinaryMask::new(self.width, self.height);
                let mut all_difficult = true;
                for object in self.objects.iter().filter(|o| o.class_index == class_index) {
                    let [x0, y0, x1, y1] = object.bbox;
                    mask.fill_rect(x0, y0, x1, y1);
                    all_difficult &= object.difficult;
                }
                ClassTruth {
                    class_index,
                    mask,
                    all_difficult,
                }
            })
            .collect()
    }
}

/// A VOC-layout dataset split.
#[derive(Clone, Debug)]
pub struct VocDataset {
    root: PathBuf,
    class_names: Vec<String>,
    ids: Vec<String>,
    truth: VocGroundTruth,
}

impl VocDataset {
    /// Opens split `split` (e.g. `test`) of the dataset at `root`, listing the images
    /// of `ImageSets/Main/<split>.txt` for [`VocGroundTruth::Boxes`] or
    /// `ImageSets/Segmentation/<split>.txt` for [`VocGroundTruth::Segmentation`]. The
    /// class list is `<root>/classes.txt` if it exists, else [`VOC_CLASSES`].
    pub fn open(root: &Path, split: &str, truth: VocGroundTruth) -> Result<Self> {
        let split_file = root
            .join("ImageSets")
            .join(truth.image_set_folder())
            .join(format!("{split}.txt"));
        Self::with_split_file(root, &split_file, truth)
    }

    /// Like [`VocDataset::open`] with an explicit split file (first token of each
    /// non-blank line is an image id).
    pub fn with_split_file(root: &Path, split_file: &Path, truth: VocGroundTruth) -> Result<Self> {
        let class_names = read_class_names(root)?;
        let text = std::fs::read_to_string(split_file)
            .with_context(|| format!("reading split file {}", split_file.display()))?;
        let ids = text
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            root: root.to_owned(),
            class_names,
            ids,
            truth,
        })
    }

    /// The dataset root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Which ground truth [`Dataset::sample`] builds.
    pub fn ground_truth(&self) -> VocGroundTruth {
        self.truth
    }

    /// `JPEGImages/<id>.jpg`.
    pub fn image_path(&self, id: &str) -> PathBuf {
        self.root.join("JPEGImages").join(format!("{id}.jpg"))
    }

    /// `Annotations/<id>.xml`.
    pub fn annotation_path(&self, id: &str) -> PathBuf {
        self.root.join("Annotations").join(format!("{id}.xml"))
    }

    /// `SegmentationClass/<id>.png`.
    pub fn segmentation_path(&self, id: &str) -> PathBuf {
        self.root
            .join("SegmentationClass")
            .join(format!("{id}.png"))
    }

    /// Reads and parses `Annotations/<id>.xml`.
    pub fn annotation(&self, id: &str) -> Result<VocAnnotation> {
        let path = self.annotation_path(id);
        let xml = std::fs::read_to_string(&path)
            .with_context(|| format!("reading annotation {}", path.display()))?;
        parse_annotation(&xml, &self.class_names, &path)
    }

    /// Reads `SegmentationClass/<id>.png`, checking that every label is background,
    /// void or one of the classes.
    pub fn segmentation(&self, id: &str) -> Result<LabelMap> {
        let path = self.segmentation_path(id);
        let labels = read_label_png(&path)?;
        let num_classes = self.class_names.len();
        if let Some(&bad) = labels.labels().iter().find(|&&label| {
            label != LabelMap::VOID && label != LabelMap::BACKGROUND && label as usize > num_classes
        }) {
            bail!(
                "{}: label {bad} is neither background (0), void (255) nor a class (1..={num_classes})",
                path.display()
            );
        }
        Ok(labels)
    }

    /// The box ground truth of image `id`.
    pub fn box_sample(&self, id: &str) -> Result<Sample> {
        let annotation = self.annotation(id)?;
        Ok(Sample {
            id: id.to_owned(),
            image_path: self.image_path(id),
            width: annotation.width,
            height: annotation.height,
            present: annotation.class_truths(),
            ignore: None,
        })
    }

    /// The segmentation ground truth of image `id` (size from the PNG).
    pub fn segmentation_sample(&self, id: &str) -> Result<Sample> {
        let labels = self.segmentation(id)?;
        let present = labels
            .present_classes()
            .into_iter()
            .map(|class_index| ClassTruth {
                class_index,
                mask: labels.class_mask(class_index),
                all_difficult: false,
            })
            .collect();
        let void = labels.void_mask();
        Ok(Sample {
            id: id.to_owned(),
            image_path: self.image_path(id),
            width: labels.width(),
            height: labels.height(),
            present,
            ignore: (!void.is_empty()).then_some(void),
        })
    }
}

impl Dataset for VocDataset {
    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn ids(&self) -> &[String] {
        &self.ids
    }

    fn sample(&self, index: usize) -> Result<Sample> {
        let id = self
            .ids
            .get(index)
            .with_context(|| format!("image index {index} out of range ({})", self.ids.len()))?;
        match self.truth {
            VocGroundTruth::Boxes => self.box_sample(id),
            VocGroundTruth::Segmentation => self.segmentation_sample(id),
        }
    }
}

/// The class list of a VOC-layout dataset: `<root>/classes.txt` (one name per line,
/// blank lines skipped) if it exists, else the 20 standard classes.
pub fn read_class_names(root: &Path) -> Result<Vec<String>> {
    let path = root.join("classes.txt");
    if !path.exists() {
        return Ok(VOC_CLASSES.iter().map(|&name| name.to_owned()).collect());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading class list {}", path.display()))?;
    let mut names: Vec<String> = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        if names.iter().any(|known| known == name) {
            bail!(
                "{}:{}: class {name:?} is listed twice",
                path.display(),
                line_index + 1
            );
        }
        names.push(name.to_owned());
    }
    ensure!(!names.is_empty(), "{}: no class names", path.display());
    // Segmentation labels are class index + 1 in a byte, with 255 reserved for void.
    ensure!(
        names.len() < LabelMap::VOID as usize,
        "{}: {} classes, at most 254 fit VOC's label PNGs",
        path.display(),
        names.len()
    );
    Ok(names)
}

/// Parses the text of a VOC annotation file. `source` names the file in errors, which
/// also give the line of the offending element.
pub fn parse_annotation(xml: &str, class_names: &[String], source: &Path) -> Result<VocAnnotation> {
    let document = roxmltree::Document::parse(xml)
        .with_context(|| format!("{}: not well-formed XML", source.display()))?;
    let at = |node: roxmltree::Node| {
        format!(
            "{}:{}",
            source.display(),
            document.text_pos_at(node.range().start).row
        )
    };
    let root = document.root_element();
    ensure!(
        root.has_tag_name("annotation"),
        "{}: root element is <{}>, expected <annotation>",
        at(root),
        root.tag_name().name()
    );
    let size = child(root, "size").with_context(|| format!("{}: no <size>", at(root)))?;
    let width = parse_dimension(size, "width", &at)?;
    let height = parse_dimension(size, "height", &at)?;

    let mut objects = Vec::new();
    for object in root.children().filter(|n| n.has_tag_name("object")) {
        let name_node = child(object, "name")
            .with_context(|| format!("{}: <object> without <name>", at(object)))?;
        let name = name_node.text().unwrap_or("").trim();
        let class_index = class_names
            .iter()
            .position(|known| known == name)
            .with_context(|| format!("{}: unknown class {name:?}", at(name_node)))?;
        let difficult = match child(object, "difficult") {
            None => false,
            Some(node) => match node.text().map(str::trim) {
                Some("0") | None => false,
                Some("1") => true,
                Some(other) => bail!("{}: <difficult> is {other:?}, expected 0 or 1", at(node)),
            },
        };
        let bndbox = child(object, "bndbox")
            .with_context(|| format!("{}: <object> without <bndbox>", at(object)))?;
        let coordinate = |tag: &str| -> Result<f64> {
            let node = child(bndbox, tag)
                .with_context(|| format!("{}: <bndbox> without <{tag}>", at(bndbox)))?;
            let text = node.text().unwrap_or("").trim();
            text.parse::<f64>()
                .ok()
                .filter(|value| value.is_finite())
                .with_context(|| format!("{}: <{tag}> is {text:?}, expected a number", at(node)))
        };
        let (xmin, ymin, xmax, ymax) = (
            coordinate("xmin")?,
            coordinate("ymin")?,
            coordinate("xmax")?,
            coordinate("ymax")?,
        );
        ensure!(
            xmin <= xmax && ymin <= ymax,
            "{}: box ({xmin}, {ymin})–({xmax}, {ymax}) has a negative extent",
            at(bndbox)
        );
        // 1-based inclusive → 0-based inclusive, clipped to the image (a few VOC boxes
        // reach one pixel past the border; some tools write fractional coordinates,
        // which are rounded).
        let to_pixel =
            |value: f64, size: usize| (value.round() - 1.0).clamp(0.0, (size - 1) as f64) as usize;
        objects.push(VocObject {
            class_index,
            difficult,
            bbox: [
                to_pixel(xmin, width),
                to_pixel(ymin, height),
                to_pixel(xmax, width),
                to_pixel(ymax, height),
            ],
        });
    }
    Ok(VocAnnotation {
        width,
        height,
        objects,
    })
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    tag: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|n| n.has_tag_name(tag))
}

fn parse_dimension(
    size: roxmltree::Node,
    tag: &str,
    at: &impl Fn(roxmltree::Node) -> String,
) -> Result<usize> {
    let node = child(size, tag).with_context(|| format!("{}: <size> without <{tag}>", at(size)))?;
    let text = node.text().unwrap_or("").trim();
    match text.parse::<usize>() {
        Ok(value) if value > 0 => Ok(value),
        _ => bail!(
            "{}: <{tag}> is {text:?}, expected a positive integer",
            at(node)
        ),
    }
}

/// Reads a label PNG: the raw palette indices of an indexed PNG (VOC's
/// `SegmentationClass` files) or the values of an 8-bit (or less) grayscale PNG, without
/// expanding the palette to colours.
pub fn read_label_png(path: &Path) -> Result<LabelMap> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // IDENTITY (the default) keeps palette indices rather than expanding them to RGB.
    let decoder = png::Decoder::new(BufReader::new(file));
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{}: not a readable PNG", path.display()))?;
    let (color_type, bit_depth) = reader.output_color_type();
    ensure!(
        matches!(
            color_type,
            png::ColorType::Indexed | png::ColorType::Grayscale
        ),
        "{}: label PNGs must be palette or grayscale, this one is {color_type:?}",
        path.display()
    );
    let bits = match bit_depth {
        png::BitDepth::One => 1,
        png::BitDepth::Two => 2,
        png::BitDepth::Four => 4,
        png::BitDepth::Eight => 8,
        png::BitDepth::Sixteen => bail!(
            "{}: 16-bit label PNGs are not supported (labels are bytes)",
            path.display()
        ),
    };
    let buffer_size = reader
        .output_buffer_size()
        .with_context(|| format!("{}: image too large", path.display()))?;
    let mut buffer = vec![0u8; buffer_size];
    let frame = reader
        .next_frame(&mut buffer)
        .with_context(|| format!("{}: corrupt PNG data", path.display()))?;
    let width = frame.width as usize;
    let height = frame.height as usize;
    let mut labels = Vec::with_capacity(width * height);
    for row in buffer[..frame.line_size * height].chunks_exact(frame.line_size) {
        if bits == 8 {
            labels.extend_from_slice(&row[..width]);
        } else {
            // Sub-byte samples are packed most significant bits first.
            let per_byte = 8 / bits;
            let value_mask = (1u8 << bits) - 1;
            labels.extend((0..width).map(|x| {
                let shift = 8 - bits * (x % per_byte + 1);
                (row[x / per_byte] >> shift) & value_mask
            }));
        }
    }
    LabelMap::new(width, height, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    /// Writes a palette PNG with the given row-major indices at `bits` per pixel.
    fn write_palette_png(path: &Path, width: usize, height: usize, indices: &[u8], bits: u8) {
        let file = File::create(path).unwrap();
        let mut encoder =
            png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(match bits {
            2 => png::BitDepth::Two,
            _ => png::BitDepth::Eight,
        });
        // A 256-entry palette like VOC's (colours are irrelevant to the labels).
        let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
        encoder.set_palette(palette);
        let mut writer = encoder.write_header().unwrap();
        let data: Vec<u8> = if bits == 8 {
            indices.to_vec()
        } else {
            let per_byte = 8 / bits as usize;
            indices
                .chunks(width)
                .flat_map(|row| {
                    row.chunks(per_byte)
                        .map(|group| {
                            group.iter().enumerate().fold(0u8, |byte, (k, &v)| {
                                byte | (v << (8 - bits as usize * (k + 1)))
                            })
                        })
                        .collect::<Vec<u8>>()
                })
                .collect()
        };
        writer.write_image_data(&data).unwrap();
    }

    const ANNOTATION: &str = r#"<annotation>
	<folder>VOC2007</folder>
	<filename>000042.jpg</filename>
	<size><width>20</width><height>10</height><depth>3</depth></size>
	<object>
		<name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
		<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax><ymax>2</ymax></bndbox>
	</object>
	<object>
		<name>dog</name><difficult>1</difficult>
		<bndbox><xmin>10</xmin><ymin>5</ymin><xmax>10</xmax><ymax>5</ymax></bndbox>
	</object>
	<object>
		<name>cat</name><difficult>1</difficult>
		<bndbox><xmin>18</xmin><ymin>8</ymin><xmax>21</xmax><ymax>10</ymax></bndbox>
	</object>
</annotation>
"#;

    fn write_fixture(root: &Path, with_class_list: bool) {
        for folder in [
            "ImageSets/Main",
            "ImageSets/Segmentation",
            "Annotations",
            "JPEGImages",
            "SegmentationClass",
        ] {
            std::fs::create_dir_all(root.join(folder)).unwrap();
        }
        if with_class_list {
            std::fs::write(root.join("classes.txt"), "cat\ndog\n\n").unwrap();
        }
        std::fs::write(root.join("ImageSets/Main/test.txt"), "000042\n000043\n").unwrap();
        std::fs::write(root.join("ImageSets/Segmentation/test.txt"), "000042\n").unwrap();
        std::fs::write(root.join("Annotations/000042.xml"), ANNOTATION).unwrap();
        std::fs::write(
            root.join("Annotations/000043.xml"),
            "<annotation><size><width>4</width><height>4</height></size></annotation>",
        )
        .unwrap();
    }

    #[test]
    fn boxes_with_difficult_flags() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), true);
        let dataset = VocDataset::open(dir.path(), "test", VocGroundTruth::Boxes).unwrap();
        assert_eq!(dataset.class_names(), &classes(&["cat", "dog"]));
        assert_eq!(dataset.ids(), &classes(&["000042", "000043"]));

        let sample = dataset.sample(0).unwrap();
        assert_eq!(sample.id, "000042");
        assert_eq!(sample.image_path, dir.path().join("JPEGImages/000042.jpg"));
        assert_eq!((sample.width, sample.height), (20, 10));
        assert_eq!(sample.class_indices(), vec![0, 1]);

        // cat: one difficult box, 1-based (18, 8)–(21, 10) → pixels x 17..=19 (clipped), y 7..=9.
        let cat = sample.class(0).unwrap();
        assert!(cat.all_difficult);
        assert_eq!(cat.mask.count(), 3 * 3);
        assert!(cat.mask.get(17, 7) && cat.mask.get(19, 9) && !cat.mask.get(16, 7));

        // dog: a normal box (1,1)–(3,2) → x 0..=2, y 0..=1, plus one difficult pixel (9, 4).
        let dog = sample.class(1).unwrap();
        assert!(!dog.all_difficult);
        assert_eq!(dog.mask.count(), 3 * 2 + 1);
        assert!(dog.mask.get(0, 0) && dog.mask.get(2, 1) && dog.mask.get(9, 4));
        assert!(!dog.mask.get(3, 0) && !dog.mask.get(0, 2));

        let empty = dataset.sample(1).unwrap();
        assert!(empty.present.is_empty());
        assert!(dataset.sample(2).is_err());
    }

    #[test]
    fn default_class_list_is_voc20() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), false);
        let dataset = VocDataset::open(dir.path(), "test", VocGroundTruth::Boxes).unwrap();
        assert_eq!(dataset.num_classes(), 20);
        let sample = dataset.sample(0).unwrap();
        // cat = 7, dog = 11 in the standard order.
        assert_eq!(sample.class_indices(), vec![7, 11]);
    }

    #[test]
    fn palette_png_segmentation() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), true);
        #[rustfmt::skip]
        let indices = [
            0, 1, 1, 255,
            0, 2, 2, 255,
            0, 0, 2, 0,
        ];
        write_palette_png(
            &dir.path().join("SegmentationClass/000042.png"),
            4,
            3,
            &indices,
            8,
        );
        let dataset = VocDataset::open(dir.path(), "test", VocGroundTruth::Segmentation).unwrap();
        assert_eq!(dataset.ids(), &classes(&["000042"]));
        let sample = dataset.sample(0).unwrap();
        assert_eq!((sample.width, sample.height), (4, 3));
        assert_eq!(sample.class_indices(), vec![0, 1]);
        let cat = sample.class(0).unwrap();
        assert_eq!(cat.mask.count(), 2);
        assert!(cat.mask.get(1, 0) && cat.mask.get(2, 0));
        let dog = sample.class(1).unwrap();
        assert_eq!(dog.mask.count(), 3);
        let ignore = sample.ignore.as_ref().unwrap();
        assert_eq!(ignore.count(), 2);
        assert!(ignore.get(3, 0) && ignore.get(3, 1));

        // A label beyond the class list is an error naming the file.
        write_palette_png(
            &dir.path().join("SegmentationClass/000042.png"),
            2,
            1,
            &[0, 7],
            8,
        );
        let message = dataset.sample(0).unwrap_err().to_string();
        assert!(
            message.contains("000042.png") && message.contains("label 7"),
            "{message}"
        );
    }

    #[test]
    fn packed_palette_png_is_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("packed.png");
        let indices = [0, 1, 2, 3, 3, 2, 1, 0, 1, 1, 0, 2];
        write_palette_png(&path, 3, 4, &indices, 2);
        let labels = read_label_png(&path).unwrap();
        assert_eq!((labels.width(), labels.height()), (3, 4));
        assert_eq!(labels.labels(), &indices);
    }

    #[test]
    fn malformed_annotations_name_file_and_line() {
        let names = classes(&["cat", "dog"]);
        let source = Path::new("Annotations/x.xml");
        let unknown = ANNOTATION.replace("<name>cat</name>", "<name>cow</name>");
        let message = parse_annotation(&unknown, &names, source)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("x.xml:14") && message.contains("unknown class \"cow\""),
            "{message}"
        );

        let bad_number = ANNOTATION.replace("<xmax>3</xmax>", "<xmax>three</xmax>");
        let message = parse_annotation(&bad_number, &names, source)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("x.xml:7") && message.contains("<xmax>"),
            "{message}"
        );

        let inverted = ANNOTATION.replace("<xmax>3</xmax>", "<xmax>0</xmax>");
        assert!(parse_annotation(&inverted, &names, source).is_err());
        let no_size = ANNOTATION.replace("<width>20</width>", "");
        assert!(parse_annotation(&no_size, &names, source).is_err());
        let message = format!(
            "{:#}",
            parse_annotation("<annotation>", &names, source).unwrap_err()
        );
        assert!(message.contains("x.xml"), "{message}");
    }

    #[test]
    fn missing_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        assert!(VocDataset::open(dir.path(), "test", VocGroundTruth::Boxes).is_err());
        write_fixture(dir.path(), true);
        let dataset = VocDataset::open(dir.path(), "test", VocGroundTruth::Segmentation).unwrap();
        let message = format!("{:#}", dataset.sample(0).unwrap_err());
        assert!(message.contains("000042.png"), "{message}");
        std::fs::write(dir.path().join("classes.txt"), "cat\ncat\n").unwrap();
        let message = VocDataset::open(dir.path(), "test", VocGroundTruth::Boxes)
            .unwrap_err()
            .to_string();
        assert!(message.contains("classes.txt:2"), "{message}");
    }
}
