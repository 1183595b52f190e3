//! The `rsp` binary end to end: golden maps through the CLI, determinism, adapters,
//! and clear errors with a non-zero exit for bad input.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use rsp::compare::{compare, Tolerance};
use rsp::models::weights::TensorFile;

fn rsp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(args)
        .output()
        .expect("run rsp")
}

fn golden_path(case: &str) -> String {
    common::golden_dir()
        .join(format!("{case}.safetensors"))
        .to_string_lossy()
        .into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_reproduces_golden_final_map_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden_path("vgg_tiny");
    let mut outputs = Vec::new();
    for run in 0..2 {
        let out = dir.path().join(format!("run{run}.safetensors"));
        let o = rsp(&[
            "--weights",
            &g,
            "--save-relevance",
            out.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
            &g,
        ]);
        assert!(o.status.success(), "rsp failed: {}", stderr(&o));
        assert!(dir.path().join("vgg_tiny.rsp.png").exists());
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(
        outputs[0], outputs[1],
        "two identical runs gave different bytes"
    );

    let golden = common::golden("vgg_tiny");
    let saved = TensorFile::read(&dir.path().join("run0.safetensors")).unwrap();
    let rel = saved.get("relevance").unwrap();
    compare(
        "relevance",
        rel,
        golden.get("rsp.gradcam.out").unwrap(),
        Tolerance::GOLDEN,
    )
    .unwrap();
    compare(
        "init",
        saved.get("init").unwrap(),
        golden.get("init.gradcam").unwrap(),
        Tolerance::GOLDEN,
    )
    .unwrap();
    compare(
        "logits",
        saved.get("logits").unwrap(),
        golden.get("logits").unwrap(),
        Tolerance::GOLDEN,
    )
    .unwrap();
    assert_eq!(
        saved.get_int("target").unwrap(),
        golden.get_int("target").unwrap()
    );
    let heat = saved.get("heatmap").unwrap();
    assert_eq!(heat.shape, vec![1, 32, 32]);
    let expected: f32 = (0..3).map(|c| rel.data[c * 1024 + 5]).sum();
    assert!((heat.data[5] - expected).abs() <= 1e-6 * expected.abs().max(1.0));
}

#[test]
fn cli_comparative_and_given_init_match_golden() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden_path("resnet_tiny");
    let out = dir.path().join("cmp.safetensors");
    let o = rsp(&[
        "--weights",
        &g,
        "--init",
        "comparative",
        "--compare-k",
        "3",
        "--save-relevance",
        out.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        &g,
    ]);
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    let golden = common::golden("resnet_tiny");
    let saved = TensorFile::read(&out).unwrap();
    compare(
        "relevance",
        saved.get("relevance").unwrap(),
        golden.get("rsp.comparative.out").unwrap(),
        Tolerance::GOLDEN,
    )
    .unwrap();

    // --init-relevance with the golden Grad-CAM init reproduces the Grad-CAM map.
    let init_file = dir.path().join("init.safetensors");
    let bytes = rsp::models::weights::to_safetensors_bytes(
        &[("init", golden.get("init.gradcam").unwrap())],
        &[],
    )
    .unwrap();
    std::fs::write(&init_file, bytes).unwrap();
    let out2 = dir.path().join("given.safetensors");
    let o = rsp(&[
        "--weights",
        &g,
        "--init-relevance",
        init_file.to_str().unwrap(),
        "--save-relevance",
        out2.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        &g,
    ]);
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    let saved = TensorFile::read(&out2).unwrap();
    compare(
        "relevance",
        saved.get("relevance").unwrap(),
        golden.get("rsp.gradcam.out").unwrap(),
        Tolerance::GOLDEN,
    )
    .unwrap();
}

#[test]
fn cli_explains_an_image_file_with_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let img_path = dir.path().join("photo.png");
    let img = image::RgbImage::from_fn(50, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 128])
    });
    img.save(&img_path).unwrap();
    let o = rsp(&[
        "--weights",
        &golden_path("vgg_tiny"),
        "--size",
        "32",
        "--out",
        dir.path().to_str().unwrap(),
        img_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("photo.rsp.png"), "{stdout}");
    let heat = image::open(dir.path().join("photo.rsp.png")).unwrap();
    assert_eq!((heat.width(), heat.height()), (32, 32));
    assert!(dir.path().join("photo.rsp-overlay.png").exists());
}

