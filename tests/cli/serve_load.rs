//! `rsp serve` under load on loopback, without a browser: 8 clients × 20 requests,
//! uploads and explanations of three images with four methods mixed, against a
//! forward-pass cache smaller than the three images' passes. Every answer must equal
//! the one a lone client got (bit for bit), none may fail, the GPU never runs two jobs
//! at once, the kept passes stay within their budget, and a second round leaves the
//! server's resident memory where the first left it. Also: the API's refusals (unknown
//! method, class out of range, an image the server does not keep, an upload over the
//! size limit) and `--host`'s notice.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::serve::Server;

const WEIGHTS: &str = "weights/synth_vgg.safetensors";
const METHODS: [&str; 4] = ["rsp", "gradcam", "lrp-ab", "rap"];

/// `rsp serve` with the synthetic VGG at 64 px, fixed kernels, and `extra` flags.
fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--weights", WEIGHTS, "--size", "64", "--autotune", "off"];
    args.extend(extra);
    Server::start(&args)
}

/// Three small images: the README's, and two generated patterns.
fn images() -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(
        "ring_star.jpg".to_owned(),
        std::fs::read("docs/synth/ring_star.jpg").unwrap(),
    )];
    for seed in 0..2u32 {
        let img = image::RgbImage::from_fn(80, 72, |x, y| {
            let v = (x * (3 + seed) + y * (5 + 2 * seed)) % 256;
            image::Rgb([v as u8, (255 - v) as u8, ((x ^ y) * 7 % 256) as u8])
        });
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        out.push((format!("pattern{seed}.png"), png));
    }
    out
}

fn upload(s: &Server, name: &str, bytes: &[u8]) -> Value {
    let (status, body) = s.post(&format!("/api/images?name={name}"), "image/png", bytes);
    assert_eq!(status, 200, "upload {name}: {body}");
    body
}

fn explain(s: &Server, id: &str, class: u64, method: &str) -> (u16, Value) {
    let q = json!({"id": id, "class": class, "method": method});
    s.post("/api/explain", "application/json", q.to_string().as_bytes())
}

#[test]
fn concurrent_clients_get_the_lone_clients_answers() {
    // One synthetic-VGG pass at 64 px keeps about 0.9 MB: a 1 MiB budget holds one of
    // the three images, so passes are evicted and recomputed under load.
    let server = Arc::new(start(&["--cache-mb", "1"]));
    let imgs = images();
    // A lone client: each image, its top-2 classes, every method.
    let mut want: HashMap<(String, u64, &str), (String, String)> = HashMap::new();
    let mut work = Vec::new();
    for (name, bytes) in &imgs {
        let up = upload(&server, name, bytes);
        let id = up["id"].as_str().unwrap().to_owned();
        for p in up["top"].as_array().unwrap().iter().take(2) {
            let class = p["class"].as_u64().unwrap();
            for method in METHODS {
                let (status, r) = explain(&server, &id, class, method);
                assert_eq!(status, 200, "{r}");
                want.insert(
                    (id.clone(), class, method),
                    (
                        r["relevance"].as_str().unwrap().to_owned(),
                        r["heatmap"].as_str().unwrap().to_owned(),
                    ),
                );
                work.push((id.clone(), class, method));
            }
        }
    }
    let want = Arc::new(want);
    let work = Arc::new(work);
    let imgs = Arc::new(imgs);
    let round = |r: u64| {
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (server, want, work, imgs) =
                    (server.clone(), want.clone(), work.clone(), imgs.clone());
                std::thread::spawn(move || {
                    let mut answered = 0;
                    for i in 0..20u64 {
                        let pick = ((t * 31 + i * 17 + r * 7) * 2654435761 % 1000003) as usize;
                        if i % 5 == 0 {
                            let (name, bytes) = &imgs[pick % imgs.len()];
                            let up = upload(&server, name, bytes);
                            assert!(up["top"].as_array().unwrap().len() == 5, "{up}");
                        } else {
                            let (id, class, method) = &work[pick % work.len()];
                            let (status, r) = explain(&server, id, *class, method);
                            assert_eq!(status, 200, "{r}");
                            let (rel, heat) = &want[&(id.clone(), *class, *method)];
                            assert_eq!(
                                r["relevance"].as_str().unwrap(),
                                rel,
                                "{id} {class} {method}"
                            );
                            assert_eq!(
                                r["heatmap"].as_str().unwrap(),
                                heat,
                                "{id} {class} {method}"
                            );
                        }
                        answered += 1;
                    }
                    answered
                })
            })
            .collect();
        let total: usize = threads
            .into_iter()
            .map(|t| t.join().expect("a client failed"))
            .sum();
        assert_eq!(total, 160);
    };
    round(1);
    let rss1 = server.rss_kb();
    let stats1 = server.get_json("/api/stats");
    round(2);
    let rss2 = server.rss_kb();
    let stats = server.get_json("/api/stats");
    println!("after round 1: RSS {rss1} kB, {stats1}");
    println!("after round 2: RSS {rss2} kB, {stats}");
    assert_eq!(
        stats["gpu_running_max"],
        json!(1),
        "two GPU jobs ran at once"
    );
    let limit = stats["cache_limit"].as_u64().unwrap();
    let kept = stats["cache_bytes"].as_u64().unwrap();
    assert!(
        kept <= limit,
        "kept passes {kept} B over the budget {limit} B"
    );
    assert!(
        stats["forward_reused"].as_u64().unwrap() > 0,
        "no pass was reused"
    );
    assert!(
        stats["forward_passes"].as_u64().unwrap() > 3,
        "no pass was evicted and recomputed under a 1 MiB budget"
    );
    assert!(
        rss2 <= rss1 + 32 * 1024,
        "resident memory grew from {rss1} kB to {rss2} kB over a second identical round"
    );
    assert_eq!(stats["queued"], json!(0));
}

