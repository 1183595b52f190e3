//! `rsp serve` driven in headless Chromium through chromedriver (WebDriver, the
//! `fantoccini` crate), on a loopback port with the small synthetic model: upload the
//! README's test image, compare the top-5 with the CLI's, explain two classes with RSP
//! and Grad-CAM and compare the maps the page holds with the CLI's `--save-relevance`
//! bit for bit, redraw with another opacity and colour map without a request, refuse a
//! truncated JPEG and a text file in the page while the server keeps serving, write a
//! screenshot of the grid, and stop on Ctrl-C.
//!
//! Needs Debian's `chromium` and `chromium-driver`, so it is ignored unless asked for
//! (`.ci/run` installs them and runs the ignored tests; asked for without them, it
//! fails).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::serve::{base64_bytes, cli_relevance, run_cli, Server};

const WEIGHTS: &str = "weights/synth_vgg.safetensors";
const IMAGE: &str = "docs/synth/ring_star.jpg";
const SIZE: &str = "64";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "needs {CHROMIUM} and {CHROMEDRIVER} (Debian's chromium and chromium-driver)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session")
}

/// Runs `script` (a function body) in the page and returns its value.
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Polls `script` until it returns true.
async fn until(c: &Client, what: &str, script: &str) {
    let start = Instant::now();
    loop {
        if js(c, script).await == json!(true) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn absolute(p: &str) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

/// The CLI's top-5 for the image: (class, label, probability).
fn cli_top5() -> Vec<(u64, String, f64)> {
    let args = [
        "--weights",
        WEIGHTS,
        IMAGE,
        "--size",
        SIZE,
        "--json",
        "{dir}/report.json",
    ];
    let report = run_cli(&args, |dir| {
        std::fs::read_to_string(dir.join("report.json")).unwrap()
    });
    let v: Value = serde_json::from_str(&report).unwrap();
    v["images"][0]["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .take(5)
        .map(|p| {
            (
                p["class"].as_u64().unwrap(),
                p["label"].as_str().unwrap().to_owned(),
                p["probability"].as_f64().unwrap(),
            )
        })
        .collect()
}

async fn upload(c: &Client, path: &str) {
    c.find(Locator::Css("#file"))
        .await
        .unwrap()
        .send_keys(path)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and chromium-driver; .ci/run installs them and runs it"]
async fn the_page_explains_like_the_command_line() {
    let driver = Driver::start();
    let server = Server::start(&["--weights", WEIGHTS, "--size", SIZE, "--autotune", "off"]);
    let c = browser(&driver).await;
    c.goto(&server.url).await.unwrap();
    until(&c, "the page", "return document.body.dataset.ready === '1'").await;
    let adapter = js(&c, "return document.querySelector('#adapter').textContent").await;
    assert!(
        adapter.as_str().unwrap().contains("precision f32"),
        "{adapter}"
    );

    // Upload: the top-5 match the CLI's (same classes and names, same probabilities).
    upload(&c, &absolute(IMAGE)).await;
    until(
        &c,
        "the top-5",
        "return document.querySelectorAll('.image ol li').length === 5",
    )
    .await;
    let page_top = js(&c, "return rspState.images[0].top").await;
    let cli = cli_top5();
    for (i, (class, label, prob)) in cli.iter().enumerate() {
        let p = &page_top[i];
        assert_eq!(p["class"].as_u64().unwrap(), *class, "rank {i}");
        assert_eq!(p["name"].as_str().unwrap(), label, "rank {i}");
        let score = p["score"].as_f64().unwrap();
        assert!(
            (score - prob).abs() <= 1e-6 * prob.abs().max(1e-6),
            "rank {i}: {score} vs {prob}"
        );
    }

    // Two classes, RSP and Grad-CAM (the methods ticked by default).
    let classes = [cli[0].0 as usize, cli[1].0 as usize];
    for class in classes {
        c.find(Locator::Css(&format!("button.cls[data-class='{class}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    let ticked = js(
        &c,
        "return [...document.querySelectorAll('input.method:checked')].map(b => b.value)",
    )
    .await;
    assert_eq!(ticked, json!(["rsp:gradcam", "gradcam"]));
    let before = server.get_json("/api/stats");
    c.find(Locator::Css("#explain"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "four maps",
        "return !rspState.busy && document.querySelectorAll('#grid canvas.map').length === 4",
    )
    .await;
    let error = js(&c, "return document.querySelector('#error').hidden").await;
    assert_eq!(error, json!(true), "the page shows an error");
    let after = server.get_json("/api/stats");
    assert_eq!(
        after["forward_passes"], before["forward_passes"],
        "the four maps reused the upload's forward pass"
    );
    assert_eq!(after["gpu_running_max"], json!(1));

    // The maps the page holds are the CLI's, bit for bit.
    for class in classes {
        for method in ["rsp", "gradcam"] {
            let init = if method == "rsp" { "gradcam" } else { "-" };
            let key = format!("{class}/{method}/{init}");
            let m = js(
                &c,
                &format!(
                    "const id = rspState.images[0].id; return rspState.maps[`${{id}}/{class}/{method}/{init}`]"
                ),
            )
            .await;
            assert!(m.is_object(), "no map {key}");
            let (relevance, heatmap) = cli_relevance(WEIGHTS, IMAGE, SIZE, class, method);
            assert_eq!(
                base64_bytes(m["relevanceB64"].as_str().unwrap()),
                relevance,
                "class {class} {method}: relevance differs from the CLI's"
            );
            assert_eq!(
                base64_bytes(m["heatmapB64"].as_str().unwrap()),
                heatmap,
                "class {class} {method}: heatmap differs from the CLI's"
            );
        }
    }

    // Opacity and colour map: redrawn in the page, no request.
    let requests = server.get_json("/api/stats")["requests"].clone();
    let pixels = "const c = document.querySelector('#grid canvas.map'); \
                  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
                  let s = 0; for (let i = 0; i < d.length; i++) s += d[i] * (i % 7 + 1); return s";
    let (draws0, pixels0) = (js(&c, "return rspState.draws").await, js(&c, pixels).await);
    js(
        &c,
        "const o = document.querySelector('#opacity'); o.value = '0.9'; \
         o.dispatchEvent(new Event('input')); return true",
    )
    .await;
    let pixels1 = js(&c, pixels).await;
    assert_ne!(pixels1, pixels0, "the opacity changed nothing");
    c.find(Locator::Css("#cmap"))
        .await
        .unwrap()
        .select_by_value("coldnhot")
        .await
        .unwrap();
    let (draws2, pixels2) = (js(&c, "return rspState.draws").await, js(&c, pixels).await);
    assert_ne!(pixels2, pixels1, "the colour map changed nothing");
    assert!(
        draws2.as_u64().unwrap() >= draws0.as_u64().unwrap() + 8,
        "the four maps were not redrawn twice: {draws0} → {draws2}"
    );
    assert_eq!(
        server.get_json("/api/stats")["requests"],
        requests,
        "a redraw asked the server"
    );

    // A screenshot of the grid, on the default colour map.
    c.find(Locator::Css("#cmap"))
        .await
        .unwrap()
        .select_by_value("bwr")
        .await
        .unwrap();
    js(
        &c,
        "const o = document.querySelector('#opacity'); o.value = '0.6'; \
         o.dispatchEvent(new Event('input')); return true",
    )
    .await;
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-grid.png");
    std::fs::write(&shot, &png).unwrap();
    println!("screenshot: {}", shot.display());

    // A truncated JPEG and a text file: an error in the page; the server keeps serving.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &std::fs::read(IMAGE).unwrap()[..1500]).unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not an image\n").unwrap();
    for (path, expect) in [
        (&cut, "truncated or damaged"),
        (&text, "not a readable image"),
    ] {
        let name = path.file_name().unwrap().to_str().unwrap();
        upload(&c, &path.display().to_string()).await;
        until(
            &c,
            &format!("the error on {name}"),
            &format!(
                "const e = document.querySelector('#error'); \
                 return !e.hidden && e.textContent.startsWith('{name}')"
            ),
        )
        .await;
        let message = js(&c, "return document.querySelector('#error').textContent").await;
        let message = message.as_str().unwrap();
        assert!(message.contains(expect), "{message}");
    }
    assert_eq!(js(&c, "return rspState.images.length").await, json!(1));
    assert_eq!(server.get_json("/api/info")["classes"], json!(6));
    upload(&c, &absolute(IMAGE)).await;
    until(
        &c,
        "the error to clear",
        "return document.querySelector('#error').hidden",
    )
    .await;

    c.close().await.unwrap();
    let (clean, printed) = server.stop();
    assert!(clean, "rsp serve did not exit cleanly on Ctrl-C");
    assert!(printed.contains("rsp serve: stopped"), "{printed}");
}
