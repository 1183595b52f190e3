//! Walking a dataset for a benchmark: the dataset behind a `--dataset` name, which of
//! its images a run (or one shard of it) scores, and the walk that batches (image,
//! class) pairs of equal preprocessed size into GPU passes, skips what a resumable log
//! already holds and hands each (image, method)'s maps to a [`Scorer`] in the split's
//! order, methods in the run's order — so a log's records come in one order whatever
//! the batching, the shards or the workers were ([`walk_dataset`]).

use std::path::{Path, PathBuf};

use std::collections::HashMap;

use anyhow::{ensure, Result};

use super::coco::CocoDataset;
use super::dataset::{Dataset, Sample};
use super::engine::{EvalMethod, MapEngine};
use super::map::Heatmap;
use super::voc::{VocDataset, VocGroundTruth};
use crate::error::Param;
use crate::explain::Method;
use crate::models::Model;
use crate::preprocess::{load_image, preprocess_whole, Normalisation};
use crate::tensor::Tensor;

/// The dataset behind `dataset` (`voc07`, `coco14`, or a directory in VOC layout),
/// with `root` for the first two and `split` the image list of VOC layouts; and its
/// label in tables and log names. Datasets without a segmentation list (the generated
/// one) segment every image of the Main list.
pub fn open_dataset(
    dataset: &str,
    root: Option<&Path>,
    split: &str,
    truth: VocGroundTruth,
) -> Result<(Box<dyn Dataset>, String)> {
    let root = || {
        root.ok_or_else(|| {
            crate::error::bad_option(Param::Root, format!("is needed for the dataset {dataset}"))
        })
    };
    let voc = |root: &Path| -> Result<VocDataset> {
        let seg_list = root
            .join("ImageSets/Segmentation")
            .join(format!("{split}.txt"));
        if truth == VocGroundTruth::Segmentation && !seg_list.exists() {
            let main = root.join("ImageSets/Main").join(format!("{split}.txt"));
            return VocDataset::with_split_file(root, &main, truth);
        }
        VocDataset::open(root, split, truth)
    };
    match dataset {
        "voc07" => Ok((Box::new(voc(root()?)?), "voc07".into())),
        "coco14" => {
            ensure!(
                truth == VocGroundTruth::Boxes,
                "mIoU needs VOC-style segmentation masks; COCO is for the Pointing Game"
            );
            let r = root()?;
            let ds = CocoDataset::open(
                &r.join("annotations/instances_val2014.json"),
                &r.join("val2014"),
            )?;
            Ok((Box::new(ds), "coco14".into()))
        }
        dir => {
            let path = PathBuf::from(dir);
            if !path.is_dir() {
                crate::error::bail_option!(
                    Param::Dataset,
                    "{dir}: not voc07, coco14 or a directory in VOC layout"
                );
            }
            let label = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "dataset".into());
            Ok((Box::new(voc(&path)?), label))
        }
    }
}

/// Parses a comma-separated list of method names (`--methods`), without repeats;
/// `allow_center`: the Pointing Game's center baseline may be named.
pub fn parse_methods(list: &str, allow_center: bool) -> Result<Vec<EvalMethod>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(m) = EvalMethod::parse(name) else {
            let mut known = Method::ALL.map(Method::name).to_vec();
            if allow_center {
                known.push(EvalMethod::Center.name());
            }
            crate::error::bail_option!(
                Param::Methods,
                "has an unknown method '{name}' (known: {})",
                known.join(", ")
            );
        };
        if m == EvalMethod::Center && !allow_center {
            crate::error::bail_option!(
                Param::Methods,
                "names '{}', a Pointing Game baseline only",
                EvalMethod::Center.name()
            );
        }
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        crate::error::bail_option!(Param::Methods, "is empty");
    }
    Ok(out)
}

/// A model's label in tables and log names: its file stem.
pub fn model_label(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// Loads the weights at `path` and checks that the model's outputs are the dataset's
/// `classes`.
pub fn load_model(path: &Path, classes: usize) -> Result<Model> {
    let model = Model::from_file(path)?;
    if model.num_classes() != classes {
        crate::error::bail_invalid!(
            "{}: the model has {} outputs but the dataset has {classes} classes",
            path.display(),
            model.num_classes()
        );
    }
    Ok(model)
}

/// The datasets `--dataset` names (any other value is a folder in VOC layout).
pub const NAMED_DATASETS: [&str; 2] = ["voc07", "coco14"];

/// The image list of VOC layouts a run reads by default.
pub const DEFAULT_SPLIT: &str = "test";
/// The folder of logs and tables by default.
pub const DEFAULT_OUT: &str = "rsp-eval";
/// mIoU's binarisation threshold by default: the mean of the map's positive values.
pub const DEFAULT_THRESHOLD: &str = "mean";

/// One of `count` shards of a run: the images whose index in the split is ≡ `index`
/// (mod `count`), written `I/N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Whether the image at `index` of the split is this shard's.
    pub fn owns(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if count >= 1 && index < count => Ok(Shard { index, count }),
            _ => Err(format!(
                "'{s}' is not a shard I/N with 0 <= I < N (e.g. 0/4 for the first of four)"
            )),
        }
    }
}

