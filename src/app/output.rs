//! Output folders of `rsp`, checked before any long work (weights download, GPU setup), but
//! created only when the first output is written, so a run that fails before that
//! leaves no empty folder behind.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

/// Creates the output directory (and its missing parents) when the first output is
/// about to be written.
pub fn create_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))
}

/// Fails unless `dir` is a writable directory or could be created as one: its nearest
/// existing ancestor must be a writable directory. Creates nothing.
pub fn check_output_dir(dir: &Path) -> Result<()> {
    let cannot_create =
        |why: String| anyhow!("cannot create output directory {}: {why}", dir.display());
    let mut existing = dir;
    while !existing.as_os_str().is_empty() && !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new(""));
    }
    if existing.as_os_str().is_empty() {
        existing = Path::new(".");
    }
    if !existing.is_dir() {
        return Err(cannot_create(format!(
            "{} is not a directory",
            existing.display()
        )));
    }
    let probe = existing.join(format!(".rsp-write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(probe);
            Ok(())
        }
        Err(e) if existing == dir => Err(anyhow!(
            "output directory {} is not writable: {e}",
            dir.display()
        )),
        Err(e) => Err(cannot_create(format!(
            "{} is not writable: {e}",
            existing.display()
        ))),
    }
}
