//! `rsp eval` end to end on a tiny generated dataset (`rsp synth`) and tiny random
//! 6-class models: an interrupted Pointing Game run, resumed, gives the same table as an
//! uninterrupted one (also after a half-written last log line); mIoU, sensitivity and
//! faithfulness (deletion/insertion, region perturbation, ROAD) produce their tables and
//! plots (faithfulness also resumes from its log); three shards merge into the
//! unsharded run's logs and table byte for byte, and the merge refuses missing images,
//! disagreeing records and shards of different runs;
//! bad arguments fail clearly.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{resnet_state, vgg_state};
use safetensors::tensor::Dtype;

/// Runs the CLI with autotuning off (`RSP_AUTOTUNE=off`: these tests check the
/// benchmarks' tables, logs and resume, not kernel timing) and its cache folder in the
/// build's scratch folder (nothing is written to the user's).
fn rsp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(args)
        .env("RSP_AUTOTUNE", "off")
        .env(
            "RSP_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-autotune"),
        )
        .output()
        .expect("run rsp")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "rsp failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tiny dataset (`test` split of 7 images, 32 px) and two random 6-class models.
fn fixture(dir: &Path) -> (String, String, String) {
    let data = dir.join("synth");
    ok(&rsp(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--train",
        "0",
        "--val",
        "0",
        "--test",
        "7",
        "--size",
        "32",
        "--seed",
        "3",
    ]));
    let vgg = dir.join("tiny_vgg.safetensors");
    vgg_state(&[Some(8), None, Some(12), None], false, 2, 16, 6, 21).save(&vgg, Dtype::F32);
    let resnet = dir.join("tiny_resnet.safetensors");
    resnet_state(false, [1, 1, 1, 1], 8, [8, 8, 12, 12], 6, 22).save(&resnet, Dtype::F32);
    (
        data.to_string_lossy().into_owned(),
        vgg.to_string_lossy().into_owned(),
        resnet.to_string_lossy().into_owned(),
    )
}

fn pointing(data: &str, weights: &[&str], out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "eval",
        "pointing-game",
        "--dataset",
        data,
        "--size",
        "0",
        "--batch",
        "5",
        "--methods",
        "rsp,gradcam,lrp-ab,center",
        "--out",
        out.to_str().unwrap(),
    ];
    for w in weights {
        args.extend(["--weights", w]);
    }
    let difficult = format!("{data}/difficult.txt");
    args.extend(["--difficult", &difficult]);
    args.extend(extra);
    rsp(&args)
}

#[test]
fn interrupted_pointing_game_resumes_to_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let (data, vgg, resnet) = fixture(dir.path());
    let whole = dir.path().join("whole");
    let stdout = ok(&pointing(&data, &[&vgg, &resnet], &whole, &[]));
    let table = std::fs::read_to_string(whole.join("pointing-game.synth.csv")).unwrap();
    println!("{stdout}\n{table}");
    for row in ["rsp", "gradcam", "lrp-ab", "center"] {
        assert!(
            table.lines().any(|l| l.starts_with(row)),
            "no row {row}: {table}"
        );
    }
    assert!(table.contains("synth/tiny_vgg all") && table.contains("synth/tiny_resnet difficult"));

    let parts = dir.path().join("parts");
    let o = ok(&pointing(
        &data,
        &[&vgg, &resnet],
        &parts,
        &["--stop-after", "3"],
    ));
    assert!(o.contains("stopped after 3"), "{o}");
    assert!(!parts.join("pointing-game.synth.csv").exists());
    // A kill in the middle of a write leaves half a line behind.
    let log = parts.join("pointing-game.synth.tiny_vgg.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"{\"image\":\"test_0000");
    std::fs::write(&log, bytes).unwrap();
    ok(&pointing(
        &data,
        &[&vgg, &resnet],
        &parts,
        &["--stop-after", "2"],
    ));
    ok(&pointing(&data, &[&vgg, &resnet], &parts, &[]));
    let resumed = std::fs::read_to_string(parts.join("pointing-game.synth.csv")).unwrap();
    assert_eq!(
        resumed, table,
        "resumed table differs from the uninterrupted one"
    );
    let md = std::fs::read_to_string(parts.join("pointing-game.synth.md")).unwrap();
    assert!(md.contains("| rsp |"), "{md}");
    // Records come in the split's order whatever the batching and the interruptions.
    for model in ["tiny_vgg", "tiny_resnet"] {
        let name = format!("pointing-game.synth.{model}.jsonl");
        assert_eq!(
            std::fs::read_to_string(parts.join(&name)).unwrap(),
            std::fs::read_to_string(whole.join(&name)).unwrap(),
            "{name}: the resumed log differs from the uninterrupted one"
        );
    }
}

