//! Pretrained weights by name: which torchvision ImageNet classifiers `--model NAME` can
//! fetch, where their files are looked for, and the checked download into a per-user
//! cache.
//!
//! Resolution order for `--model NAME` (the CLI's `--weights FILE` bypasses all of it):
//! 1. `$RSP_WEIGHTS_DIR/NAME.safetensors`, or `weights/NAME.safetensors` (relative to the
//!    current directory) when `$RSP_WEIGHTS_DIR` is unset;
//! 2. the cache: `$RSP_CACHE_DIR/NAME.safetensors`, else `<user cache dir>/rsp/...`
//!    (`$XDG_CACHE_HOME` or `~/.cache` on Linux);
//! 3. a download of the timm copy of the torchvision weights from the Hugging Face hub
//!    (`$RSP_HUB_URL` replaces `https://huggingface.co`, for mirrors and tests).
//!
//! A download is streamed into a temporary file in the cache directory, hashed on the
//! way, and renamed to its final name only when its SHA-256 matches the pinned value,
//! so a failed or interrupted download never leaves a file that looks complete.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

/// The hub the weights come from unless `$RSP_HUB_URL` says otherwise.
pub const DEFAULT_HUB_URL: &str = "https://huggingface.co";

/// One pretrained classifier that `--model NAME` can download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubModel {
    /// torchvision's name, used for `--model` and the file name (`NAME.safetensors`).
    pub name: &'static str,
    /// Hugging Face repository holding `model.safetensors`.
    pub repo: &'static str,
    /// SHA-256 of `model.safetensors` as published on the hub's file page, where one
    /// could be found; `None` means the download needs `--allow-unpinned`.
    pub sha256: Option<&'static str>,
    /// Size as shown on the hub's file listing, where it was seen.
    pub size: Option<&'static str>,
}

/// Every model with torchvision-equivalent ImageNet weights published by timm
/// (`timm/<name>.tv_in1k`: "original torchvision weights", BSD-3-Clause).
///
/// The SHA-256 values were copied from the "Git LFS Details" box of each file's page,
/// `https://huggingface.co/timm/<name>.tv_in1k/blob/<rev>/model.safetensors`; `<rev>` is
/// `main` unless noted. No hash could be found for vgg11_bn, vgg13, resnet34 and
/// resnet101, so those are unpinned rather than guessed.
pub const HUB_MODELS: &[HubModel] = &[
    HubModel {
        name: "vgg11",
        repo: "timm/vgg11.tv_in1k",
        sha256: Some("682c023808812148d4e60c76d80ad83dbeaf5d50eb1a952a0b836895003151e5"),
        size: Some("531 MB"),
    },
    HubModel {
        name: "vgg11_bn",
        repo: "timm/vgg11_bn.tv_in1k",
        sha256: None,
        size: None,
    },
    HubModel {
        name: "vgg13",
        repo: "timm/vgg13.tv_in1k",
        sha256: None,
        size: Some("532 MB"),
    },
    HubModel {
        name: "vgg13_bn",
        repo: "timm/vgg13_bn.tv_in1k",
        // blob/ed6e64d6167edbe08697cb4d7ceaef5077972131 (the "Add model" commit)
        sha256: Some("7dae235e35772693cd527e7ac9ef8f6594707a14a8d26aabdb83c0baa6847861"),
        size: Some("532 MB"),
    },
    HubModel {
        name: "vgg16",
        repo: "timm/vgg16.tv_in1k",
        sha256: Some("57b026918159a6bf9faf8405c3a551903768e7138989d9c6224a14227203fad8"),
        size: Some("553 MB"),
    },
    HubModel {
        name: "vgg16_bn",
        repo: "timm/vgg16_bn.tv_in1k",
        // blob/e00c01e7cee168262dcba6428dc4a8f41e27e965 (the "Add model" commit)
        sha256: Some("88bbedbc8e780413736db38ac4efd41b06fc0e93fd5b8879b584bba63a950129"),
        size: Some("554 MB"),
    },
    HubModel {
        name: "vgg19",
        repo: "timm/vgg19.tv_in1k",
        sha256: Some("11aea017b543ff59233749d8f1cf544cda749378f5790d2fedab841fb86b7669"),
        size: Some("575 MB"),
    },
    HubModel {
        name: "vgg19_bn",
        repo: "timm/vgg19_bn.tv_in1k",
        sha256: Some("f8249087e63bae61c6166bb23d7c26efe1b2a43fd9fb5cd60ac6ce00535ba312"),
        size: Some("575 MB"),
    },
    HubModel {
        name: "resnet18",
        repo: "timm/resnet18.tv_in1k",
        sha256: Some("694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81"),
        size: Some("46.8 MB"),
    },
    HubModel {
        name: "resnet34",
        repo: "timm/resnet34.tv_in1k",
        sha256: None,
        size: Some("87.3 MB"),
    },
    HubModel {
        name: "resnet50",
        repo: "timm/resnet50.tv_in1k",
        sha256: Some("5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888"),
        size: Some("102 MB"),
    },
    HubModel {
        name: "resnet101",
        repo: "timm/resnet101.tv_in1k",
        sha256: None,
        size: Some("179 MB"),
    },
    HubModel {
        name: "resnet152",
        repo: "timm/resnet152.tv_in1k",
        sha256: Some("15897077afdf4d6334dc0c3f8e6fb483afb3faa9298c139f3c6eb29bca6ae5b2"),
        size: Some("241 MB"),
    },
];

