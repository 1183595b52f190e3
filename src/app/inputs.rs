//! The CLI's inputs: files as given, folders searched recursively for PNG/JPEG files,
//! and quoted glob patterns, each with the name its outputs get under `--out`. Files
//! found in a folder or by a pattern keep their path relative to it, so same-named
//! files in different folders do not overwrite each other's maps.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Result};

/// One input and where its outputs go.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub path: PathBuf,
    /// Output name relative to `--out`, without extension (`cat`, `pets/cat`).
    pub out_stem: PathBuf,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn without_extension(rel: &Path) -> PathBuf {
    rel.with_extension("")
}

/// The directory part of a glob pattern before its first wildcard component.
fn literal_base(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for c in Path::new(pattern).components() {
        let s = c.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[']) {
            break;
        }
        base.push(c);
    }
    base
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands `args` into inputs, in order (folder contents and pattern matches sorted).
pub fn expand(args: &[PathBuf]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for arg in args {
        let text = arg.to_string_lossy();
        if arg.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(arg)
                .follow_links(true)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file() && is_image(e.path()))
                .map(|e| e.into_path())
                .collect();
            found.sort();
            if found.is_empty() {
                bail!(
                    "{}: no PNG or JPEG files in this folder (searched recursively)",
                    arg.display()
                );
            }
            for path in found {
                let rel = path.strip_prefix(arg).unwrap_or(&path).to_path_buf();
                out.push(Input {
                    out_stem: without_extension(&rel),
                    path,
                });
            }
        } else if !arg.exists() && has_glob(&text) {
            let paths =
                glob::glob(&text).map_err(|e| anyhow!("{text}: not a valid pattern: {e}"))?;
            let mut found: Vec<PathBuf> = paths
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            if found.is_empty() {
                bail!("{text}: the pattern matches no file");
            }
            let base = literal_base(&text);
            for path in found {
                let rel = path.strip_prefix(&base).unwrap_or(&path).to_path_buf();
                out.push(Input {
                    out_stem: without_extension(&rel),
                    path,
                });
            }
        } else {
            let stem = arg
                .file_stem()
                .map_or_else(|| PathBuf::from("input"), PathBuf::from);
            out.push(Input {
                path: arg.clone(),
                out_stem: stem,
            });
        }
    }
    disambiguate(&mut out);
    Ok(out)
}

/// Inputs given one by one may still share a name (`a/x.png b/x.png`): those get their
/// folders, relative to the folder all of them share, as part of their output name.
fn disambiguate(inputs: &mut [Input]) {
    let mut by_stem: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        by_stem.entry(input.out_stem.clone()).or_default().push(i);
    }
    for idx in by_stem.into_values().filter(|v| v.len() > 1) {
        let parents: Vec<PathBuf> = idx
            .iter()
            .map(|&i| {
                absolute(&inputs[i].path)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            })
            .collect();
        let common = parents
            .iter()
            .skip(1)
            .fold(parents[0].clone(), |acc, p| common_prefix(&acc, p));
        for (&i, parent) in idx.iter().zip(&parents) {
            let rel = parent.strip_prefix(&common).unwrap_or(parent);
            let rel: PathBuf = rel
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            inputs[i].out_stem = rel.join(&inputs[i].out_stem);
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn common_prefix(a: &Path, b: &Path) -> PathBuf {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn folders_are_searched_recursively_and_mirrored() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("set");
        for f in ["b.png", "a.JPG", "sub/a.jpeg", "notes.txt"] {
            touch(&root.join(f));
        }
        let got = expand(std::slice::from_ref(&root)).unwrap();
        let stems: Vec<String> = got
            .iter()
            .map(|i| i.out_stem.display().to_string())
            .collect();
        assert_eq!(stems, ["a", "b", "sub/a"]);
        assert_eq!(got[2].path, root.join("sub/a.jpeg"));
    }

    #[test]
    fn globs_keep_the_path_below_their_literal_part() {
        let d = tempfile::tempdir().unwrap();
        for f in ["x/cat.png", "y/cat.png", "y/dog.jpg"] {
            touch(&d.path().join(f));
        }
        let pattern = d.path().join("*/cat.png");
        let got = expand(&[pattern]).unwrap();
        let stems: Vec<String> = got
            .iter()
            .map(|i| i.out_stem.display().to_string())
            .collect();
        assert_eq!(stems, ["x/cat", "y/cat"]);
    }

    #[test]
    fn same_named_files_get_their_folders() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            d.path().join("p/x.png"),
            d.path().join("q/r/x.png"),
            d.path().join("p/z.png"),
        );
        for f in [&a, &b, &c] {
            touch(f);
        }
        let got = expand(&[a, b, c]).unwrap();
        let stems: Vec<String> = got
            .iter()
            .map(|i| i.out_stem.display().to_string())
            .collect();
        assert_eq!(stems, ["p/x", "q/r/x", "z"]);
    }

    #[test]
    fn empty_folders_and_unmatched_patterns_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let e = expand(&[d.path().to_path_buf()]).unwrap_err().to_string();
        assert!(e.contains("no PNG or JPEG files"), "{e}");
        let e = expand(&[d.path().join("*.png")]).unwrap_err().to_string();
        assert!(e.contains("matches no file"), "{e}");
    }
}
