//! The library's layering, read from the sources (no GPU, nothing built): every
//! top-level module of `src/` has a rank, and a module only names modules of a lower
//! rank (through `crate::`, `super::`, `self::` or a child-relative `use`); inside
//! every folder of `src/` the files import each other without cycles.
//!
//! Comments and string literals are blanked out before the scan, so a doc comment may
//! mention any module; code may not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up. A module may reference only modules of a
/// strictly lower rank, so modules of one rank are independent of each other.
const RANKS: &[(&str, u32)] = &[
    // Host tensors; atomic file writes; the seeded generator; the errors' kinds.
    ("tensor", 0),
    ("files", 0),
    ("rng", 0),
    ("error", 0),
    // Small host-side libraries over tensors: layer types, image input, image output,
    // tolerance checks.
    ("layers", 1),
    ("preprocess", 1),
    ("render", 1),
    ("compare", 1),
    ("gpu", 2),
    ("ops", 3),
    ("models", 4),
    ("explain", 5),
    // The CPU oracle: it may use the models and explain's result types.
    ("reference", 6),
    ("eval", 7),
    // Command line, printing, clap: nothing below imports it.
    ("app", 8),
];

/// One `.rs` file of `src/`.
struct SourceFile {
    /// `src/gpu/tune.rs`
    rel: String,
    /// Module path: `["gpu", "tune"]`; `["gpu"]` for `src/gpu/mod.rs`, `[]` for lib.rs.
    module: Vec<String>,
    /// The text with comments and literals blanked (same length in lines).
    code: Vec<char>,
}

/// How a path starts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Start {
    Crate,
    /// `super::` repeated this many times.
    Super(usize),
    SelfMod,
    /// A `use` of a child module declared in the same file (`pub use context::X`).
    Child,
}