/// The downloadable model called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static HubModel> {
    HUB_MODELS.iter().find(|m| m.name == name)
}

/// Comma-separated names of every downloadable model (for messages and `--help`).
pub fn model_names() -> String {
    HUB_MODELS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl HubModel {
    /// Download address of the weights under hub `base` (no trailing slash).
    pub fn url(&self, base: &str) -> String {
        format!("{base}/{}/resolve/main/model.safetensors", self.repo)
    }

    /// The hub page that shows the file's published SHA-256.
    pub fn file_page(&self) -> String {
        format!(
            "{DEFAULT_HUB_URL}/{}/blob/main/model.safetensors",
            self.repo
        )
    }

    /// File name in the weights and cache directories.
    pub fn file_name(&self) -> String {
        format!("{}.safetensors", self.name)
    }
}

/// Where weights are looked for and how a missing file may be fetched.
#[derive(Clone, Debug)]
pub struct WeightSources {
    /// Local weights directory (`$RSP_WEIGHTS_DIR`, else `weights`).
    pub weights_dir: PathBuf,
    /// Download cache; `None` when no per-user cache directory is known.
    pub cache_dir: Option<PathBuf>,
    /// Hub base URL without a trailing slash.
    pub hub_url: String,
    /// Never download: report where to put the file instead.
    pub offline: bool,
    /// Download models whose hash is not pinned (printing the computed hash).
    pub allow_unpinned: bool,
    /// Expected SHA-256 replacing the pinned one (`$RSP_WEIGHTS_SHA256`): for mirrors
    /// serving another revision, and for tests serving a fixture.
    pub sha256_override: Option<String>,
    /// Draw a progress bar (it is hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

impl WeightSources {
    /// Sources from the environment: `$RSP_WEIGHTS_DIR`, `$RSP_CACHE_DIR`,
    /// `$RSP_HUB_URL` and `$RSP_WEIGHTS_SHA256`.
    pub fn from_env(offline: bool, allow_unpinned: bool) -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        WeightSources {
            weights_dir: var("RSP_WEIGHTS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("weights")),
            cache_dir: var("RSP_CACHE_DIR")
                .map(PathBuf::from)
                .or_else(|| dirs::cache_dir().map(|d| d.join("rsp"))),
            hub_url: var("RSP_HUB_URL")
                .map(|v| v.to_string_lossy().trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_HUB_URL.to_string()),
            offline,
            allow_unpinned,
            sha256_override: var("RSP_WEIGHTS_SHA256").map(|v| v.to_string_lossy().into_owned()),
            progress: true,
        }
    }
}

/// The weights file for `--model name`: a local file, the cached download, or a fresh
/// checked download (see the module docs for the order).
pub fn resolve_model(name: &str, src: &WeightSources) -> Result<PathBuf> {
    let local = src.weights_dir.join(format!("{name}.safetensors"));
    if local.is_file() {
        return Ok(local);
    }
    let Some(hub) = find(name) else {
        crate::error::bail_invalid!(
            "unknown model '{name}': no file {} and no download for that name; choose one of \
             {} or pass --weights FILE",
            local.display(),
            model_names()
        );
    };
    let cache_dir = src.cache_dir.as_ref().ok_or_else(|| {
        anyhow!(
            "model '{name}': weights not found at {} and no cache directory is known \
             (set $RSP_CACHE_DIR or $HOME)",
            local.display()
        )
    })?;
    let cached = cache_dir.join(hub.file_name());
    if cached.is_file() {
        return Ok(cached);
    }
    let url = hub.url(&src.hub_url);
    let how_to = || {
        format!(
            "download {url}{} and save it as {} (or {}), or pass --weights FILE",
            hub.size.map(|s| format!(" ({s})")).unwrap_or_default(),
            cached.display(),
            local.display()
        )
    };
    if src.offline {
        bail!(
            "model '{name}': weights not found and --offline forbids downloading; {}",
            how_to()
        );
    }
    let expected = match (&src.sha256_override, hub.sha256) {
        (Some(h), _) => Some(parse_sha256(h).context("$RSP_WEIGHTS_SHA256")?),
        (None, Some(h)) => Some(h.to_string()),
        (None, None) if src.allow_unpinned => None,
        (None, None) => bail!(
            "model '{name}': rsp has no pinned SHA-256 for {url}, so it is not downloaded \
             unchecked; rerun with --allow-unpinned (the computed SHA-256 is printed, compare \
             it with {}), set $RSP_WEIGHTS_SHA256 to the expected hash, or {}",
            hub.file_page(),
            how_to()
        ),
    };
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create cache directory {}", cache_dir.display()))?;
    let digest = download_verified(&url, &cached, expected.as_deref(), src.progress)
        .map_err(|e| anyhow!("model '{name}': {e:#}; to fetch it by hand, {}", how_to()))?;
    if expected.is_none() {
        eprintln!(
            "warning: {name}: SHA-256 {digest} was not checked against a pinned value; compare \
             it with {}",
            hub.file_page()
        );
    }
    Ok(cached)
}

/// Validates a hex SHA-256 (64 hex digits, either case) and returns it in lower case.
pub fn parse_sha256(hex: &str) -> Result<String> {
    let h = hex.trim().to_ascii_lowercase();
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("'{hex}' is not a SHA-256 (64 hex digits)");
    }
    Ok(h)
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `url` to `dest`. The body is streamed into a temporary file beside `dest`
/// and hashed on the way; only when it is complete (as long as its Content-Length) and
/// its SHA-256 equals `expected_sha256` (when given) is it renamed to `dest`. On any
/// failure the temporary file is removed and `dest` is untouched. Returns the SHA-256.
pub fn download_verified(
    url: &str,
    dest: &Path,
    expected_sha256: Option<&str>,
    progress: bool,
) -> Result<String> {
    let expected = expected_sha256.map(parse_sha256).transpose()?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = dest
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file path", dest.display()))?
        .to_string_lossy()
        .into_owned();
    remove_stale_parts(dir, &file_name);

    let agent: ureq::Agent = ureq::Agent::config_builder()
        // Status codes are reported below with the URL rather than as bare errors.
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // A stalled transfer fails instead of hanging; the whole body has no limit.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent
        .get(url)
        .header("User-Agent", concat!("rsp/", env!("CARGO_PKG_VERSION")))
        .call()
        .map_err(|e| anyhow!("cannot download {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "cannot download {url}: HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
    }
    let total = response.body().content_length();
    let mut body = response.into_body().into_reader();

    let part = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".part")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let bar = progress_bar(total, progress, &file_name);
    eprintln!(
        "downloading {url}{} to {}",
        total
            .map(|n| format!(" ({:.1} MB)", n as f64 / 1e6))
            .unwrap_or_default(),
        dest.display()
    );
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    {
        let mut out = BufWriter::with_capacity(1 << 20, part.as_file());
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.abandon();
                    let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
                    bail!("download of {url} failed after {received}{of} bytes: {e}");
                }
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", part.path().display()))?;
            received += n as u64;
            bar.set_position(received);
        }
        out.flush()
            .with_context(|| format!("cannot write {}", part.path().display()))?;
    }
    bar.finish_and_clear();
    if let Some(total) = total {
        if received != total {
            bail!("download of {url} is incomplete: got {received} of {total} bytes");
        }
    }
    let digest = hex(&hasher.finalize());
    if let Some(expected) = &expected {
        if &digest != expected {
            bail!(
                "download of {url} has SHA-256 {digest}, expected {expected}: the file was \
                 discarded (a changed upstream file, a bad mirror or a corrupted transfer)"
            );
        }
    }
    part.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", part.path().display()))?;
    part.persist(dest).map_err(|e| {
        anyhow!(
            "cannot move the download into {}: {}",
            dest.display(),
            e.error
        )
    })?;
    eprintln!("saved {} (sha256 {digest})", dest.display());
    Ok(digest)
}