/// How a benchmark makes its maps and how much of the dataset it walks.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Shorter side of each image after resizing (aspect kept, no crop); 0 keeps the
    /// original size.
    pub size: u32,
    /// Pixel normalisation of the model's training.
    pub norm: Normalisation,
    /// (image, class) pairs per GPU batch.
    pub batch: usize,
    /// Only the first images of the split.
    pub limit: Option<usize>,
    /// Only one shard of those images.
    pub shard: Option<Shard>,
    /// Stop after this many newly scored images, without a table (an interrupted run).
    pub stop_after: Option<usize>,
}

impl RunOptions {
    /// The defaults `rsp eval` and Python's `rsp.eval_*` share: 224 px, torchvision
    /// normalisation, 16 (image, class) pairs per batch, the whole split, unsharded.
    pub const DEFAULT: RunOptions = RunOptions {
        size: 224,
        norm: Normalisation::Torchvision,
        batch: 16,
        limit: None,
        shard: None,
        stop_after: None,
    };

    /// Refuses an empty batch.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            crate::error::bail_option!(Param::Batch, "must be at least 1");
        }
        Ok(())
    }

    /// The images of the run among a split of `len`: the first [`RunOptions::limit`],
    /// all of them (a merge expects every one), before sharding.
    pub fn run_images(&self, len: usize) -> std::ops::Range<usize> {
        0..self.limit.map_or(len, |l| l.min(len))
    }

    /// The images this process scores: the run's, of its shard.
    pub fn images(&self, len: usize) -> Vec<usize> {
        self.run_images(len)
            .filter(|&i| self.shard.is_none_or(|s| s.owns(i)))
            .collect()
    }
}

/// What a caller shows while a dataset is walked (a progress bar on the command line;
/// nothing in Python).
pub trait Progress {
    /// A walk over `images` images starts.
    fn begin(&mut self, _images: usize, _label: &str) {}
    /// One more image is done (scored, or found in the log).
    fn advance(&mut self) {}
    /// The walk ended; `stopped`: cut short by [`RunOptions::stop_after`].
    fn end(&mut self, _stopped: bool) {}
}

/// Shows nothing.
pub struct Quiet;

impl Progress for Quiet {}

/// What a benchmark does with the maps of one image: which classes it needs, which
/// (image, method) results it already has, and how it scores and records new ones.
pub trait Scorer {
    /// Classes of `sample` to explain.
    fn classes(&self, sample: &Sample) -> Vec<usize>;
    /// Whether this (image, method) is already recorded.
    fn is_done(&self, image: &str, method: EvalMethod) -> bool;
    /// Scores and records `maps` (one per class of [`Scorer::classes`]; `None` for the
    /// center baseline) of the preprocessed `input` `[3, H, W]` (`None` where no image
    /// was loaded).
    fn score(
        &mut self,
        sample: &Sample,
        method: EvalMethod,
        maps: Option<&[Heatmap]>,
        input: Option<&Tensor>,
    ) -> Result<()>;
}

/// One image waiting for its maps.
struct Pending {
    sample: Sample,
    /// The preprocessed image; `None` when nothing is explained (no class, or only the
    /// center baseline).
    input: Option<Tensor>,
    /// Classes to explain.
    classes: Vec<usize>,
    /// Methods still to record for this image, in the run's order.
    methods: Vec<EvalMethod>,
}