#[test]
fn shards_merge_into_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let (data, vgg, resnet) = fixture(dir.path());
    let whole = dir.path().join("whole");
    ok(&pointing(&data, &[&vgg, &resnet], &whole, &[]));
    let sharded = dir.path().join("sharded");
    for i in 0..3 {
        let shard = format!("{i}/3");
        let o = ok(&pointing(
            &data,
            &[&vgg, &resnet],
            &sharded,
            &["--shard", &shard],
        ));
        assert!(o.contains(&format!("shard {i}/3 is complete")), "{o}");
    }
    assert!(
        !sharded.join("pointing-game.synth.csv").exists(),
        "a shard wrote a table"
    );
    let shard_log = sharded.join("pointing-game.synth.tiny_vgg.shard-1-of-3.jsonl");
    let lines = std::fs::read_to_string(&shard_log).unwrap();
    // 7 images, shard 1 of 3 holds images 1 and 4, 4 methods each.
    assert_eq!(lines.lines().count(), 1 + 2 * 4, "{lines}");

    // A merge with a shard missing names its images and writes nothing.
    let partial = dir.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    for name in [
        "tiny_vgg.shard-0-of-3",
        "tiny_vgg.shard-2-of-3",
        "tiny_resnet.shard-0-of-3",
        "tiny_resnet.shard-1-of-3",
        "tiny_resnet.shard-2-of-3",
    ] {
        let name = format!("pointing-game.synth.{name}.jsonl");
        std::fs::copy(sharded.join(&name), partial.join(&name)).unwrap();
    }
    let o = rsp(&["eval", "merge", "--out", partial.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("2 images of model tiny_vgg have no record yet")
            && err.contains("test_00001 (shard 1/3")
            && err.contains("test_00004 (shard 1/3"),
        "{err}"
    );
    assert!(!partial.join("pointing-game.synth.csv").exists());
    assert!(!partial
        .join("pointing-game.synth.tiny_resnet.jsonl")
        .exists());

    let o = ok(&rsp(&["eval", "merge", "--out", sharded.to_str().unwrap()]));
    assert!(o.contains("table:"), "{o}");
    for name in [
        "pointing-game.synth.csv",
        "pointing-game.synth.md",
        "pointing-game.synth.tiny_vgg.jsonl",
        "pointing-game.synth.tiny_resnet.jsonl",
    ] {
        assert_eq!(
            std::fs::read(sharded.join(name)).unwrap(),
            std::fs::read(whole.join(name)).unwrap(),
            "{name}: merged shards differ from the unsharded run"
        );
    }

    // A record repeated in two shards must be the same record.
    let first_record = lines.lines().nth(1).unwrap();
    let other = sharded.join("pointing-game.synth.tiny_vgg.shard-2-of-3.jsonl");
    let clean = std::fs::read_to_string(&other).unwrap();
    std::fs::write(&other, format!("{clean}{first_record}\n")).unwrap();
    ok(&rsp(&["eval", "merge", "--out", sharded.to_str().unwrap()]));
    let forged = if first_record.contains("\"hit\":true") {
        first_record.replacen("\"hit\":true", "\"hit\":false", 1)
    } else {
        first_record.replacen("\"hit\":false", "\"hit\":true", 1)
    };
    assert_ne!(
        forged, first_record,
        "no hit field to change: {first_record}"
    );
    std::fs::write(&other, format!("{clean}{forged}\n")).unwrap();
    let o = rsp(&["eval", "merge", "--out", sharded.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("disagree (class "), "{err}");
    std::fs::write(&other, &clean).unwrap();

    // Shards of another run (another tolerance) are refused.
    let mixed = dir.path().join("mixed");
    ok(&pointing(
        &data,
        &[&vgg, &resnet],
        &mixed,
        &["--shard", "0/2"],
    ));
    ok(&pointing(
        &data,
        &[&vgg, &resnet],
        &mixed,
        &["--shard", "1/2", "--tolerance", "5"],
    ));
    let o = rsp(&["eval", "merge", "--out", mixed.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("shards of different runs") && err.contains("'tolerance'"),
        "{err}"
    );

    let o = rsp(&[
        "eval",
        "pointing-game",
        "--dataset",
        &data,
        "--weights",
        &vgg,
        "--shard",
        "3/3",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a shard I/N"));
}

#[test]
fn miou_and_sensitivity_produce_tables_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let (data, vgg, _) = fixture(dir.path());
    let out = dir.path().join("out");
    let o = rsp(&[
        "eval",
        "miou",
        "--dataset",
        &data,
        "--size",
        "0",
        "--weights",
        &vgg,
        "--methods",
        "rsp,gradient,sglrp",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    let table = std::fs::read_to_string(out.join("miou.synth.csv")).unwrap();
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.lines().next().unwrap().contains("synth/tiny_vgg"));

    let o = rsp(&[
        "eval",
        "sensitivity",
        "--dataset",
        &data,
        "--size",
        "0",
        "--weights",
        &vgg,
        "--methods",
        "rsp,gradient",
        "--images",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = ok(&o);
    let csv = std::fs::read_to_string(out.join("sensitivity.tiny_vgg.csv")).unwrap();
    // 2 methods × (original + 2 convs + 3 linears).
    assert_eq!(csv.lines().count(), 1 + 2 * 6, "{csv}");
    assert!(csv.contains("rsp,0,original,1.0000,1.0000,1.0000"), "{csv}");
    assert!(
        csv.contains("classifier.6") && csv.contains("features.0"),
        "{csv}"
    );
    for metric in ["spearman", "spearman-abs", "ssim"] {
        let png = out.join(format!("sensitivity.tiny_vgg.{metric}.png"));
        let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", png.display()));
        assert_eq!((img.width(), img.height()), (900, 600));
        let rgb = img.to_rgb8();
        let coloured = rgb
            .pixels()
            .filter(|p| p[0] != p[1] || p[1] != p[2])
            .count();
        assert!(coloured > 500, "{metric}: the plot has no curves");
    }
}

fn faithfulness(data: &str, vgg: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "eval",
        "faithfulness",
        "--dataset",
        data,
        "--size",
        "0",
        "--weights",
        vgg,
        "--methods",
        "rsp,gradient",
        "--step",
        "3000",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    rsp(&args)
}

#[test]
fn faithfulness_curves_tables_plots_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (data, vgg, _) = fixture(dir.path());
    let out = dir.path().join("out");
    // Interrupted after 2 images, then resumed; the log ends up with every image once.
    let o = faithfulness(&data, &vgg, &out, &["--stop-after", "2"]);
    assert!(ok(&o).contains("stopped after 2 new images"));
    let stdout = ok(&faithfulness(&data, &vgg, &out, &[]));
    let log = std::fs::read_to_string(out.join("faithfulness.synth.tiny_vgg.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("image").is_some())
        .collect();
    assert_eq!(records.len(), 2 * 7, "{log}");
    // At 32×32, 3000 pixels per 224×224 step is 61 per step: 17 steps, 18 points.
    let pair = &records[0]["outcome"][0];
    let deletion = pair["deletion"].as_array().unwrap();
    assert_eq!(deletion.len(), 18, "{pair}");
    assert_eq!(pair["insertion"].as_array().unwrap().len(), 18);
    for curve in ["deletion", "insertion"] {
        for v in pair[curve].as_array().unwrap() {
            let p = v.as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p), "{curve}: probability {p}");
        }
    }
    let auc = pair["deletion_auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc));
    let csv = std::fs::read_to_string(out.join("faithfulness.synth.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.contains("synth/tiny_vgg deletion") && csv.contains("insertion"),
        "{csv}"
    );
    for kind in ["deletion", "insertion"] {
        let png = out.join(format!("faithfulness.synth.tiny_vgg.{kind}.png"));
        let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", png.display()));
        assert_eq!((img.width(), img.height()), (900, 600));
    }
    // Region perturbation: its own log and table; 32×32 in 8×8 patches is 16 regions,
    // so 17 logits per order.
    let stdout = ok(&faithfulness(
        &data,
        &vgg,
        &out,
        &[
            "--metric",
            "region-perturbation",
            "--patch",
            "8",
            "--fill",
            "mean",
        ],
    ));
    let log =
        std::fs::read_to_string(out.join("region-perturbation.synth.tiny_vgg.jsonl")).unwrap();
    let first: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v.get("image").is_some())
        .unwrap();
    let pair = &first["outcome"][0];
    assert_eq!(pair["morf"].as_array().unwrap().len(), 17, "{pair}");
    assert_eq!(pair["lerf"].as_array().unwrap().len(), 17, "{pair}");
    // Both orders start from the intact image and end with every patch replaced.
    assert_eq!(pair["morf"][0], pair["lerf"][0]);
    assert_eq!(pair["morf"][16], pair["lerf"][16]);
    let csv = std::fs::read_to_string(out.join("region-perturbation.synth.csv")).unwrap();
    assert!(
        csv.contains("synth/tiny_vgg MoRF") && csv.contains("LeRF"),
        "{csv}"
    );
    assert!(
        stdout.contains("region-perturbation.synth.tiny_vgg.morf.png"),
        "{stdout}"
    );
    // ROAD: nine percentages per order, probabilities.
    let stdout = ok(&faithfulness(&data, &vgg, &out, &["--metric", "road"]));
    let log = std::fs::read_to_string(out.join("road.synth.tiny_vgg.jsonl")).unwrap();
    let first: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v.get("image").is_some())
        .unwrap();
    let pair = &first["outcome"][0];
    for order in ["morf", "lerf"] {
        let curve = pair[order].as_array().unwrap();
        assert_eq!(curve.len(), 9, "{pair}");
        assert!(curve
            .iter()
            .all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap())));
    }
    assert!(stdout.contains("road.synth.tiny_vgg.lerf.png"), "{stdout}");
    assert!(std::fs::read_to_string(out.join("road.synth.csv"))
        .unwrap()
        .contains("MoRF"));
    // --step 0, --patch 0, an unknown baseline, fill or metric are refused by name.
    for (flag, value) in [
        ("--step", "0"),
        ("--patch", "0"),
        ("--baseline", "noise"),
        ("--fill", "zeros"),
        ("--metric", "aopc"),
    ] {
        let o = faithfulness(&data, &vgg, &out, &[flag, value]);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains(flag));
    }
}

#[test]
fn eval_rejects_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let (data, vgg, _) = fixture(dir.path());
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "eval",
                "pointing-game",
                "--dataset",
                &data,
                "--weights",
                &vgg,
                "--methods",
                "rsp,magic",
                "--out",
                out,
            ],
            "unknown method 'magic'",
        ),
        (
            &[
                "eval",
                "miou",
                "--dataset",
                &data,
                "--weights",
                &vgg,
                "--methods",
                "center",
                "--out",
                out,
            ],
            "--methods names 'center', a Pointing Game baseline only",
        ),
        (
            &[
                "eval",
                "pointing-game",
                "--dataset",
                "voc07",
                "--weights",
                &vgg,
                "--out",
                out,
            ],
            "--root is needed for the dataset voc07",
        ),
        (
            &[
                "eval",
                "miou",
                "--dataset",
                &data,
                "--weights",
                &vgg,
                "--threshold",
                "2",
                "--out",
                out,
            ],
            "--threshold must be 'mean' or a fraction",
        ),
    ];
    for (args, msg) in cases {
        let o = rsp(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // A model whose outputs are not the dataset's classes.
    let ten = dir.path().join("ten.safetensors");
    vgg_state(&[Some(8), None], false, 2, 16, 10, 5).save(&ten, Dtype::F32);
    let o = rsp(&[
        "eval",
        "pointing-game",
        "--dataset",
        &data,
        "--weights",
        ten.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("10 outputs but the dataset has 6 classes"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