fn progress_bar(total: Option<u64>, show: bool, name: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// Removes `.NAME.*.part` files left by downloads that were killed (a signal skips the
/// cleanup). Only files untouched for an hour go: a live download writes continuously.
fn remove_stale_parts(dir: &Path, file_name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{file_name}.");
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(&prefix) && name.ends_with(".part")) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < hour_ago);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_is_known_to_the_zoo_and_hashes_are_well_formed() {
        for m in HUB_MODELS {
            // Only architectures the loader knows (checked by config, not by building
            // 100-million-parameter random models).
            let known = if let Some(d) = m.name.strip_prefix("resnet") {
                d.parse()
                    .ok()
                    .and_then(crate::models::zoo::resnet_config)
                    .is_some()
            } else {
                let d = m.name.trim_start_matches("vgg").trim_end_matches("_bn");
                d.parse()
                    .ok()
                    .and_then(crate::models::zoo::vgg_config)
                    .is_some()
            };
            assert!(known, "{} is not a torchvision architecture", m.name);
            assert_eq!(m.repo, format!("timm/{}.tv_in1k", m.name));
            if let Some(h) = m.sha256 {
                assert_eq!(parse_sha256(h).unwrap(), h);
            }
        }
        assert_eq!(
            find("vgg16").unwrap().url("http://x"),
            "http://x/timm/vgg16.tv_in1k/resolve/main/model.safetensors"
        );
        assert!(find("vgg17").is_none());
    }

    #[test]
    fn sha256_parsing() {
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
        assert_eq!(parse_sha256(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
    }
}
