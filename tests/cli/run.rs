//! The `rsp` binary end to end: golden maps through the CLI, determinism, adapters,
//! and clear errors with a non-zero exit for bad input.

use crate::common;
use std::path::Path;
use std::process::{Command, Output};

use rsp::compare::{compare, Tolerance};
use rsp::models::weights::TensorFile;

/// Runs the CLI with autotuning off (`RSP_AUTOTUNE=off`): what these tests check is the
/// command line, and a run that meets new kernel problems would spend up to its tuning
/// budget timing them. The tests of tuning itself use [`rsp_tuned`].
fn rsp(args: &[&str]) -> Output {
    command(args)
        .env("RSP_AUTOTUNE", "off")
        .output()
        .expect("run rsp")
}

/// Runs the CLI as a user does, autotuning on. Its autotuning cache lives in the
/// build's scratch folder, shared by the tests of one build (the tiny models' problems
/// are tuned once, and nothing is written to the user's cache folder).
fn rsp_tuned(args: &[&str]) -> Output {
    command(args)
        .env_remove("RSP_AUTOTUNE")
        .output()
        .expect("run rsp")
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsp"));
    cmd.args(args).env(
        "RSP_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-autotune"),
    );
    cmd
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
        // Autotuned, as a user runs it: each run times what its budget allows, so the two
        // may run different kernels; `--exact-kernels` offers only variants that give the
        // fallback's bits, which makes the bytes comparable (with inexact variants
        // offered, a kernel timed only by the second run may be Winograd).
        let o = rsp_tuned(&[
            "--exact-kernels",
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
    let g = golden_path(common::RESNET_CASE);
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
    let golden = common::golden(common::RESNET_CASE);
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

/// `args` fail with exit code 1 and exactly one `error:` line, which holds `needle`.
fn assert_one_error(args: &[&str], needle: &str) {
    let o = rsp(args);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: {e}");
    assert!(errors[0].contains(needle), "{args:?}: {e}");
}

#[test]
fn cli_colour_maps_and_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let img_path = dir.path().join("photo.png");
    image::RgbImage::from_fn(40, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 90])
    })
    .save(&img_path)
    .unwrap();
    let g = golden_path("vgg_tiny");
    let run = |extra: &[&str], sub: &str| {
        let out = dir.path().join(sub);
        let mut args = vec![
            "--weights",
            &g,
            "--size",
            "32",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(img_path.to_str().unwrap());
        let o = rsp(&args);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        out
    };
    // gray: every pixel grey; the signed RSP map keeps 0 at the middle grey.
    let gray = run(&["--cmap", "gray"], "gray");
    let img = image::open(gray.join("photo.rsp.png")).unwrap().to_rgb8();
    assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    // Grad-CAM defaults to jet, min-max normalised: its strongest pixel is jet's top.
    let cam = run(&["--method", "gradcam"], "cam");
    let img = image::open(cam.join("photo.gradcam.png"))
        .unwrap()
        .to_rgb8();
    assert!(img.pixels().any(|p| p.0 == [128, 0, 0]), "no jet maximum");
    // RSP defaults to bwr: no jet colours, and red and blue both present.
    let bwr = run(&[], "bwr");
    let img = image::open(bwr.join("photo.rsp.png")).unwrap().to_rgb8();
    assert!(img.pixels().all(|p| p[0] == 255 || p[2] == 255));
    // alpha 0: the overlay is the cropped photo itself.
    let plain = run(&["--alpha", "0"], "alpha0");
    let ov = image::open(plain.join("photo.rsp-overlay.png"))
        .unwrap()
        .to_rgb8();
    let strong = run(&["--alpha", "1"], "alpha1");
    let ov1 = image::open(strong.join("photo.rsp-overlay.png"))
        .unwrap()
        .to_rgb8();
    assert_ne!(ov.as_raw(), ov1.as_raw());
    for (args, needle) in [
        (
            vec!["--cmap", "rainbow"],
            "--cmap \"rainbow\" is not a colour map",
        ),
        (vec!["--alpha", "1.5"], "--alpha must be in [0, 1], got 1.5"),
        (vec!["--alpha", "-0.1"], "--alpha must be in [0, 1]"),
    ] {
        let mut full = vec!["--weights", &g, "--out", d];
        full.extend_from_slice(&args);
        full.push(img_path.to_str().unwrap());
        assert_one_error(&full, needle);
    }
}

