//! Starting `rsp serve` on a loopback port for the serve tests, and talking to it.

// Each serve test uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// `rsp serve` running on a free loopback port; killed when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Lines it printed after its URL line, read by [`Server::stop`].
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Server {
    /// Starts `rsp serve ARGS --port 0` and waits for the URL it prints.
    pub fn start(args: &[&str]) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_rsp"))
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rsp serve starts");
        // Owned at once, so that a failure below still kills and reaps it.
        let mut server = Server {
            child,
            url: String::new(),
            stdout: None,
        };
        let mut out = BufReader::new(server.child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            let n = out.read_line(&mut line).unwrap();
            assert!(n > 0, "rsp serve exited before printing its URL");
            if let Some(rest) = line.trim().strip_prefix("rsp serve: ") {
                let url = rest.split_whitespace().next().unwrap();
                server.url = url.trim_end_matches('/').to_owned();
                server.stdout = Some(out);
                return server;
            }
        }
    }

    /// `GET path` as JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let body = ureq::get(format!("{}{path}", self.url))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_body()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// `POST path` with `body`: the status and the body as JSON.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// The server's resident memory (kB), from /proc.
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc")
    }

    /// Stops it as Ctrl-C does (SIGINT) and returns whether it exited cleanly and what
    /// it printed.
    pub fn stop(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        if let Some(mut out) = self.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        }
        (status.success(), rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes base64 (the maps' encoding).
pub fn base64_bytes(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// A tensor's raw bytes from a safetensors file.
pub fn safetensors_bytes(path: &std::path::Path, name: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name).unwrap().data().to_vec()
}

/// Runs the CLI, `rsp ARGS --autotune off --out DIR` with DIR a fresh temporary folder
/// (also written for `{dir}` inside ARGS), checks it succeeded and gives DIR to `then`.
pub fn run_cli<T>(args: &[&str], then: impl FnOnce(&std::path::Path) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_rsp"))
        .args(args.iter().map(|a| a.replace("{dir}", &at)))
        .args(["--autotune", "off", "--out", &at])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    then(dir.path())
}

/// The CLI's `--save-relevance` file for `image`, one class and one method: its
/// `relevance` and `heatmap` bytes.
pub fn cli_relevance(
    weights: &str,
    image: &str,
    size: &str,
    class: usize,
    method: &str,
) -> (Vec<u8>, Vec<u8>) {
    let class = class.to_string();
    let args = [
        "--weights",
        weights,
        image,
        "--size",
        size,
        "--method",
        method,
        "--target",
        &class,
        "--save-relevance",
        "{dir}/r.safetensors",
    ];
    run_cli(&args, |dir| {
        let file = dir.join("r.safetensors");
        (
            safetensors_bytes(&file, "relevance"),
            safetensors_bytes(&file, "heatmap"),
        )
    })
}