#[test]
fn the_api_refuses_bad_requests_and_keeps_serving() {
    let server = start(&["--methods", "rsp,gradcam", "--max-upload-mb", "1"]);
    let ring = std::fs::read("docs/synth/ring_star.jpg").unwrap();
    let up = upload(&server, "ring_star.jpg", &ring);
    let id = up["id"].as_str().unwrap();
    let refusals = [
        (explain(&server, id, 0, "lrp-ab"), 400, "not offered"),
        (explain(&server, id, 6, "rsp"), 400, "out of range"),
        (
            explain(&server, "0123abcd", 0, "rsp"),
            400,
            "upload it again",
        ),
    ];
    for ((status, body), want_status, want) in refusals {
        assert_eq!(status, want_status, "{body}");
        assert!(body["error"].as_str().unwrap().contains(want), "{body}");
    }
    // Over --max-upload-mb: refused from its Content-Length, before the body is read
    // (a client still sending would see the connection close; the page checks the size
    // before it sends).
    let head = over_limit_answer(&server, 2 << 20);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    let (status, body) = server.post("/api/images?name=cut.jpg", "image/jpeg", &ring[..1500]);
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("cut.jpg: not a readable image, truncated"),
        "{body}"
    );
    let (status, _) = explain(&server, id, 5, "gradcam");
    assert_eq!(status, 200, "the server stopped serving after refusals");
    let info = server.get_json("/api/info");
    assert_eq!(info["methods"].as_array().unwrap().len(), 2);
    assert_eq!(info["readout"], json!("sigmoid"));
}

/// The status line of the answer to an upload that announces `len` bytes and sends none.
fn over_limit_answer(server: &Server, len: usize) -> String {
    use std::io::{Read, Write};
    let addr = server.url.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        tcp,
        "POST /api/images?name=big.png HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\n\
         Content-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    let n = tcp.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.contains("--max-upload-mb"), "{answer}");
    answer.lines().next().unwrap_or("").to_owned()
}

#[test]
fn listening_beyond_loopback_says_so() {
    let server = start(&["--host", "0.0.0.0"]);
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let (clean, printed) = server.stop();
    assert!(clean);
    assert!(printed.contains("reachable by other machines"), "{printed}");
    assert!(printed.contains("rsp serve: stopped"), "{printed}");
}