#[test]
fn cli_folders_globs_json_and_several_targets() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    for (i, rel) in ["a/cat.png", "b/cat.png", "b/c/dog.jpg"].iter().enumerate() {
        let p = photos.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::RgbImage::from_fn(36, 36, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, 40 * i as u8])
        })
        .save(&p)
        .unwrap();
    }
    let g = golden_path("vgg_tiny");
    let out = dir.path().join("out");
    let json = dir.path().join("report.json");
    // A folder: searched recursively, outputs mirror its sub-folders (no collision of
    // the two cat.png), two listed targets each, and a JSON report.
    let o = rsp(&[
        "--weights",
        &g,
        "--size",
        "32",
        "--targets",
        "2,7",
        "--out",
        out.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        photos.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for stem in ["a/cat", "b/cat", "b/c/dog"] {
        for t in [2, 7] {
            let png = out.join(format!("{stem}.rsp.{t}.png"));
            assert!(png.exists(), "{} missing", png.display());
            assert!(out.join(format!("{stem}.rsp.{t}-overlay.png")).exists());
        }
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for img in images {
        assert_eq!(img["predictions"].as_array().unwrap().len(), 5);
        let explained = img["explained"].as_array().unwrap();
        let classes: Vec<u64> = explained
            .iter()
            .map(|e| e["class"].as_u64().unwrap())
            .collect();
        assert_eq!(classes, [2, 7]);
        for e in explained {
            assert!(Path::new(e["heatmap"].as_str().unwrap()).exists());
        }
    }
    // The two maps of one image differ (different classes explained).
    let a = std::fs::read(out.join("a/cat.rsp.2.png")).unwrap();
    let b = std::fs::read(out.join("a/cat.rsp.7.png")).unwrap();
    assert_ne!(a, b);
    // A quoted glob and topK: the K best predictions, in order.
    let out2 = dir.path().join("out2");
    let pattern = photos.join("*/cat.png");
    let o = rsp(&[
        "--weights",
        &g,
        "--size",
        "32",
        "--targets",
        "top3",
        "--out",
        out2.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        pattern.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for img in images {
        let top: Vec<u64> = img["predictions"].as_array().unwrap()[..3]
            .iter()
            .map(|p| p["class"].as_u64().unwrap())
            .collect();
        let explained: Vec<u64> = img["explained"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["class"].as_u64().unwrap())
            .collect();
        assert_eq!(explained, top);
    }
    assert!(!out2.join("a/cat.rsp.png").exists());
    // Bad values: one error line, exit 1.
    let d = dir.path().to_str().unwrap();
    let nothing = photos.join("*.bmp");
    for (args, needle) in [
        (vec!["--targets", "2,99"], "--targets: 99 is out of range"),
        (vec!["--targets", "top0"], "K must be between 1"),
        (vec!["--targets", "topx"], "expected topK"),
    ] {
        let mut full = vec!["--weights", &g, "--out", d];
        full.extend_from_slice(&args);
        full.push(photos.to_str().unwrap());
        assert_one_error(&full, needle);
    }
    let o = rsp(&["--weights", &g, "--out", d, nothing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the pattern matches no file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cli_smooth_averages_noisy_copies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let g = golden_path("vgg_tiny");
    let img = dir.path().join("p.png");
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 60])
    })
    .save(&img)
    .unwrap();
    let save = |extra: &[&str], name: &str| {
        let out = dir.path().join(name);
        let mut args = vec!["--weights", &g, "--size", "32", "--out", d];
        args.extend_from_slice(&["--save-relevance", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        args.push(img.to_str().unwrap());
        let o = rsp(&args);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        TensorFile::read(&out)
            .unwrap()
            .get("relevance")
            .unwrap()
            .clone()
    };
    let plain = save(&[], "plain.safetensors");
    let smooth = save(&["--smooth", "3", "--noise", "0.2"], "smooth.safetensors");
    let again = save(&["--smooth", "3", "--noise", "0.2"], "again.safetensors");
    assert_ne!(plain.data, smooth.data, "--smooth changed nothing");
    assert_eq!(
        smooth.data, again.data,
        "the noise is seeded: same maps twice"
    );
    for (args, needle) in [
        (vec!["--smooth", "0"], "--smooth needs at least 1 sample"),
        (
            vec!["--smooth", "2", "--noise", "-1"],
            "--noise must be a finite value >= 0",
        ),
    ] {
        let mut full = vec!["--weights", &g, "--out", d];
        full.extend_from_slice(&args);
        full.push(img.to_str().unwrap());
        assert_one_error(&full, needle);
    }
}

#[test]
fn cli_reads_multi_label_models_with_sigmoid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let weights = format!("{root}/weights/synth_vgg.safetensors");
    let image = format!("{root}/docs/synth/ring_star.jpg");
    let run = |extra: &[&str]| {
        let json = dir.path().join("r.json");
        let saved = dir.path().join("r.safetensors");
        let mut args = vec!["--weights", &weights, "--size", "64", "--out", d];
        args.extend_from_slice(&["--json", json.to_str().unwrap()]);
        args.extend_from_slice(&["--save-relevance", saved.to_str().unwrap()]);
        args.extend_from_slice(extra);
        args.push(&image);
        let o = rsp(&args);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let logits = TensorFile::read(&saved)
            .unwrap()
            .get("logits")
            .unwrap()
            .clone();
        (report, logits)
    };
    // auto: the trainer's metadata marks the model multi-label and names its classes.
    let (report, logits) = run(&[]);
    assert_eq!(report["readout"], "sigmoid");
    let preds = report["images"][0]["predictions"].as_array().unwrap();
    let classes = ["disc", "square", "triangle", "star", "cross", "ring"];
    for p in preds {
        let c = p["class"].as_u64().unwrap() as usize;
        assert_eq!(p["label"], classes[c]);
        let want = 1.0 / (1.0 + (-logits.data[c]).exp());
        assert!((p["probability"].as_f64().unwrap() - want as f64).abs() < 1e-6);
    }
    // The ring and the star of this image both read as present (> 0.5): multi-label.
    let present: Vec<&str> = preds
        .iter()
        .filter(|p| p["probability"].as_f64().unwrap() > 0.5)
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert!(
        present.contains(&"star") && present.contains(&"ring"),
        "{present:?}"
    );
    // Forced softmax: the probabilities of all classes sum to 1.
    let (report, _) = run(&["--readout", "softmax"]);
    assert_eq!(report["readout"], "softmax");
    let preds = report["images"][0]["predictions"].as_array().unwrap();
    let total: f64 = preds
        .iter()
        .map(|p| p["probability"].as_f64().unwrap())
        .sum();
    assert!(total <= 1.0 + 1e-6 && total > 0.9, "{total}");
    let o = rsp(&[
        "--weights",
        &weights,
        "--out",
        d,
        "--readout",
        "odds",
        &image,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--readout \"odds\" is not auto, softmax or sigmoid"));
}

#[test]
fn cli_lists_adapters() {
    let o = rsp(&["adapters"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("max storage binding"), "{s}");
    assert!(s.starts_with("index:0 pci:"), "{s}");
}

#[test]
fn cli_runs_on_the_adapter_chosen_and_refuses_one_that_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let g = golden_path("vgg_tiny");
    let run = |extra: &[&str], env: Option<&str>| {
        let mut args = vec!["--weights", &g, "--size", "32", "--out", d];
        args.extend_from_slice(extra);
        args.push(&g);
        let mut cmd = command(&args);
        cmd.env("RSP_AUTOTUNE", "off").env_remove("RSP_ADAPTER");
        if let Some(choice) = env {
            cmd.env("RSP_ADAPTER", choice);
        }
        cmd.output().expect("run rsp")
    };
    let o = run(&["--adapter", "index:0"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    for (extra, env) in [
        (&["--adapter", "pci:00ff:ff:1f.7"][..], None),
        (&[][..], Some("pci:00ff:ff:1f.7")),
    ] {
        let o = run(extra, env);
        assert_eq!(o.status.code(), Some(1), "{extra:?} {env:?}");
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "one line: {e}");
        assert!(e.contains("--adapter pci:00ff:ff:1f.7 matches none"), "{e}");
        assert!(e.contains("index:0 '"), "the adapters are listed: {e}");
    }
    // A value that is no choice at all: the parser's error, exit 2.
    let o = run(&["--adapter", "gpu1"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("index:N, pci:BUS or name:SUBSTRING"));
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
    use rsp::app::cli::resolve_target;
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
    let g = golden_path(common::RESNET_CASE);
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
    // A folder without images and an empty file as inputs; a corrupt weights file.
    let no_images = dir.path().join("no-images");
    std::fs::create_dir(&no_images).unwrap();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    for (args, needle) in [
        (
            vec!["--weights", &g, "--out", d, no_images.to_str().unwrap()],
            "no PNG or JPEG files in this folder",
        ),
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
        "rap",
    ] {
        // Each method has GEMM problems of its own; timing their kernels (autotuning is
        // tested elsewhere) would cost each run the tuning budget.
        let o = rsp(&[
            "--autotune",
            "off",
            "--weights",
            &golden_path(common::RESNET_CASE),
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
        &golden_path(common::RESNET_CASE),
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
        &golden_path(common::RESNET_CASE),
        "--method",
        "lrp-ab",
        "--init-relevance",
        &golden_path(common::RESNET_CASE),
        img_path.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--init-relevance"), "{}", stderr(&o));
}

/// The `--flag` entries of a `--help` text: long name → its lines (the flag line first).
fn help_entries(text: &str) -> Vec<(String, Vec<String>)> {
    let mut entries: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let spec = t.strip_prefix("-").and_then(|r| {
            // `-h, --help` or `--out <DIR>`
            let r = r
                .strip_prefix("-")
                .or_else(|| r.get(1..)?.strip_prefix(", --"))?;
            Some(r.split([' ', '=']).next()?.to_string())
        });
        match spec {
            Some(name) if line.starts_with("  ") => entries.push((name, vec![line.to_string()])),
            _ if !line.starts_with(' ') && !line.is_empty() => {
                // A section header ends the current entry.
                entries.push((String::new(), vec![]));
            }
            _ => {
                if let Some((_, lines)) = entries.last_mut() {
                    lines.push(line.to_string());
                }
            }
        }
    }
    entries.retain(|(n, _)| !n.is_empty());
    entries
}

#[test]
fn help_documents_every_flag_with_its_default() {
    use clap::CommandFactory;
    let top = rsp::app::cli::Cli::command();
    let bench = top.find_subcommand("bench").unwrap().clone();
    for (args, cmd) in [
        (vec!["--help"], top.clone()),
        (vec!["bench", "--help"], bench),
    ] {
        let o = rsp(&args);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let entries = help_entries(&text);
        assert!(entries.len() >= 5, "could not parse {args:?}:\n{text}");
        // Every flag shown has a description besides its name and value.
        for (name, lines) in &entries {
            let first = lines[0].trim_start();
            let after_spec = first.split_once("  ").map(|(_, d)| d.trim()).unwrap_or("");
            let rest = lines[1..].join(" ");
            assert!(
                !after_spec.is_empty() || !rest.trim().is_empty(),
                "{args:?}: --{name} has no help text:\n{text}"
            );
        }
        // Every flag of the parser is shown, and those with a default show it.
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let Some(long) = arg.get_long() else { continue };
            let (_, lines) = entries
                .iter()
                .find(|(n, _)| n == long)
                .unwrap_or_else(|| panic!("{args:?}: --{long} missing from:\n{text}"));
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() && !arg.is_hide_default_value_set() {
                let want = format!("[default: {}]", defaults.join(", "));
                assert!(
                    lines.join("\n").contains(&want),
                    "{args:?}: --{long} should show {want}:\n{}",
                    lines.join("\n")
                );
            }
        }
    }
}

/// A valid PNG cut in the middle of its pixel data.
fn truncated_png(path: &Path) {
    let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 7]));
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

/// A PNG header claiming 100000×100000 RGB pixels (about 28 GiB decoded), 70 bytes.
fn enormous_png(path: &Path) {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (
            &b"IHDR"[..],
            [
                &100_000u32.to_be_bytes()[..],
                &100_000u32.to_be_bytes(),
                &[8, 2, 0, 0, 0],
            ]
            .concat(),
        ),
        (
            b"IDAT",
            vec![0x78, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ),
        (b"IEND", vec![]),
    ] {
        png.extend((data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend(kind);
        png.extend(&data);
        let crc = crc32fast::hash(&png[start..]);
        png.extend(crc.to_be_bytes());
    }
    std::fs::write(path, png).unwrap();
}

#[test]
fn cli_every_bad_input_fails_clearly_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let vgg = golden_path("vgg_tiny");
    let resnet = golden_path(common::RESNET_CASE);
    let corrupt = format!("{d}/corrupt.png");
    truncated_png(Path::new(&corrupt));
    let enormous = format!("{d}/enormous.png");
    enormous_png(Path::new(&enormous));
    let text = format!("{d}/notes.txt");
    std::fs::write(&text, "just some text\n").unwrap();
    let truncated_weights = format!("{d}/truncated.safetensors");
    let w = std::fs::read(&vgg).unwrap();
    std::fs::write(&truncated_weights, &w[..w.len() * 2 / 3]).unwrap();
    let a_file = format!("{d}/a_file");
    std::fs::write(&a_file, b"").unwrap();
    let empty_weights_dir = tempfile::tempdir().unwrap();
    let absent_backend = if cfg!(windows) { "metal" } else { "dx12" };

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--weights", &vgg, &corrupt],
            vec!["corrupt.png", "not a readable image"],
        ),
        (
            vec!["--weights", &vgg, &enormous],
            vec!["enormous.png", "too large", "100000×100000"],
        ),
        (
            vec!["--weights", &vgg, &text],
            vec!["notes.txt", "not a readable image"],
        ),
        (
            vec!["--model", "vgg17", "--offline", &vgg],
            vec!["unknown model 'vgg17'", "vgg16"],
        ),
        (
            vec!["--model", "vgg16", "--offline", &vgg],
            vec!["weights not found", "--offline"],
        ),
        (
            vec!["--weights", &resnet, "--target", "zzzz", &resnet],
            vec!["--target 'zzzz'", "no ImageNet class"],
        ),
        (
            vec!["--weights", &resnet, "--target", "1000", &resnet],
            vec!["--target 1000", "out of range"],
        ),
        (
            vec!["--weights", &vgg, "--backend", absent_backend, &vgg],
            vec!["no GPU adapter found", absent_backend],
        ),
        (
            vec!["--weights", &truncated_weights, &vgg],
            vec!["truncated.safetensors", "truncated or corrupt"],
        ),
    ];
    // The output folder is two levels below an existing one, so a failed run would
    // leave both behind if it created them before its first output.
    let out = dir.path().join("new").join("out");
    let o = out.to_str().unwrap().to_string();
    for (args, needles) in cases {
        let _ = std::fs::remove_dir_all(dir.path().join("new"));
        let o_ = Command::new(env!("CARGO_BIN_EXE_rsp"))
            .args(&args)
            .args(["--out", &o])
            .env("RSP_WEIGHTS_DIR", empty_weights_dir.path())
            .env("RSP_CACHE_DIR", empty_weights_dir.path())
            .output()
            .unwrap();
        let e = stderr(&o_);
        assert_eq!(o_.status.code(), Some(1), "{args:?} should fail: {e}");
        for n in &needles {
            assert!(e.contains(n), "{args:?}: expected '{n}' in: {e}");
        }
        assert!(e.contains("error: "), "{args:?}: {e}");
        assert!(
            !e.contains("panicked") && !e.contains("backtrace"),
            "{args:?}: {e}"
        );
        // Nothing was explained, so no output and no empty output folder.
        assert!(
            !dir.path().join("new").exists(),
            "{args:?} left the output folder {o} behind"
        );
    }

    // Unwritable output directory: below a regular file (fails for root too), and a
    // read-only directory where permissions apply (not for root).
    let below_file = format!("{a_file}/out");
    let o_ = rsp(&["--weights", &vgg, "--out", &below_file, &vgg]);
    assert_eq!(o_.status.code(), Some(1));
    let e = stderr(&o_);
    assert!(
        e.contains("cannot create output directory") && e.contains(&below_file),
        "{e}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let enforced = std::fs::write(ro.join("probe"), b"").is_err();
        if enforced {
            let o_ = rsp(&["--weights", &vgg, "--out", ro.to_str().unwrap(), &vgg]);
            assert_eq!(o_.status.code(), Some(1));
            let e = stderr(&o_);
            assert!(
                e.contains("is not writable") && e.contains("read-only"),
                "{e}"
            );
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn cli_bad_images_among_many_are_reported_and_the_rest_explained() {
    // Five images in batches of two: the bad ones are reported, the good ones written,
    // and the exit code says that something failed.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = |name: &str, seed: u8| {
        let p = d.join(name);
        image::RgbImage::from_fn(40, 36, |x, y| {
            image::Rgb([x as u8 * 6 + seed, y as u8 * 7, seed * 20])
        })
        .save(&p)
        .unwrap();
        p
    };
    let inputs = [
        good("a.png", 1),
        d.join("missing.png"),
        good("b.png", 2),
        {
            let p = d.join("bomb.png");
            enormous_png(&p);
            p
        },
        good("c.png", 3),
    ];
    let out = d.join("out");
    let mut args = vec![
        "--weights".to_string(),
        golden_path("vgg_tiny"),
        "--size".into(),
        "32".into(),
        "--batch-size".into(),
        "2".into(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
    ];
    args.extend(inputs.iter().map(|p| p.to_string_lossy().into_owned()));
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = rsp(&refs);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("missing.png") && e.contains("bomb.png"), "{e}");
    for stem in ["a", "b", "c"] {
        assert!(out.join(format!("{stem}.rsp.png")).exists(), "{stem}: {e}");
        assert!(out.join(format!("{stem}.rsp-overlay.png")).exists());
    }
    assert!(!out.join("missing.rsp.png").exists() && !out.join("bomb.rsp.png").exists());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.matches("explained class:").count(), 3, "{stdout}");
}

/// `rsp bench` on a tiny model with f16 weights: it times forward and RSP, reports
/// the adapter and peak memory, and the f16 run's weights take half the bytes.
#[test]
fn bench_reports_times_memory_and_adapter_in_both_weight_dtypes() {
    let g = golden_path("vgg_tiny");
    let mut weight_mib = Vec::new();
    for dtype in ["f32", "f16"] {
        // Autotuning is tested elsewhere; the bench's reporting is what this checks.
        let o = rsp(&[
            "bench",
            "--autotune",
            "off",
            "--backend",
            "vulkan",
            "--weights",
            &g,
            "--size",
            "32",
            "--batch",
            "2",
            "--runs",
            "1",
            "--weights-dtype",
            dtype,
        ]);
        assert!(o.status.success(), "bench failed: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(text.contains("adapter: "), "{text}");
        assert!(text.contains(&format!("weights {dtype}")), "{text}");
        for line in ["forward: median", "rsp (forward + init + backward): median"] {
            assert!(text.contains(line), "missing '{line}' in:\n{text}");
        }
        assert!(text.contains("peak engine memory"), "{text}");
        let mib: f64 = text
            .split("weights on the GPU: ")
            .nth(1)
            .and_then(|r| r.split(" MiB").next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no weight size in:\n{text}"));
        weight_mib.push(mib);
    }
    let ratio = weight_mib[1] / weight_mib[0];
    assert!(
        (0.45..=0.55).contains(&ratio),
        "f16 weights should take half the f32 bytes: {weight_mib:?}"
    );
}

/// The explanation command with `--weights-dtype f16` writes the usual PNGs.
#[test]
fn cli_explains_with_f16_weights() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden_path("vgg_tiny");
    let o = rsp(&[
        "--weights",
        &g,
        "--weights-dtype",
        "f16",
        "--out",
        dir.path().to_str().unwrap(),
        &g,
    ]);
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    assert!(dir.path().join("vgg_tiny.rsp.png").exists());
}

/// `--precision f16` through the explanation command and bench (f16 weights on every
/// adapter with shader f16; matrix-unit products only where the adapter has them), and
/// an unknown precision is refused by name.
#[test]
fn cli_explains_and_benches_in_f16_precision() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden_path("vgg_tiny");
    let out = dir.path().to_str().unwrap();
    let o = rsp(&["--weights", &g, "--precision", "f16", "--out", out, &g]);
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    assert!(dir.path().join("vgg_tiny.rsp.png").exists());
    let o = rsp(&[
        "bench",
        "--autotune",
        "off",
        "--weights",
        &g,
        "--size",
        "32",
        "--runs",
        "1",
        "--precision",
        "f16",
    ]);
    assert!(o.status.success(), "bench failed: {}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("precision f16, weights f16"), "{text}");
    let o = rsp(&["--weights", &g, "--precision", "f64", "--out", out, &g]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--precision"), "{}", stderr(&o));
}

/// On the OpenGL backend: the golden VGG explained to the CLI's golden map, and f16,
/// which no GL adapter offers, refused with one error line naming the flag.
#[test]
fn cli_runs_on_gl_and_refuses_f16_there() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden_path("vgg_tiny");
    let out = dir.path().to_str().unwrap();
    let saved = dir.path().join("gl.safetensors");
    let o = rsp(&[
        "--backend",
        "gl",
        "--weights",
        &g,
        "--out",
        out,
        "--save-relevance",
        saved.to_str().unwrap(),
        &g,
    ]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("(gl)"), "{e}");
    let f = TensorFile::read(&saved).unwrap();
    let golden = TensorFile::read(Path::new(&g)).unwrap();
    rsp::compare::compare(
        "rsp.gradcam.out (gl)",
        f.get("relevance").unwrap(),
        golden.get("rsp.gradcam.out").unwrap(),
        rsp::compare::Tolerance::GOLDEN,
    )
    .unwrap();
    for flag in [["--precision", "f16"], ["--weights-dtype", "f16"]] {
        let args = [
            "--backend",
            "gl",
            "--weights",
            &g,
            flag[0],
            flag[1],
            "--out",
            out,
            &g,
        ];
        assert_one_error(&args, flag[0]);
    }
}

/// Runs the committed synthetic VGG at 64 px on `inputs`, writing into `out`, with
/// `XDG_RUNTIME_DIR` and the display variables removed (a machine without a desktop
/// session).
fn rsp_synth_vgg_headless(out: &Path, inputs: &[&Path]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsp"));
    cmd.arg("--weights")
        .arg(root.join("weights/synth_vgg.safetensors"))
        .args(["--size", "64", "--out"])
        .arg(out)
        .args(inputs);
    for var in [
        "XDG_RUNTIME_DIR",
        "WAYLAND_DISPLAY",
        "WAYLAND_SOCKET",
        "DISPLAY",
        // rsp's own choice is under test, not a silenced layer.
        "NODEVICE_SELECT",
        "MESA_VK_DEVICE_SELECT",
        "DRI_PRIME",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().expect("run rsp")
}

/// Truncated JPEGs and PNGs and a PNG with a bad chunk CRC: one `error:` line each,
/// naming the file and saying it is truncated or damaged, no output for them, exit 1;
/// the intact image among them is still explained.
#[test]
fn cli_truncated_and_damaged_images_are_refused_and_the_others_explained() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let jpeg = std::fs::read(root.join("docs/synth/ring_star.jpg")).unwrap();
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
    });
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut bad_crc = png.clone();
    let n = bad_crc.len();
    bad_crc[n - 20] ^= 0x10; // inside the IDAT chunk's data, before its CRC and IEND
    let bad: Vec<(String, Vec<u8>)> = vec![
        ("jpeg_header.jpg".into(), jpeg[..200].to_vec()),
        ("jpeg_1500.jpg".into(), jpeg[..1500].to_vec()),
        ("jpeg_half.jpg".into(), jpeg[..jpeg.len() / 2].to_vec()),
        ("jpeg_but_2.jpg".into(), jpeg[..jpeg.len() - 2].to_vec()),
        ("png_header.png".into(), png[..33].to_vec()),
        ("png_half.png".into(), png[..png.len() / 2].to_vec()),
        ("png_no_iend.png".into(), png[..png.len() - 12].to_vec()),
        ("png_bad_crc.png".into(), bad_crc),
    ];
    let mut inputs = Vec::new();
    for (name, bytes) in &bad {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        inputs.push(path);
    }
    let good = dir.path().join("intact.jpg");
    std::fs::write(&good, &jpeg).unwrap();
    inputs.insert(3, good);
    let out = dir.path().join("out");
    let refs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    let o = rsp_synth_vgg_headless(&out, &refs);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), bad.len(), "one error line per bad file:\n{e}");
    for (name, _) in &bad {
        let line = errors
            .iter()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("no error line for {name}:\n{e}"));
        assert!(line.contains("truncated or damaged"), "{line}");
        let stem = name.split('.').next().unwrap();
        assert!(
            !out.join(format!("{stem}.rsp.png")).exists()
                && !out.join(format!("{stem}.rsp-overlay.png")).exists(),
            "{name} has an output"
        );
    }
    assert!(out.join("intact.rsp.png").exists(), "{e}");
    assert!(out.join("intact.rsp-overlay.png").exists(), "{e}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
}

/// Without a desktop session (no `XDG_RUNTIME_DIR`, no display) a plain run prints no
/// `error:` line from the graphics stack: its only stderr line is the model summary.
#[test]
fn cli_run_without_a_desktop_session_has_no_stray_error_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = rsp_synth_vgg_headless(dir.path(), &[&root.join("docs/synth/ring_star.jpg")]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(!e.contains("XDG_RUNTIME_DIR"), "{e}");
    assert!(!e.lines().any(|l| l.starts_with("error")), "{e}");
    assert!(dir.path().join("ring_star.rsp.png").exists());
}

/// A run whose autotuning budget is spent at once still explains everything (the
/// heuristic kernels give the same maps bit for bit), writes no choice it did not
/// measure, and says in one line how the rest gets measured; a negative budget is
/// refused.
#[test]
fn cli_autotune_budget_defers_tuning_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden_path("vgg_tiny");
    let out = dir.path().to_str().unwrap();
    let saved = dir.path().join("r.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args([
            "--weights",
            &g,
            "--out",
            out,
            "--autotune-budget",
            "0.000001",
        ])
        .args([
            "--exact-kernels",
            "--save-relevance",
            saved.to_str().unwrap(),
            &g,
        ])
        .env("RSP_CACHE_DIR", dir.path())
        .env_remove("RSP_AUTOTUNE")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let notes: Vec<&str> = e
        .lines()
        .filter(|l| l.starts_with("note: autotuning"))
        .collect();
    assert_eq!(notes.len(), 1, "{e}");
    assert!(notes[0].contains("rsp tune"), "{e}");
    let f = TensorFile::read(&saved).unwrap();
    let golden = TensorFile::read(Path::new(&g)).unwrap();
    rsp::compare::compare(
        "rsp.gradcam.out (budget spent)",
        f.get("relevance").unwrap(),
        golden.get("rsp.gradcam.out").unwrap(),
        rsp::compare::Tolerance::GOLDEN,
    )
    .unwrap();
    let o = rsp(&["--weights", &g, "--autotune-budget", "-1", "--out", out, &g]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--autotune-budget"), "{}", stderr(&o));

    // `RSP_AUTOTUNE=off` (what the other tests run with): nothing is timed or written;
    // the flag still wins over it.
    let quiet = tempfile::tempdir().unwrap();
    let run = |flags: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rsp"))
            .args([
                "--weights",
                &g,
                "--out",
                out,
                "--autotune-budget",
                "0.000001",
            ])
            .args(flags)
            .arg(&g)
            .env("RSP_CACHE_DIR", quiet.path())
            .env("RSP_AUTOTUNE", "off")
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("note: autotuning"), "{}", stderr(&o));
    assert!(!quiet.path().join("autotune.json").exists());
    let o = run(&["--autotune", "on"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("note: autotuning"), "{}", stderr(&o));
}

