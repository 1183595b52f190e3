//! The synthetic benchmark: `rsp::eval::synth::generate` is deterministic and its VOC files are
//! self-consistent (masks vs boxes vs `difficult.txt`, at least two distinct classes per
//! image), and the committed classifiers `weights/synth_{vgg,resnet}.safetensors` load
//! with the crate's loader and, on the GPU, reproduce the PyTorch logits stored in their
//! metadata and classify generated test images well above chance.

use crate::common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rsp::eval::synth::{generate, render, Split, SynthOptions, CLASSES};
use rsp::gpu::Recorder;
use rsp::models::gpu::GpuModel;
use rsp::preprocess::{load_image, preprocess};
use rsp::{Model, Tensor};

fn tiny(seed: u64) -> SynthOptions {
    SynthOptions {
        train: 4,
        val: 2,
        test: 6,
        size: 64,
        seed,
    }
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn generation_is_byte_identical_for_a_seed() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let sa = generate(&tiny(7), a.path()).unwrap();
    let sb = generate(&tiny(7), b.path()).unwrap();
    assert_eq!(sa, sb);
    let (fa, fb) = (files(a.path()), files(b.path()));
    // 12 images × (jpg, xml, png) + classes, difficult, 3 + 3 split lists, 6 × 3 class lists.
    assert_eq!(fa.len(), 12 * 3 + 2 + 6 + 18, "{:?}", fa.keys());
    assert_eq!(fa, fb, "same seed, different files");

    generate(&tiny(8), c.path()).unwrap();
    let fc = files(c.path());
    let jpg = Path::new("JPEGImages/test_00000.jpg");
    assert_ne!(fa[jpg], fc[jpg], "different seeds gave the same image");

    // An image depends on (seed, split, index) only, not on the other split sizes.
    let d = tempfile::tempdir().unwrap();
    let mut opts = tiny(7);
    opts.train = 0;
    opts.test = 3;
    generate(&opts, d.path()).unwrap();
    let fd = files(d.path());
    assert_eq!(fd[jpg], fa[jpg]);
}

/// `(class, difficult, visible_pixels, [xmin, ymin, xmax, ymax] 1-based)` per object.
type XmlObject = (String, bool, u32, [u32; 4]);

fn tag<'a>(s: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = s.find(&open).unwrap_or_else(|| panic!("no <{name}>")) + open.len();
    let end = start + s[start..].find(&format!("</{name}>")).unwrap();
    s[start..end].trim()
}

fn parse_xml(xml: &str) -> (u32, u32, Vec<XmlObject>) {
    let size = tag(xml, "size");
    let (w, h) = (
        tag(size, "width").parse().unwrap(),
        tag(size, "height").parse().unwrap(),
    );
    let objects = xml
        .split("<object>")
        .skip(1)
        .map(|o| {
            let b = tag(o, "bndbox");
            let n = |t: &str| tag(b, t).parse::<u32>().unwrap();
            (
                tag(o, "name").to_string(),
                tag(o, "difficult") == "1",
                tag(o, "visible_pixels").parse().unwrap(),
                [n("xmin"), n("ymin"), n("xmax"), n("ymax")],
            )
        })
        .collect();
    (w, h, objects)
}

