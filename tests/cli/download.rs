//! Weight downloads without the internet: a loopback HTTP server started by each test
//! serves a small safetensors model made here, and the hub URL, cache directory and
//! expected SHA-256 are pointed at it (library parameters, or the CLI's environment).

use crate::{common, support};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rsp::models::hub::{self, download_verified, resolve_model, WeightSources};
use rsp::Model;
use safetensors::tensor::Dtype;
use sha2::{Digest, Sha256};

/// What the server answers for one path.
#[derive(Clone)]
enum Reply {
    /// 200 with the whole body.
    Body(Vec<u8>),
    /// 200 announcing `claimed` bytes but sending only `body`, then closing.
    Truncated { body: Vec<u8>, claimed: usize },
    /// This status with a short text body.
    Status(u16),
}

/// A loopback server answering canned replies; it stops by itself after
/// `max_requests` connections or a minute, whichever comes first.
struct Server {
    base: String,
    requests: Arc<AtomicUsize>,
}

impl Server {
    fn start(routes: HashMap<String, Reply>, max_requests: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while count.load(Ordering::SeqCst) < max_requests && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        answer(stream, &routes);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        Server { base, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn answer(mut stream: TcpStream, routes: &HashMap<String, Reply>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let reply = routes.get(&path).cloned().unwrap_or(Reply::Status(404));
    let (status, body, claimed) = match reply {
        Reply::Body(b) => (200, b.clone(), b.len()),
        Reply::Truncated { body, claimed } => (200, body, claimed),
        Reply::Status(s) => (s, b"no such file\n".to_vec(), 13),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Error",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {claimed}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(&body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// A tiny ResNet (BasicBlocks, 1000 classes) in torchvision naming, as file bytes.
fn fixture() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.safetensors");
    support::resnet_state(false, [1, 1, 1, 1], 8, [4, 6, 5, 7], 1000, 11).save(&path, Dtype::F32);
    std::fs::read(path).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Path on the server of `name`'s weights, as the hub lays it out.
fn hub_path(name: &str) -> String {
    format!("/timm/{name}.tv_in1k/resolve/main/model.safetensors")
}

/// Every file in `dir` (names), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    let e = format!("{:#}", r.expect_err("expected an error"));
    println!("{e}");
    e
}

#[test]
fn download_succeeds_checks_the_hash_and_loads() {
    let bytes = fixture();
    let server = Server::start(
        HashMap::from([(hub_path("resnet18"), Reply::Body(bytes.clone()))]),
        4,
    );
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("resnet18.safetensors");
    let url = format!("{}{}", server.base, hub_path("resnet18"));
    let digest = download_verified(&url, &dest, Some(&sha256(&bytes)), false).unwrap();
    assert_eq!(digest, sha256(&bytes));
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(listing(cache.path()), ["resnet18.safetensors"]);
    let model = Model::from_file(&dest).unwrap();
    assert_eq!(model.num_classes(), 1000);
    // Upper-case expected hashes are accepted too.
    let dest2 = cache.path().join("again.safetensors");
    download_verified(&url, &dest2, Some(&sha256(&bytes).to_uppercase()), false).unwrap();
}

#[test]
fn wrong_checksum_leaves_nothing() {
    let bytes = fixture();
    let server = Server::start(
        HashMap::from([(hub_path("resnet18"), Reply::Body(bytes.clone()))]),
        2,
    );
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("resnet18.safetensors");
    let url = format!("{}{}", server.base, hub_path("resnet18"));
    let wrong = "0".repeat(64);
    let e = err_text(download_verified(&url, &dest, Some(&wrong), false));
    assert!(
        e.contains(&url) && e.contains("SHA-256") && e.contains(&wrong),
        "{e}"
    );
    assert!(
        e.contains(&sha256(&bytes)),
        "the computed hash is reported: {e}"
    );
    assert!(
        listing(cache.path()).is_empty(),
        "{:?}",
        listing(cache.path())
    );
}

#[test]
fn truncated_body_leaves_nothing() {
    let bytes = fixture();
    let half = bytes[..bytes.len() / 2].to_vec();
    let server = Server::start(
        HashMap::from([(
            hub_path("resnet18"),
            Reply::Truncated {
                body: half,
                claimed: bytes.len(),
            },
        )]),
        2,
    );
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("resnet18.safetensors");
    let url = format!("{}{}", server.base, hub_path("resnet18"));
    // With and without an expected hash: the length check alone must catch it.
    let e = err_text(download_verified(&url, &dest, Some(&sha256(&bytes)), false));
    assert!(e.contains(&url), "{e}");
    assert!(
        listing(cache.path()).is_empty(),
        "{:?}",
        listing(cache.path())
    );
    let e = err_text(download_verified(&url, &dest, None, false));
    assert!(e.contains(&url), "{e}");
    assert!(
        listing(cache.path()).is_empty(),
        "{:?}",
        listing(cache.path())
    );
}

#[test]
fn not_found_names_the_url() {
    let server = Server::start(HashMap::new(), 1);
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("resnet18.safetensors");
    let url = format!("{}{}", server.base, hub_path("resnet18"));
    let e = err_text(download_verified(&url, &dest, None, false));
    assert!(e.contains(&url) && e.contains("404"), "{e}");
    assert!(listing(cache.path()).is_empty());
}

#[test]
fn unreachable_hub_names_the_url() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}{}", hub_path("resnet18"));
    let e = err_text(download_verified(
        &url,
        &cache.path().join("x.safetensors"),
        None,
        false,
    ));
    assert!(e.contains(&url), "{e}");
    assert!(listing(cache.path()).is_empty());
}

/// Sources that never touch the real hub or the user's directories.
fn sources(weights: &Path, cache: &Path, hub_url: &str) -> WeightSources {
    WeightSources {
        weights_dir: weights.to_path_buf(),
        cache_dir: Some(cache.to_path_buf()),
        hub_url: hub_url.to_string(),
        offline: false,
        allow_unpinned: false,
        sha256_override: None,
        progress: false,
    }
}

#[test]
fn resolution_order_and_refusals() {
    let bytes = fixture();
    let server = Server::start(
        HashMap::from([
            (hub_path("resnet18"), Reply::Body(bytes.clone())),
            (hub_path("resnet34"), Reply::Body(bytes.clone())),
        ]),
        8,
    );
    let weights = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut src = sources(weights.path(), cache.path(), &server.base);

    // Unknown names list the choices.
    let e = err_text(resolve_model("vgg17", &src));
    assert!(
        e.contains("unknown model 'vgg17'") && e.contains("resnet50"),
        "{e}"
    );

    // Offline: where to put the file and where to get it, and no request made.
    src.offline = true;
    let e = err_text(resolve_model("resnet18", &src));
    let url = format!("{}{}", server.base, hub_path("resnet18"));
    let cached = cache.path().join("resnet18.safetensors");
    assert!(e.contains("--offline"), "{e}");
    assert!(e.contains(&url), "{e}");
    assert!(e.contains(&cached.display().to_string()), "{e}");
    assert_eq!(server.requests(), 0);
    src.offline = false;

    // The pinned hash of the real resnet18 does not match the fixture: refused.
    let e = err_text(resolve_model("resnet18", &src));
    assert!(e.contains("SHA-256") && e.contains(&url), "{e}");
    assert!(listing(cache.path()).is_empty());

    // With the expected hash pointed at the fixture it is downloaded into the cache ...
    src.sha256_override = Some(sha256(&bytes));
    assert_eq!(resolve_model("resnet18", &src).unwrap(), cached);
    assert_eq!(std::fs::read(&cached).unwrap(), bytes);
    // ... and used from there without another request.
    let before = server.requests();
    assert_eq!(resolve_model("resnet18", &src).unwrap(), cached);
    assert_eq!(server.requests(), before);

    // A file in the weights directory wins over the cache.
    let local = weights.path().join("resnet18.safetensors");
    std::fs::write(&local, &bytes).unwrap();
    assert_eq!(resolve_model("resnet18", &src).unwrap(), local);
    // Any name works for a local file, downloadable or not.
    let custom = weights.path().join("my_net.safetensors");
    std::fs::write(&custom, &bytes).unwrap();
    assert_eq!(resolve_model("my_net", &src).unwrap(), custom);

    // No pinned hash (resnet34): refused unless allowed, then fetched unchecked.
    src.sha256_override = None;
    assert!(hub::find("resnet34").unwrap().sha256.is_none());
    let e = err_text(resolve_model("resnet34", &src));
    assert!(
        e.contains("--allow-unpinned") && e.contains("no pinned SHA-256"),
        "{e}"
    );
    src.allow_unpinned = true;
    let p = resolve_model("resnet34", &src).unwrap();
    assert_eq!(p, cache.path().join("resnet34.safetensors"));
}

// ---- the same through the `rsp` binary, configured by environment variables ----

struct Env {
    weights: tempfile::TempDir,
    cache: tempfile::TempDir,
    out: tempfile::TempDir,
    input: PathBuf,
}

impl Env {
    fn new() -> Env {
        let out = tempfile::tempdir().unwrap();
        let input = out.path().join("input.safetensors");
        let x = common::random(&[1, 3, 32, 32], 5);
        std::fs::write(
            &input,
            rsp::models::weights::to_safetensors_bytes(&[("input", &x)], &[]).unwrap(),
        )
        .unwrap();
        Env {
            weights: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
            out,
            input,
        }
    }

    /// Runs `rsp ARGS --out OUT INPUT` against `hub`, with `sha` as the expected hash.
    fn rsp(&self, hub: &str, sha: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsp"));
        // A small input: what these tests check is the download, not the explanation.
        cmd.args(args)
            .args(["--size", "64"])
            .arg("--out")
            .arg(self.out.path())
            .arg(&self.input)
            .env("RSP_HUB_URL", hub)
            .env("RSP_CACHE_DIR", self.cache.path())
            .env("RSP_WEIGHTS_DIR", self.weights.path())
            .env_remove("RSP_WEIGHTS_SHA256")
            // As a user runs it: the first run also autotunes into the cache folder.
            .env_remove("RSP_AUTOTUNE");
        // The loopback server must be reached directly.
        for v in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
            cmd.env_remove(v);
        }
        if let Some(sha) = sha {
            cmd.env("RSP_WEIGHTS_SHA256", sha);
        }
        cmd.output().expect("run rsp")
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_failure(o: &Output, needles: &[&str]) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    for n in needles {
        assert!(e.contains(n), "expected '{n}' in: {e}");
    }
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    println!("{e}");
    e
}

#[test]
fn cli_downloads_into_the_cache_then_runs_offline() {
    let bytes = fixture();
    let server = Server::start(
        HashMap::from([(hub_path("resnet18"), Reply::Body(bytes.clone()))]),
        2,
    );
    let env = Env::new();
    let sha = sha256(&bytes);
    let o = env.rsp(&server.base, Some(&sha), &["--model", "resnet18"]);
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    assert!(
        stderr(&o).contains(&sha),
        "the hash is reported: {}",
        stderr(&o)
    );
    let cached = env.cache.path().join("resnet18.safetensors");
    assert_eq!(std::fs::read(&cached).unwrap(), bytes);
    // The run also autotuned its kernels into the same cache directory; nothing else
    // (no partial download, no temporary file) is left there.
    assert_eq!(
        listing(env.cache.path()),
        ["autotune.json", "resnet18.safetensors"]
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("explained class:"));
    assert!(env.out.path().join("input.rsp.png").exists());

    // The cached copy serves --offline runs; the server sees no second request.
    let o = env.rsp(&server.base, None, &["--model", "resnet18", "--offline"]);
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    assert_eq!(server.requests(), 1);
}

#[test]
fn cli_download_failing_half_way_leaves_nothing() {
    let bytes = fixture();
    let server = Server::start(
        HashMap::from([(
            hub_path("resnet18"),
            Reply::Truncated {
                body: bytes[..bytes.len() / 3].to_vec(),
                claimed: bytes.len(),
            },
        )]),
        1,
    );
    let env = Env::new();
    let url = format!("{}{}", server.base, hub_path("resnet18"));
    let o = env.rsp(
        &server.base,
        Some(&sha256(&bytes)),
        &["--model", "resnet18"],
    );
    let cached = env.cache.path().join("resnet18.safetensors");
    let e = assert_clean_failure(&o, &[&url, &cached.display().to_string()]);
    assert!(e.contains("to fetch it by hand"), "{e}");
    assert!(
        listing(env.cache.path()).is_empty(),
        "{:?}",
        listing(env.cache.path())
    );
    assert!(!env.out.path().join("input.rsp.png").exists());
}

#[test]
fn cli_wrong_checksum_and_not_found_fail_clearly() {
    let bytes = fixture();
    let server = Server::start(
        HashMap::from([(hub_path("resnet18"), Reply::Body(bytes.clone()))]),
        2,
    );
    let env = Env::new();
    let url = format!("{}{}", server.base, hub_path("resnet18"));
    // No override: the real pinned hash of resnet18 does not match the fixture.
    let o = env.rsp(&server.base, None, &["--model", "resnet18"]);
    assert_clean_failure(&o, &[&url, "SHA-256"]);
    assert!(listing(env.cache.path()).is_empty());
    // The server has no resnet50.
    let url50 = format!("{}{}", server.base, hub_path("resnet50"));
    let o = env.rsp(&server.base, None, &["--model", "resnet50"]);
    assert_clean_failure(&o, &[&url50, "404"]);
    assert!(listing(env.cache.path()).is_empty());
}

#[test]
fn cli_offline_unknown_and_unpinned_models_explain_themselves() {
    let env = Env::new();
    // Nothing listens here; none of these cases may try.
    let hub = "http://127.0.0.1:9";
    let o = env.rsp(hub, None, &["--model", "vgg16", "--offline"]);
    let url = format!("{hub}{}", hub_path("vgg16"));
    let cached = env.cache.path().join("vgg16.safetensors");
    assert_clean_failure(&o, &["--offline", &url, &cached.display().to_string()]);

    let o = env.rsp(hub, None, &["--model", "vgg17"]);
    assert_clean_failure(&o, &["unknown model 'vgg17'", "vgg16"]);

    let o = env.rsp(hub, None, &["--model", "resnet101"]);
    assert_clean_failure(&o, &["no pinned SHA-256", "--allow-unpinned"]);

    // Connection refused: the message says how to get the file by hand.
    let o = env.rsp(hub, None, &["--model", "resnet50"]);
    assert_clean_failure(&o, &[&format!("{hub}{}", hub_path("resnet50")), "by hand"]);
    assert!(listing(env.cache.path()).is_empty());
}

#[test]
fn cli_unpinned_download_prints_the_computed_hash() {
    let bytes = fixture();
    let server = Server::start(
        HashMap::from([(hub_path("resnet34"), Reply::Body(bytes.clone()))]),
        1,
    );
    let env = Env::new();
    let o = env.rsp(
        &server.base,
        None,
        &["--model", "resnet34", "--allow-unpinned"],
    );
    assert!(o.status.success(), "rsp failed: {}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&sha256(&bytes)) && e.contains("not checked"),
        "{e}"
    );
}