/// A path one file names, resolved to an absolute module path.
#[derive(Clone, Debug)]
struct Reference {
    line: usize,
    /// As written, e.g. `super::tune::Tuner`.
    text: String,
    /// From the crate root, e.g. `["gpu", "tune", "Tuner"]`.
    target: Vec<String>,
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `src` with comments, string, byte-string, raw-string and char literals replaced by
/// spaces (newlines kept, so line numbers stay right).
fn strip(src: &str) -> Vec<char> {
    let b: Vec<char> = src.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<char>, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let at = |i: usize| b.get(i).copied().unwrap_or('\0');
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && is_ident_char(b[i - 1]);
        if c == '/' && at(i + 1) == '/' {
            while i < b.len() && b[i] != '\n' {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= b.len() {
                    break;
                }
                if b[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.extend([' ', ' ']);
                    i += 2;
                } else if b[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.extend([' ', ' ']);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if let Some((prefix, hashes)) = raw_string_start(&b, i) {
            // Raw (byte) string: r"..", r#".."#, br"..".
            let mut k = i + prefix + hashes + 1;
            while k < b.len() {
                if b[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#') {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            for &ch in &b[i..k.min(b.len())] {
                blank(&mut out, ch);
            }
            i = k;
        } else if c == '"' || (!prev_ident && c == 'b' && at(i + 1) == '"') {
            let mut k = i + if c == 'b' { 2 } else { 1 };
            while k < b.len() && b[k] != '"' {
                k += if b[k] == '\\' { 2 } else { 1 };
            }
            let end = (k + 1).min(b.len());
            for &ch in &b[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c == '\'' || (!prev_ident && c == 'b' && at(i + 1) == '\'') {
            let q = if c == 'b' { i + 1 } else { i };
            // A char literal ('x', '\n', '\u{..}'); otherwise a lifetime or label.
            let end = if at(q + 1) == '\\' {
                let mut k = q + 3;
                while k < b.len() && b[k] != '\'' {
                    k += 1;
                }
                Some(k + 1)
            } else if at(q + 2) == '\'' {
                Some(q + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &ch in &b[i..end.min(b.len())] {
                        blank(&mut out, ch);
                    }
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At a raw (byte) string `r"`, `r#"`, `br"`, ...: the length of `r`/`br` and the
/// number of `#`.
fn raw_string_start(b: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && is_ident_char(b[i - 1]) {
        return None;
    }
    let prefix = match (b.get(i), b.get(i + 1)) {
        (Some('r'), _) => 1,
        (Some('b'), Some('r')) => 2,
        _ => return None,
    };
    let hashes = b[i + prefix..].iter().take_while(|&&c| c == '#').count();
    (b.get(i + prefix + hashes) == Some(&'"')).then_some((prefix, hashes))
}

fn skip_ws(c: &[char], mut i: usize) -> usize {
    while i < c.len() && c[i].is_whitespace() {
        i += 1;
    }
    i
}

fn ident(c: &[char], i: usize) -> Option<(String, usize)> {
    let start = i;
    if i >= c.len() || !(c[i].is_alphabetic() || c[i] == '_') {
        return None;
    }
    let mut j = i;
    while j < c.len() && is_ident_char(c[j]) {
        j += 1;
    }
    Some((c[start..j].iter().collect(), j))
}

fn starts_with(c: &[char], i: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, ch)| c.get(i + k) == Some(&ch))
}

/// Parses a path or use tree at `i` (after its `crate::`/`super::` prefix): every path it
/// names, as segments, and the position after it.
fn parse_tree(c: &[char], i: usize) -> (Vec<Vec<String>>, usize) {
    let mut i = skip_ws(c, i);
    if c.get(i) == Some(&'{') {
        i += 1;
        let mut out = Vec::new();
        loop {
            i = skip_ws(c, i);
            match c.get(i) {
                None => break,
                Some('}') => {
                    i += 1;
                    break;
                }
                Some(',') => i += 1,
                _ => {
                    let (paths, j) = parse_tree(c, i);
                    out.extend(paths);
                    // Skip anything unexpected rather than loop forever.
                    i = if j == i { i + 1 } else { j };
                }
            }
        }
        return (out, i);
    }
    if c.get(i) == Some(&'*') {
        return (vec![vec!["*".into()]], i + 1);
    }
    let Some((id, j)) = ident(c, i) else {
        return (vec![vec![]], i);
    };
    let k = skip_ws(c, j);
    if starts_with(c, k, "::") && c.get(skip_ws(c, k + 2)) != Some(&'<') {
        let (subs, end) = parse_tree(c, k + 2);
        let paths = subs
            .into_iter()
            .map(|p| std::iter::once(id.clone()).chain(p).collect())
            .collect();
        return (paths, end);
    }
    (vec![vec![id]], j)
}

/// `mod NAME {` blocks: (open brace, close brace, NAME).
fn inline_modules(c: &[char]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if starts_with(c, i, "mod")
            && (i == 0 || !is_ident_char(c[i - 1]))
            && c.get(i + 3).is_some_and(|ch| ch.is_whitespace())
        {
            if let Some((name, j)) = ident(c, skip_ws(c, i + 3)) {
                let k = skip_ws(c, j);
                if c.get(k) == Some(&'{') {
                    let mut depth = 0;
                    let mut e = k;
                    while e < c.len() {
                        match c[e] {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        e += 1;
                    }
                    out.push((k, e, name));
                }
            }
        }
        i += 1;
    }
    out
}

/// `mod NAME;` declarations (child files).
fn child_modules(c: &[char]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < c.len() {
        if starts_with(c, i, "mod")
            && (i == 0 || !is_ident_char(c[i - 1]))
            && c.get(i + 3).is_some_and(|ch| ch.is_whitespace())
        {
            if let Some((name, j)) = ident(c, skip_ws(c, i + 3)) {
                if c.get(skip_ws(c, j)) == Some(&';') {
                    out.insert(name);
                }
            }
        }
        i += 1;
    }
    out
}

/// Every path `file` names that starts at the crate root, a parent, itself or a child,
/// resolved from the crate root. References into the file itself (e.g. a test module's
/// `use super::*`) are left out.
fn references(file: &SourceFile) -> Vec<Reference> {
    let c = &file.code;
    let inline = inline_modules(c);
    let children = child_modules(c);
    let line_of = |pos: usize| c[..pos].iter().filter(|&&ch| ch == '\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let boundary = i == 0 || !(is_ident_char(c[i - 1]) || c[i - 1] == ':');
        if !boundary {
            i += 1;
            continue;
        }
        let mut start = None;
        let mut j = i;
        if starts_with(c, i, "crate") && starts_with(c, skip_ws(c, i + 5), "::") {
            start = Some(Start::Crate);
            j = skip_ws(c, i + 5) + 2;
        } else if starts_with(c, i, "super") && starts_with(c, skip_ws(c, i + 5), "::") {
            let mut n = 0;
            while starts_with(c, j, "super") && starts_with(c, skip_ws(c, j + 5), "::") {
                n += 1;
                j = skip_ws(c, skip_ws(c, j + 5) + 2);
            }
            start = Some(Start::Super(n));
        } else if starts_with(c, i, "self") && starts_with(c, skip_ws(c, i + 4), "::") {
            start = Some(Start::SelfMod);
            j = skip_ws(c, i + 4) + 2;
        } else if starts_with(c, i, "use") && c.get(i + 3).is_some_and(|ch| ch.is_whitespace()) {
            let k = skip_ws(c, i + 3);
            if let Some((first, _)) = ident(c, k) {
                if children.contains(&first) {
                    start = Some(Start::Child);
                    j = k;
                }
            }
        }
        let Some(kind) = start else {
            i += 1;
            continue;
        };
        let (paths, end) = parse_tree(c, j);
        let stack: Vec<String> = inline
            .iter()
            .filter(|(open, close, _)| *open < i && i < *close)
            .map(|(_, _, name)| name.clone())
            .collect();
        let here: Vec<String> = file.module.iter().chain(&stack).cloned().collect();
        for mut segs in paths {
            if segs.last().is_some_and(|s| s == "self") {
                segs.pop();
            }
            let (base, prefix) = match kind {
                Start::Crate => (vec![], "crate::".to_string()),
                Start::Super(n) => {
                    if n > here.len() {
                        panic!(
                            "{}:{}: {} super:: above the crate root",
                            file.rel,
                            line_of(i),
                            n
                        );
                    }
                    (here[..here.len() - n].to_vec(), "super::".repeat(n))
                }
                Start::SelfMod => (here.clone(), "self::".into()),
                Start::Child => (here.clone(), String::new()),
            };
            let target: Vec<String> = base.into_iter().chain(segs.iter().cloned()).collect();
            out.push(Reference {
                line: line_of(i),
                text: format!("{prefix}{}", segs.join("::")),
                target,
            });
        }
        i = end.max(i + 1);
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The library's files (not the binary's `main.rs`).
fn library() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths
        .into_iter()
        .filter(|p| p != &src.join("main.rs"))
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap();
            let mut module: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let last = module.pop().unwrap();
            match last.as_str() {
                "lib.rs" | "mod.rs" => {}
                other => module.push(other.trim_end_matches(".rs").to_string()),
            }
            let text = std::fs::read_to_string(&p).unwrap();
            SourceFile {
                rel: format!("src/{}", rel.display()),
                module,
                code: strip(&text),
            }
        })
        .collect()
}

fn rank(module: &str) -> Option<u32> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// The top-level module a crate-root name belongs to: a module itself, or a name
/// `lib.rs` re-exports (`crate::Tensor` is `tensor`'s).
fn top_module(name: &str, aliases: &BTreeMap<String, String>) -> Option<String> {
    if rank(name).is_some() {
        Some(name.to_string())
    } else {
        aliases.get(name).cloned()
    }
}

/// The file a target path lands in: its longest prefix that is a file's module.
fn file_of<'a>(target: &[String], files: &'a [SourceFile]) -> Option<&'a SourceFile> {
    (1..=target.len())
        .rev()
        .find_map(|n| files.iter().find(|f| f.module == target[..n]))
}

#[test]
fn lower_layers_never_reference_higher_ones_and_folders_are_acyclic() {
    let files = library();
    let lib = files
        .iter()
        .find(|f| f.module.is_empty())
        .expect("src/lib.rs");
    let mut failures = Vec::new();

    // Every top-level module has a rank, and every rank a module.
    let declared = child_modules(&lib.code);
    for m in &declared {
        if rank(m).is_none() {
            failures.push(format!(
                "src/lib.rs declares module `{m}`, which has no rank in tests/shaders/layering.rs RANKS"
            ));
        }
    }
    for (m, _) in RANKS {
        if !declared.contains(*m) {
            failures.push(format!(
                "RANKS lists `{m}`, which src/lib.rs does not declare"
            ));
        }
    }
    // Names lib.rs re-exports, by the module they come from.
    let mut aliases = BTreeMap::new();
    for r in references(lib) {
        if let (Some(module), Some(name)) = (r.target.first(), r.target.last()) {
            if r.target.len() > 1 {
                aliases.insert(name.clone(), module.clone());
            }
        }
    }

    // (a) Layers: a module references only lower ranks.
    let mut edges: BTreeMap<String, Vec<(String, Reference)>> = BTreeMap::new();
    for f in files.iter().filter(|f| !f.module.is_empty()) {
        let from = &f.module[0];
        let Some(from_rank) = rank(from) else {
            continue; // reported above
        };
        for r in references(f) {
            let Some(to) = r.target.first().and_then(|t| top_module(t, &aliases)) else {
                failures.push(format!(
                    "{}:{}: `{}` does not resolve to a module of the crate",
                    f.rel, r.line, r.text
                ));
                continue;
            };
            if &to != from {
                let to_rank = rank(&to).unwrap();
                if to_rank >= from_rank {
                    failures.push(format!(
                        "{}:{}: `{}`: {from} (rank {from_rank}) must not reference {to} (rank {to_rank})",
                        f.rel, r.line, r.text
                    ));
                }
                continue;
            }
            // Inside one top-level module: an edge between two of its files.
            if let Some(dest) = file_of(&r.target, &files) {
                if dest.rel != f.rel {
                    edges
                        .entry(f.rel.clone())
                        .or_default()
                        .push((dest.rel.clone(), r));
                }
            }
        }
    }

    // (b) No import cycle between the files of any folder (`mod.rs` counts as a file:
    // a file that imports through its folder's re-exports depends on `mod.rs`, which
    // depends on what it re-exports).
    let folders: BTreeSet<&str> = files
        .iter()
        .filter(|f| f.rel.matches('/').count() >= 2)
        .filter_map(|f| f.module.first().map(String::as_str))
        .collect();
    assert!(folders.len() >= 7, "folders of src/: {folders:?}");
    for folder in folders {
        let nodes: Vec<&str> = files
            .iter()
            .filter(|f| f.module.first().is_some_and(|m| m == folder))
            .map(|f| f.rel.as_str())
            .collect();
        assert!(!nodes.is_empty(), "no files in src/{folder}/");
        let reach = |from: &str| -> BTreeSet<String> {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.to_string()];
            while let Some(n) = todo.pop() {
                for (to, _) in edges.get(&n).into_iter().flatten() {
                    if seen.insert(to.clone()) {
                        todo.push(to.clone());
                    }
                }
            }
            seen
        };
        let reach: BTreeMap<&str, BTreeSet<String>> =
            nodes.iter().map(|&n| (n, reach(n))).collect();
        let mut reported = BTreeSet::new();
        for &n in &nodes {
            if !reach[n].contains(n) || reported.contains(n) {
                continue;
            }
            // The files on a cycle with `n`, and the references between them.
            let cycle: BTreeSet<&str> = nodes
                .iter()
                .copied()
                .filter(|&m| reach[n].contains(m) && reach[m].contains(n))
                .collect();
            let mut lines = Vec::new();
            for &m in &cycle {
                for (to, r) in edges.get(m).into_iter().flatten() {
                    if cycle.contains(to.as_str()) {
                        lines.push(format!("    {m}:{}: `{}` -> {to}", r.line, r.text));
                    }
                }
            }
            failures.push(format!(
                "import cycle between files of src/{folder}/: {}\n{}",
                cycle.iter().copied().collect::<Vec<_>>().join(", "),
                lines.join("\n")
            ));
            reported.extend(cycle);
        }
    }

    assert!(
        failures.is_empty(),
        "{} layering violation(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The scanner finds paths in code and nothing in comments or literals.
#[test]
fn scanner_resolves_paths_and_ignores_comments_and_strings() {
    let src = r##"//! Doc: crate::app is named here only in a comment.
use super::{dtype::DType, tune::{self, Tuner}};
use crate::tensor::Tensor;
pub use context::GpuContext;
mod context;
/* crate::app::block /* nested */ crate::app::still */
fn f<'a>(x: &'a str) -> char {
    let _ = "crate::app::in_a_string";
    let _ = r#"super::app"#;
    let _ = crate::gpu::tune::Trial::Timed(1.0);
    let _ = Vec::<u8>::new();
    '"'
}
#[cfg(test)]
mod tests {
    use super::*;
    use super::super::ops::conv2d;
}
"##;
    let file = SourceFile {
        rel: "src/gpu/example.rs".into(),
        module: vec!["gpu".into(), "example".into()],
        code: strip(src),
    };
    let got: Vec<(usize, String, String)> = references(&file)
        .into_iter()
        .map(|r| (r.line, r.text, r.target.join("::")))
        .collect();
    let want = [
        (2, "super::dtype::DType", "gpu::dtype::DType"),
        (2, "super::tune", "gpu::tune"),
        (2, "super::tune::Tuner", "gpu::tune::Tuner"),
        (3, "crate::tensor::Tensor", "tensor::Tensor"),
        (
            4,
            "context::GpuContext",
            "gpu::example::context::GpuContext",
        ),
        (
            10,
            "crate::gpu::tune::Trial::Timed",
            "gpu::tune::Trial::Timed",
        ),
        (16, "super::*", "gpu::example::*"),
        (17, "super::super::ops::conv2d", "gpu::ops::conv2d"),
    ];
    let want: Vec<(usize, String, String)> = want
        .iter()
        .map(|(l, t, p)| (*l, t.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
}