#[test]
fn cli_lists_adapters() {
    let o = rsp(&["adapters"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("max storage binding"), "{s}");
}

#[test]
fn cli_bad_inputs_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let g = golden_path("vgg_tiny");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--weights".into(),
                "/nonexistent/w.safetensors".into(),
                g.clone(),
            ],
            "/nonexistent/w.safetensors",
        ),
        (
            vec![
                "--weights".into(),
                g.clone(),
                "--target".into(),
                "10".into(),
                g.clone(),
            ],
            "--target 10",
        ),
        (
            vec!["--weights".into(), g.clone(), format!("{d}/missing.png")],
            "missing.png",
        ),
        (
            vec![
                "--weights".into(),
                g.clone(),
                "--compare-k".into(),
                "1".into(),
                g.clone(),
            ],
            "--compare-k",
        ),
        (
            vec!["--backend".into(), "nosuch".into(), g.clone()],
            "nosuch",
        ),
        (
            vec![
                "--weights".into(),
                g.clone(),
                "--model".into(),
                "vgg16".into(),
                g.clone(),
            ],
            "--model",
        ),
    ];
    for (args, needle) in cases {
        let mut full = args.clone();
        full.extend(["--out".to_string(), d.to_string()]);
        let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
        let o = rsp(&refs);
        assert!(!o.status.success(), "{args:?} should fail");
        let e = stderr(&o);
        assert!(
            e.contains(needle),
            "{args:?}: message should name '{needle}', got: {e}"
        );
        assert!(!e.contains("panicked"), "{args:?} panicked: {e}");
    }
    // A text file posing as an image: reported, and no heatmap written for it.
    let fake = Path::new(d).join("fake.png");
    std::fs::write(&fake, b"not an image").unwrap();
    let o = rsp(&["--weights", &g, "--out", d, fake.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("fake.png"));
    assert!(!Path::new(d).join("fake.rsp.png").exists());
}