/// `rsp bench --profile` lists each GEMM problem on its own line with its sizes, its
/// achieved TFLOP/s (2·m·n·k·z over its timestamped time) and, given the peak, its
/// share of it; kernels that are not GEMMs have no rate.
#[test]
fn bench_profile_reports_each_gemm_problem_with_its_rate() {
    let g = golden_path("vgg_tiny");
    let o = rsp(&[
        "bench",
        "--autotune",
        "off",
        "--weights",
        &g,
        "--size",
        "32",
        "--runs",
        "1",
        "--profile",
        "--peak-tflops",
        "0.5",
    ]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    if !text.contains("GPU time of one explanation") {
        // An adapter without timestamp queries says so and profiles nothing.
        assert!(stderr(&o).contains("no timestamp queries"), "{text}");
        return;
    }
    let gemm: Vec<&str> = text.lines().filter(|l| l.contains("| m=")).collect();
    assert!(!gemm.is_empty(), "{text}");
    for line in &gemm {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (ms, tflops, share) = (cols[0], cols[3], cols[4]);
        let (ms, tflops): (f64, f64) = (ms.parse().unwrap(), tflops.parse().unwrap());
        assert!(ms > 0.0 && tflops > 0.0, "{line}");
        let share: f64 = share.trim_end_matches('%').parse().unwrap();
        assert!(
            (share - 100.0 * tflops / 0.5).abs() < 0.1 + 1e-3 * share,
            "{line}"
        );
        let sizes: Vec<f64> = line
            .split("| ")
            .last()
            .unwrap()
            .split_whitespace()
            .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
            .collect();
        let calls: f64 = cols[1].parse().unwrap();
        let flops = 2.0 * sizes.iter().product::<f64>() * calls;
        let rate = flops / (ms * 1e-3) / 1e12;
        assert!(
            (rate - tflops).abs() <= 1e-3 + 2e-2 * tflops,
            "{line}: {rate} vs {tflops}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.contains("maxpool") && !l.contains("| m=")),
        "{text}"
    );
}