#[test]
fn voc_files_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut opts = tiny(3);
    opts.test = 24;
    let summary = generate(&opts, root).unwrap();
    assert_eq!(summary.images, [4, 2, 24]);

    let classes = std::fs::read_to_string(root.join("classes.txt")).unwrap();
    assert_eq!(classes.lines().collect::<Vec<_>>(), CLASSES);
    let difficult = std::fs::read_to_string(root.join("difficult.txt")).unwrap();
    let difficult: BTreeMap<&str, Vec<&str>> = difficult
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap(), f.collect())
        })
        .collect();
    assert_eq!(difficult.len(), 24);

    for split in Split::ALL {
        let list =
            std::fs::read_to_string(root.join(format!("ImageSets/Main/{}.txt", split.name())))
                .unwrap();
        for id in list.lines() {
            let xml = std::fs::read_to_string(root.join(format!("Annotations/{id}.xml"))).unwrap();
            let (w, h, objects) = parse_xml(&xml);
            let mask = image::open(root.join(format!("SegmentationClass/{id}.png")))
                .unwrap()
                .to_luma8();
            let photo = image::open(root.join(format!("JPEGImages/{id}.jpg"))).unwrap();
            assert_eq!((photo.width(), photo.height()), (w, h), "{id}");
            assert_eq!(mask.dimensions(), (w, h), "{id}");

            // ≥ 2 distinct classes that are not difficult.
            let mut easy: Vec<&str> = objects
                .iter()
                .filter(|o| !o.1)
                .map(|o| o.0.as_str())
                .collect();
            easy.sort();
            easy.dedup();
            assert!(easy.len() >= 2, "{id}: {objects:?}");

            for (c, name) in CLASSES.iter().enumerate() {
                let value = c as u8 + 1;
                let pixels: Vec<(u32, u32)> = mask
                    .enumerate_pixels()
                    .filter(|p| p.2[0] == value)
                    .map(|p| (p.0 + 1, p.1 + 1))
                    .collect();
                let mine: Vec<&XmlObject> = objects.iter().filter(|o| o.0 == *name).collect();
                // Visible areas partition the class's mask pixels exactly.
                let area: u32 = mine.iter().map(|o| o.2).sum();
                assert_eq!(
                    area as usize,
                    pixels.len(),
                    "{id} {name}: mask vs visible_pixels"
                );
                // The union of the boxes is the mask's box; each box is tight on its
                // object (its edges hold mask pixels of the class).
                if pixels.is_empty() {
                    assert!(mine.is_empty(), "{id} {name}");
                    continue;
                }
                let mbox = pixels
                    .iter()
                    .fold([u32::MAX, u32::MAX, 0, 0], |b, &(x, y)| {
                        [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)]
                    });
                let ubox = mine.iter().fold([u32::MAX, u32::MAX, 0, 0], |b, o| {
                    [
                        b[0].min(o.3[0]),
                        b[1].min(o.3[1]),
                        b[2].max(o.3[2]),
                        b[3].max(o.3[3]),
                    ]
                });
                assert_eq!(mbox, ubox, "{id} {name}: mask box vs union of boxes");
                for o in &mine {
                    let b = o.3;
                    assert!(
                        b[0] >= 1 && b[1] >= 1 && b[2] <= w && b[3] <= h,
                        "{id} {o:?}"
                    );
                    let inside = |x: u32, y: u32| pixels.contains(&(x, y));
                    assert!((b[1]..=b[3]).any(|y| inside(b[0], y)), "{id} {o:?} left");
                    assert!((b[1]..=b[3]).any(|y| inside(b[2], y)), "{id} {o:?} right");
                    assert!((b[0]..=b[2]).any(|x| inside(x, b[1])), "{id} {o:?} top");
                    assert!((b[0]..=b[2]).any(|x| inside(x, b[3])), "{id} {o:?} bottom");
                }
                if split == Split::Test {
                    // EBP-style difficult pair: scored, small, another class present.
                    let scored = mine.iter().any(|o| !o.1);
                    let area: u64 = mine.iter().map(|o| o.2 as u64).sum();
                    let others = objects.iter().any(|o| o.0 != *name);
                    let small =
                        (area as f64) < rsp::eval::synth::POINTING_SMALL_AREA * (w * h) as f64;
                    let hard = scored && others && small;
                    assert_eq!(
                        difficult[id][c],
                        if hard { "1" } else { "0" },
                        "{id} {name}"
                    );
                }
            }
            if split == Split::Test {
                assert!(objects.iter().all(|o| CLASSES.contains(&o.0.as_str())));
            }
        }
    }
}

#[test]
fn bad_options_are_errors_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = tiny(1);
    opts.size = 8;
    let e = generate(&opts, dir.path()).unwrap_err();
    assert!(format!("{e:#}").contains("size 8"), "{e:#}");

    let file = dir.path().join("a_file");
    std::fs::write(&file, b"x").unwrap();
    let e = generate(&tiny(1), &file).unwrap_err();
    assert!(format!("{e:#}").contains("a_file"), "{e:#}");
}

#[test]
fn cli_writes_the_dataset_and_rejects_bad_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let run = |size: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rsp"))
            .args(["synth", "--out", out.to_str().unwrap(), "--train", "2"])
            .args(["--val", "1", "--test", "1", "--size", size, "--seed", "5"])
            .output()
            .unwrap()
    };
    let o = run("48");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("train 2, val 1, test 1"), "{stdout}");
    let img = image::open(out.join("JPEGImages/train_00001.jpg")).unwrap();
    assert_eq!((img.width(), img.height()), (48, 48));
    assert_eq!(
        std::fs::read_to_string(out.join("ImageSets/Main/test.txt")).unwrap(),
        "test_00000\n"
    );

    let o = run("8");
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("size 8"), "{stderr}");
}

// ------------------------------------------------------------------ trained weights

/// What the trainer stored in the `rsp_synth` metadata entry (a JSON string).
struct Meta {
    classes: Vec<String>,
    size: u32,
    dataset_seed: u64,
    ids: Vec<String>,
    logits: Vec<Vec<f32>>,
}