/// Runs every engine method of `group` (one GPU pass per method over the group's
/// images), then scores the group image by image, methods in the run's order.
fn flush(group: &mut Vec<Pending>, engine: &MapEngine, scorer: &mut dyn Scorer) -> Result<()> {
    let mut maps: HashMap<(usize, Method), Vec<Heatmap>> = HashMap::new();
    for method in Method::ALL {
        let members: Vec<usize> = (0..group.len())
            .filter(|&i| {
                group[i].input.is_some() && group[i].methods.contains(&EvalMethod::Engine(method))
            })
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut inputs = Vec::new();
        let mut targets = Vec::new();
        for &i in &members {
            for &cls in &group[i].classes {
                inputs.extend(group[i].input.as_ref());
                targets.push(cls);
            }
        }
        let (mut batch_maps, _) = engine.maps(method, &Tensor::stack(&inputs), &targets)?;
        for &i in members.iter().rev() {
            let k = group[i].classes.len();
            let tail = batch_maps.split_off(batch_maps.len() - k);
            maps.insert((i, method), tail);
        }
    }
    for (i, p) in group.iter().enumerate() {
        for &m in &p.methods {
            match m {
                EvalMethod::Center => scorer.score(&p.sample, m, None, None)?,
                EvalMethod::Engine(method) => match &p.input {
                    // Nothing to explain (e.g. every box difficult): an empty outcome.
                    None => scorer.score(&p.sample, m, Some(&[]), None)?,
                    Some(input) => {
                        let maps = maps.remove(&(i, method)).expect("maps of every member");
                        scorer.score(&p.sample, m, Some(&maps), Some(input))?
                    }
                },
            }
        }
    }
    group.clear();
    Ok(())
}

/// How a walk over a dataset ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walked {
    /// Every image of the run is scored (now or in an earlier run).
    Complete,
    /// [`RunOptions::stop_after`] cut it short after that many new images.
    Stopped(usize),
}

/// Walks `images` (indices into the dataset, ascending), batching images of equal
/// preprocessed size into GPU passes of at most [`RunOptions::batch`] (image, class)
/// pairs and skipping (image, method) results the scorer already has. The scorer meets
/// the images in `images`' order, each image's methods in `methods`' order.
#[allow(clippy::too_many_arguments)]
pub fn walk_dataset(
    opts: &RunOptions,
    ds: &dyn Dataset,
    images: &[usize],
    engine: &MapEngine,
    methods: &[EvalMethod],
    scorer: &mut dyn Scorer,
    progress: &mut dyn Progress,
    label: &str,
) -> Result<Walked> {
    progress.begin(images.len(), label);
    let mut group: Vec<Pending> = Vec::new();
    let mut fresh = 0usize;
    let batch = opts.batch.max(1);
    for &index in images {
        let sample = ds.sample(index)?;
        let todo: Vec<EvalMethod> = methods
            .iter()
            .copied()
            .filter(|&m| !scorer.is_done(&sample.id, m))
            .collect();
        if todo.is_empty() {
            progress.advance();
            continue;
        }
        if let Some(stop) = opts.stop_after.filter(|&stop| fresh >= stop) {
            flush(&mut group, engine, scorer)?;
            progress.end(true);
            return Ok(Walked::Stopped(stop));
        }
        fresh += 1;
        let classes = scorer.classes(&sample);
        let explains = todo.iter().any(|m| matches!(m, EvalMethod::Engine(_)));
        if group.len() >= batch {
            flush(&mut group, engine, scorer)?;
        }
        let input = if explains && !classes.is_empty() {
            let img = load_image(&sample.image_path)?;
            let input = preprocess_whole(&img, (opts.size > 0).then_some(opts.size), opts.norm);
            let pairs: usize = group
                .iter()
                .filter(|p| p.input.is_some())
                .map(|p| p.classes.len())
                .sum();
            let first_shape = group
                .iter()
                .find_map(|p| p.input.as_ref().map(|t| &t.shape));
            if first_shape.is_some_and(|s| *s != input.shape || pairs + classes.len() > batch) {
                flush(&mut group, engine, scorer)?;
            }
            Some(input)
        } else {
            None
        };
        group.push(Pending {
            sample,
            input,
            classes,
            methods: todo,
        });
        progress.advance();
    }
    flush(&mut group, engine, scorer)?;
    progress.end(false);
    Ok(Walked::Complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_run_images_without_overlap() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(" 0 / 1 ".parse::<Shard>(), Ok(Shard { index: 0, count: 1 }));
        for bad in ["3/3", "1/0", "-1/3", "1", "a/b", "1/3/4"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("not a shard I/N"), "{bad}: {err}");
        }
        let mut seen = Vec::new();
        for index in 0..3 {
            let opts = RunOptions {
                limit: Some(8),
                shard: Some(Shard { index, count: 3 }),
                ..RunOptions::DEFAULT
            };
            seen.extend(opts.images(10));
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..8).collect::<Vec<_>>());
        let first = RunOptions {
            shard: Some(Shard { index: 0, count: 3 }),
            ..RunOptions::DEFAULT
        };
        assert_eq!(first.images(7), vec![0, 3, 6]);
        assert_eq!(first.run_images(7), 0..7);
    }
}
