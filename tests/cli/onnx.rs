//! ONNX models through the `rsp` binary: explaining, `--explain-layer`, `rsp inspect`,
//! `rsp serve --weights x.onnx`, and every damaged file refused in one line with exit
//! code 1 and nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;
use rsp::models::onnx::proto::ModelProto;

use crate::serve::Server;

fn onnx(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/onnx")
        .join(name)
}

fn rsp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(args)
        .env("RSP_AUTOTUNE", "off")
        .output()
        .expect("run rsp")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_explains_onnx_models_and_inspects_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = onnx("densenet.expected.safetensors");
    let model = onnx("densenet.dynamo.onnx");
    let (m, i, o) = (
        model.to_str().unwrap(),
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let run = rsp(&["--weights", m, i, "--out", o]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("ONNX densenet.dynamo.onnx"),
        "{}",
        stderr(&run)
    );
    assert!(out.join("densenet.expected.rsp.png").exists());
    // Another explanation layer, and one that is not a layer.
    let run = rsp(&[
        "--weights",
        m,
        i,
        "--out",
        o,
        "--explain-layer",
        "features.denseblock2.concat",
        "--save-relevance",
        dir.path().join("r.safetensors").to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let bad = rsp(&["--weights", m, i, "--out", o, "--explain-layer", "nope"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("'nope' is not a layer"),
        "{}",
        stderr(&bad)
    );
    // An image is resized to the size the model was exported for (32 px).
    let png = dir.path().join("photo.png");
    image::RgbImage::from_fn(50, 40, |x, y| image::Rgb([x as u8 * 5, y as u8 * 6, 90]))
        .save(&png)
        .unwrap();
    let run = rsp(&["--weights", m, png.to_str().unwrap(), "--out", o]);
    assert!(run.status.success(), "{}", stderr(&run));
    let heat = image::open(out.join("photo.rsp.png")).unwrap();
    assert_eq!((heat.width(), heat.height()), (32, 32));
    let wrong = rsp(&[
        "--weights",
        m,
        png.to_str().unwrap(),
        "--out",
        o,
        "--size",
        "64",
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("exported for 32×32"),
        "{}",
        stderr(&wrong)
    );

    let inspect = rsp(&["inspect", m]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let text = String::from_utf8_lossy(&inspect.stdout);
    let marked: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("explanation layer"))
        .collect();
    assert_eq!(marked.len(), 1, "{text}");
    assert!(
        marked[0].contains(" relu ") && marked[0].contains("16×4×4"),
        "{text}"
    );
    assert!(text.contains("features.denseblock2.concat"), "{text}");
}

/// Writes `m` encoded to `path`.
fn write(path: &Path, m: &ModelProto) {
    std::fs::write(path, m.encode_to_vec()).unwrap();
}

#[test]
fn cli_refuses_damaged_onnx_files_in_one_line_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let legacy = std::fs::read(onnx("vgg_bn.legacy.onnx")).unwrap();
    let dynamo = std::fs::read(onnx("vgg_bn.dynamo.onnx")).unwrap();
    let data = std::fs::read(onnx("vgg_bn.dynamo.onnx.data")).unwrap();
    let model = ModelProto::decode(legacy.as_slice()).unwrap();

    std::fs::write(d.join("truncated.onnx"), &legacy[..legacy.len() / 2]).unwrap();
    std::fs::write(d.join("garbage.onnx"), b"this is not protobuf at all").unwrap();
    // The dynamo export without its data file, and with it cut short.
    std::fs::create_dir(d.join("nodata")).unwrap();
    std::fs::write(d.join("nodata/model.onnx"), &dynamo).unwrap();
    std::fs::create_dir(d.join("short")).unwrap();
    std::fs::write(d.join("short/vgg_bn.dynamo.onnx"), &dynamo).unwrap();
    std::fs::write(
        d.join("short/vgg_bn.dynamo.onnx.data"),
        &data[..data.len() - 100],
    )
    .unwrap();
    // An initializer whose bytes disagree with its shape.
    let mut m = model.clone();
    let t = m
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == "features.0.weight")
        .unwrap();
    t.dims[0] *= 2;
    write(&d.join("size.onnx"), &m);
    // A header asking for a huge tensor that is not there.
    let mut m = model.clone();
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.dims = vec![1 << 40, 1 << 20];
    write(&d.join("huge.onnx"), &m);
    // An edge that leads nowhere, and an output nothing writes.
    let mut m = model.clone();
    m.graph.as_mut().unwrap().node[3].input[0] = "nowhere".into();
    write(&d.join("edge.onnx"), &m);
    let mut m = model.clone();
    m.graph.as_mut().unwrap().output[0].name = "missing".into();
    write(&d.join("output.onnx"), &m);

    let input = onnx("vgg_bn.expected.safetensors");
    let cases: [(PathBuf, &[&str]); 8] = [
        (d.join("truncated.onnx"), &["not a readable ONNX model"]),
        (d.join("garbage.onnx"), &["not a readable ONNX model"]),
        (
            d.join("nodata/model.onnx"),
            &["features.0.weight", "external data file"],
        ),
        (d.join("short/vgg_bn.dynamo.onnx"), &["runs past the end"]),
        (d.join("size.onnx"), &["features.0.weight", "needs"]),
        (d.join("huge.onnx"), &["holds", "needs"]),
        (d.join("edge.onnx"), &["reads 'nowhere'", "no earlier node"]),
        (d.join("output.onnx"), &["the graph's output", "'missing'"]),
    ];
    for (path, needles) in cases {
        let out = d.join("out");
        let o = rsp(&[
            "--weights",
            path.to_str().unwrap(),
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {e}", path.display());
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 1, "{}: not one line: {e}", path.display());
        assert!(
            lines[0].starts_with("error: ")
                && lines[0].contains(path.file_name().unwrap().to_str().unwrap()),
            "{e}"
        );
        for n in needles {
            assert!(e.contains(n), "{}: no '{n}' in {e}", path.display());
        }
        assert!(!out.exists(), "{}: output written", path.display());
    }
    // Unsupported ops: one line naming the node and its op.
    for (file, needle) in [
        (
            "refuse_relu6.onnx",
            "(Clip) is not supported: rsp explains ReLU networks",
        ),
        (
            "refuse_grouped.onnx",
            "grouped convolutions are not supported yet",
        ),
    ] {
        let o = rsp(&[
            "--weights",
            onnx(file).to_str().unwrap(),
            input.to_str().unwrap(),
            "--out",
            d.join("out").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.contains(needle), "{e}");
        assert!(!d.join("out").exists());
    }
}

#[test]
fn serve_explains_an_onnx_model() {
    let model = onnx("squeezenet.legacy.onnx");
    let server = Server::start(&["--weights", model.to_str().unwrap(), "--autotune", "off"]);
    let info = server.get_json("/api/info");
    assert_eq!(info["size"], 48, "{info}");
    assert_eq!(info["classes"], 10, "{info}");
    assert!(
        info["model"]
            .as_str()
            .unwrap()
            .contains("ONNX squeezenet.legacy.onnx"),
        "{info}"
    );
    let img = image::RgbImage::from_fn(60, 50, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 30]));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let (status, body) = server.post("/api/images?name=p.png", "image/png", &png);
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let q = serde_json::json!({"id": id, "class": 3, "method": "rsp"});
    let (status, body) = server.post("/api/explain", "application/json", q.to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
}