/// The JSON value text of `"key": ...` (the metadata is flat enough for this).
fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\": ");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("metadata lacks {key}"))
        + pat.len();
    let rest = &json[start..];
    let mut depth = 0;
    for (i, ch) in rest.char_indices() {
        match ch {
            '[' | '{' => depth += 1,
            ']' | '}' if depth == 0 => return &rest[..i],
            ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return &rest[..=i];
                }
            }
            ',' if depth == 0 => return &rest[..i],
            _ => {}
        }
    }
    rest
}

fn strings(list: &str) -> Vec<String> {
    list.trim_matches(['[', ']'])
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect()
}

fn read_meta(path: &Path) -> Meta {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("rsp_synth"))
        .unwrap_or_else(|| panic!("{}: no rsp_synth metadata", path.display()))
        .clone();
    let logits = json_field(&json, "reference_logits");
    let logits = logits[1..logits.len() - 1]
        .split("], [")
        .map(|row| {
            row.trim_matches(['[', ']'])
                .split(',')
                .map(|v| v.trim().parse().unwrap())
                .collect()
        })
        .collect();
    Meta {
        classes: strings(json_field(&json, "classes")),
        size: json_field(&json, "input_size").parse().unwrap(),
        dataset_seed: json_field(&json, "dataset_seed").parse().unwrap(),
        ids: strings(json_field(&json, "reference_ids")),
        logits,
    }
}

fn check_weights(name: &str) {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/weights")).join(name);
    let meta = read_meta(&path);
    assert_eq!(meta.classes, CLASSES, "{name}: class names");
    let n = meta.ids.len();
    assert!(
        n >= 8 && meta.logits.len() == n,
        "{name}: {n} reference images"
    );

    // The same test images the trainer saw: the test split of the dataset seed.
    let dir = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        train: 0,
        val: 0,
        test: n,
        size: meta.size,
        seed: meta.dataset_seed,
    };
    generate(&opts, dir.path()).unwrap();
    let side = meta.size as usize;
    let mut data = Vec::with_capacity(n * 3 * side * side);
    for (i, id) in meta.ids.iter().enumerate() {
        assert_eq!(*id, Split::Test.id(i));
        let img = load_image(&dir.path().join(format!("JPEGImages/{id}.jpg"))).unwrap();
        data.extend_from_slice(&preprocess(&img, meta.size, meta.size).tensor.data);
    }
    let x = Tensor::new(vec![n, 3, side, side], data);

    let model = Model::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert_eq!(model.num_classes(), CLASSES.len());
    let ctx = common::gpu();
    let gm = GpuModel::upload(ctx, &model);
    let mut rec = Recorder::new(ctx);
    let xg = ctx.upload(&x);
    let fwd = gm.forward(&mut rec, &xg);
    rec.submit();
    drop(rec);
    let logits = ctx.read(&fwd.logits).unwrap();

    // (1) Close to PyTorch's logits (JPEG decoders differ by a level or so per pixel).
    let mut worst = 0.0f32;
    let mut sign_agree = 0;
    for (i, row) in meta.logits.iter().enumerate() {
        for (c, &want) in row.iter().enumerate() {
            let got = logits.data[i * CLASSES.len() + c];
            worst = worst.max((got - want).abs() / (1.0 + want.abs()));
            sign_agree += ((got > 0.0) == (want > 0.0)) as usize;
        }
    }
    let labels = n * CLASSES.len();
    println!(
        "{name}: worst relative logit difference {worst:.4}, sign agreement {sign_agree}/{labels}"
    );
    assert!(
        worst < 0.1,
        "{name}: logits differ from PyTorch's by {worst}"
    );
    assert!(
        sign_agree * 100 >= labels * 97,
        "{name}: {sign_agree}/{labels} signs agree"
    );

    // (2) Well above chance against the ground truth (difficult-only classes ignored).
    let (mut correct, mut counted, mut majority) = (0, 0, 0);
    for i in 0..n {
        let truth = render(meta.dataset_seed, Split::Test, i, meta.size);
        let (present, hard) = (truth.present(), truth.difficult_classes());
        for c in 0..CLASSES.len() {
            if hard[c] {
                continue;
            }
            counted += 1;
            correct += ((logits.data[i * CLASSES.len() + c] > 0.0) == present[c]) as usize;
            majority += !present[c] as usize;
        }
    }
    let acc = correct as f64 / counted as f64;
    let base = majority as f64 / counted as f64;
    println!("{name}: label accuracy {acc:.3} (all-absent baseline {base:.3})");
    assert!(
        acc >= 0.8 && acc >= base + 0.15,
        "{name}: accuracy {acc} vs baseline {base}"
    );
}

#[test]
fn synth_vgg_loads_and_classifies() {
    check_weights("synth_vgg.safetensors");
}

#[test]
fn synth_resnet_loads_and_classifies() {
    check_weights("synth_resnet.safetensors");
}