#[test]
fn cli_explains_features_only_weights_from_a_given_init() {
    // Reference cases at VGG16 size ship without their classifier; they are checked
    // by starting from the stored initial relevance.
    let dir = tempfile::tempdir().unwrap();
    let golden = common::golden("vgg_tiny");
    let features: Vec<(&str, &rsp::Tensor)> = golden
        .floats
        .iter()
        .filter(|(k, _)| k.starts_with("model.features.") || *k == "input")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    assert!(features.len() > 2);
    let weights = dir.path().join("features_only.safetensors");
    std::fs::write(
        &weights,
        rsp::models::weights::to_safetensors_bytes(&features, &[]).unwrap(),
    )
    .unwrap();
    let init = dir.path().join("init.safetensors");
    std::fs::write(
        &init,
        rsp::models::weights::to_safetensors_bytes(
            &[("init", golden.get("init.gradcam").unwrap())],
            &[],
        )
        .unwrap(),
    )
    .unwrap();
    let out = dir.path().join("out.safetensors");
    let w = weights.to_str().unwrap();
    let o = rsp(&[
        "--weights",
        w,
        "--init-relevance",
        init.to_str().unwrap(),
        "--save-relevance",
        out.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        w,
    ]);
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    let saved = TensorFile::read(&out).unwrap();
    compare(
        "relevance",
        saved.get("relevance").unwrap(),
        golden.get("rsp.gradcam.out").unwrap(),
        Tolerance::GOLDEN,
    )
    .unwrap();
    assert_eq!(saved.get("logits").unwrap().shape, vec![1, 0]);
    assert_eq!(saved.get_int("target").unwrap(), &[-1]);

    // Without a given init there is no way to choose the relevance: a clear error.
    let o = rsp(&["--weights", w, "--out", dir.path().to_str().unwrap(), w]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--init-relevance"), "{}", stderr(&o));
}

#[test]
fn target_accepts_indices_and_imagenet_names() {
    use rsp::cli::resolve_target;
    assert_eq!(resolve_target("281", 1000).unwrap(), 281);
    assert_eq!(resolve_target("tabby", 1000).unwrap(), 281);
    assert_eq!(resolve_target("Tabby Cat", 1000).unwrap(), 281);
    assert_eq!(resolve_target("goldfis", 1000).unwrap(), 1);
    assert!(
        resolve_target("goldf", 1000).is_err(),
        "goldfish and goldfinch share \"goldf\""
    );
    let e = resolve_target("tab", 1000).unwrap_err().to_string();
    assert!(
        e.contains("ambiguous") && e.contains("281") && e.contains("846"),
        "{e}"
    );
    assert!(resolve_target("zzzz", 1000)
        .unwrap_err()
        .to_string()
        .contains("no ImageNet class"));
    assert!(resolve_target("1000", 1000)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(resolve_target("tabby", 10)
        .unwrap_err()
        .to_string()
        .contains("give an index"));
}

#[test]
fn cli_target_by_name_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden_path("resnet_tiny");
    let out = dir.path().join("t.safetensors");
    let o = rsp(&[
        "--weights",
        &g,
        "--target",
        "tabby",
        "--save-relevance",
        out.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        &g,
    ]);
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    let saved = TensorFile::read(&out).unwrap();
    assert_eq!(saved.get_int("target").unwrap(), &[281]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("explained class: 281"));
}

#[test]
fn cli_reports_more_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let g = golden_path("vgg_tiny");
    // A directory and an empty file as inputs; a corrupt weights file.
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    for (args, needle) in [
        (vec!["--weights", &g, "--out", d, d], "is a directory"),
        (
            vec!["--weights", &g, "--out", d, empty.to_str().unwrap()],
            "empty.png",
        ),
        (
            vec!["--weights", corrupt.to_str().unwrap(), "--out", d, &g],
            "corrupt.safetensors",
        ),
    ] {
        let o = rsp(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        let e = stderr(&o);
        assert!(e.contains(needle), "{args:?}: expected '{needle}' in: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
    // One bad image among good inputs: the good one is still explained, exit code 1.
    let good = dir.path().join("good.png");
    image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([x as u8 * 6, y as u8 * 6, 90]))
        .save(&good)
        .unwrap();
    let o = rsp(&[
        "--weights",
        &g,
        "--size",
        "32",
        "--out",
        d,
        empty.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(dir.path().join("good.rsp.png").exists());
    assert!(!dir.path().join("empty.rsp.png").exists());
}

#[test]
fn cli_honours_exif_orientation() {
    // A 40×20 JPEG tagged "rotate 90° clockwise" is a 20×40 picture; with --size 16
    // the crop is square either way, so check the decoder directly.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotated.jpg");
    let img = image::RgbImage::from_fn(40, 20, |x, _| image::Rgb([x as u8 * 6, 0, 0]));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&img)
        .unwrap();
    // Insert an APP1/EXIF segment with Orientation = 6 right after the SOI marker.
    let exif: Vec<u8> = [
        &b"Exif\0\0"[..],
        &[0x4d, 0x4d, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x08], // big-endian TIFF header
        &[0x00, 0x01],                                     // one IFD entry
        &[
            0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00,
        ], // Orientation=6
        &[0x00, 0x00, 0x00, 0x00],
    ]
    .concat();
    let mut file = jpeg[..2].to_vec();
    file.extend([0xff, 0xe1]);
    file.extend(((exif.len() + 2) as u16).to_be_bytes());
    file.extend(&exif);
    file.extend(&jpeg[2..]);
    std::fs::write(&path, file).unwrap();
    let loaded = rsp::preprocess::load_image(&path).unwrap();
    assert_eq!((loaded.width(), loaded.height()), (20, 40));
}

#[test]
fn cli_method_runs_every_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let img_path = dir.path().join("shot.png");
    let img = image::RgbImage::from_fn(40, 36, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 7) as u8, ((x + y) * 3) as u8])
    });
    img.save(&img_path).unwrap();
    for method in [
        "gradcam",
        "gradient",
        "gradxinput",
        "lrp-eps",
        "lrp-ab",
        "clrp",
        "sglrp",
    ] {
        let o = rsp(&[
            "--weights",
            &golden_path("resnet_tiny"),
            "--method",
            method,
            "--size",
            "32",
            "--out",
            dir.path().to_str().unwrap(),
            img_path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "--method {method}: {}", stderr(&o));
        let heat = image::open(dir.path().join(format!("shot.{method}.png"))).unwrap();
        assert_eq!((heat.width(), heat.height()), (32, 32));
        assert!(dir
            .path()
            .join(format!("shot.{method}-overlay.png"))
            .exists());
    }
    let o = rsp(&[
        "--weights",
        &golden_path("resnet_tiny"),
        "--method",
        "nonsense",
        img_path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid value 'nonsense' for '--method"),
        "{}",
        stderr(&o)
    );
    let o = rsp(&[
        "--weights",
        &golden_path("resnet_tiny"),
        "--method",
        "lrp-ab",
        "--init-relevance",
        &golden_path("resnet_tiny"),
        img_path.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--init-relevance"), "{}", stderr(&o));
}
