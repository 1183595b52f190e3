//! Autotuning: which kernel variant to run for a problem, chosen by measurement on the
//! device itself and remembered across runs.
//!
//! The tuner knows nothing about kernels: an op family asks [`Tuner::choose`] with a
//! key (the problem), its candidate variants by name (the fallback first) and a closure
//! that times one candidate and checks its output against the fallback's. The fastest
//! candidate that passed is kept in memory and in a JSON file in the user's cache
//! directory, stamped with the crate version and a hash of every shader source so a
//! new build never trusts an old file; an unreadable, corrupt or stale file only causes
//! a re-tune. Keys carry the adapter (vendor, device, driver, backend), so one file
//! serves several devices.
//!
//! A run may bound its tuning ([`Tuner::with_budget`], the CLI's `--autotune-budget`):
//! once the time spent measuring would pass the budget, the problems not yet measured
//! run the candidate the op family marks as its usual winner ([`Candidate::untuned`],
//! else the fallback) and stay unmeasured, for later runs (or `rsp tune`) to measure, so
//! a first run costs at most the budget more than a warm one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::shaders;

/// Whether kernels are chosen by measurement (`--autotune`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Autotune {
    /// Fixed heuristics only (the library default: nothing is timed or written).
    #[default]
    Off,
    /// Reuse the cached choices, measure what is missing and add it to the cache.
    On,
    /// Ignore the cached choices, measure every problem met again and overwrite them.
    Fresh,
}

impl std::str::FromStr for Autotune {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "on" => Ok(Autotune::On),
            "off" => Ok(Autotune::Off),
            "fresh" => Ok(Autotune::Fresh),
            other => Err(format!(
                "unknown autotune mode '{other}' (expected on, off or fresh)"
            )),
        }
    }
}

/// What became of one candidate when a key was tuned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Trial {
    /// Median milliseconds of the timed runs.
    Timed(f64),
    /// Its output differed from the fallback's (the reason says how).
    Rejected(String),
}

/// The outcome of tuning one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub variant: String,
    pub trials: BTreeMap<String, Trial>,
    /// The candidates that do not give the fallback's bits (accepted within a
    /// tolerance), as the op family's registry says; summaries read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inexact: Vec<String>,
}

/// One variant an op family offers for a key.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub name: String,
    /// Gives the fallback's bits.
    pub exact: bool,
    /// Run (the first such candidate) while the key stays unmeasured because the budget
    /// is spent: the op family's usual winner on this device, which spares a first run
    /// the fallback's slowness on the problems it cannot afford to time.
    pub untuned: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    stamp: String,
    choices: BTreeMap<String, Choice>,
    /// Keys a bounded run found too costly to measure within its budget, with the
    /// estimated seconds: later bounded runs skip those that cannot fit what is left of
    /// theirs without paying a trial, and measure the others (`rsp tune` measures all).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    costly: BTreeMap<String, f64>,
}

/// The cache stamp: crate version plus a hash of every shader source, so a build with
/// other kernels ignores an old file.
pub fn cache_stamp() -> String {
    let mut h = Sha256::new();
    for (name, src, _) in shaders::SHADERS {
        h.update(name.as_bytes());
        h.update(src.as_bytes());
    }
    for s in shaders::Skeleton::GEMM {
        h.update(format!("{s:?}").as_bytes());
        h.update(s.source().as_bytes());
    }
    let hex: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("rsp {} shaders {hex}", env!("CARGO_PKG_VERSION"))
}

/// The default cache file: `$RSP_CACHE_DIR/autotune.json`, else the user cache
/// directory + `rsp/autotune.json`.
pub fn default_cache_path() -> Option<PathBuf> {
    std::env::var_os("RSP_CACHE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("rsp")))
        .map(|d| d.join("autotune.json"))
}

/// The clock a tuner measures its own spending with: the monotonic system clock, or in
/// unit tests a manual one that the fake trials advance, so the budget logic is tested
/// without sleeping and without depending on the machine's load.
#[derive(Clone, Debug)]
enum Clock {
    System,
    #[cfg(test)]
    Manual(std::sync::Arc<Mutex<Duration>>),
}

impl Clock {
    /// Time since a fixed origin.
    fn now(&self) -> Duration {
        match self {
            Clock::System => {
                static ORIGIN: OnceLock<Instant> = OnceLock::new();
                ORIGIN.get_or_init(Instant::now).elapsed()
            }
            #[cfg(test)]
            Clock::Manual(t) => *t.lock().expect("clock lock"),
        }
    }
}

/// Chooses and remembers kernel variants (see the module doc).
pub struct Tuner {
    mode: Autotune,
    path: Option<PathBuf>,
    /// Choices from the file and from this process.
    choices: Mutex<BTreeMap<String, Choice>>,
    /// Keys measured by this process (tests read it through [`Tuner::measured`]).
    measured: Mutex<Vec<String>>,
    /// Keys looked up by this process (measured or from the file).
    used: Mutex<std::collections::BTreeSet<String>>,
    /// Spinner shown while tuning takes longer than a second (terminal only).
    progress: Option<indicatif::ProgressBar>,
    started: Mutex<Option<Instant>>,
    /// Measuring time this process may spend (`None`: unbounded).
    budget: Option<Duration>,
    /// What the time spent measuring is read from.
    clock: Clock,
    /// Measuring time spent so far, and whether the budget ran out.
    spent: Mutex<(Duration, bool)>,
    /// Keys left unmeasured because the budget ran out.
    deferred: Mutex<std::collections::BTreeSet<String>>,
    /// Estimated seconds of the keys too costly for a bounded run (file and process).
    costly: Mutex<BTreeMap<String, f64>>,
    /// Seconds of tuning per unit of a key's work, as last measured in this process:
    /// predicts a new key's cost before paying any trial for it.
    seconds_per_work: Mutex<Option<f64>>,
}

impl Tuner {
    /// A tuner in `mode` whose choices live in `path` (no file: memory only). The
    /// file is read now unless the mode is `Fresh`; a missing, unreadable, corrupt or
    /// stale file is treated as empty.
    pub fn new(mode: Autotune, path: Option<PathBuf>, progress: bool) -> Tuner {
        let file = match (&path, mode) {
            (Some(p), Autotune::On) => read_cache(p).unwrap_or_default(),
            _ => CacheFile::default(),
        };
        let (choices, costly) = (file.choices, file.costly);
        Tuner {
            mode,
            path,
            choices: Mutex::new(choices),
            measured: Mutex::new(Vec::new()),
            used: Mutex::new(Default::default()),
            progress: progress.then(|| {
                let bar = indicatif::ProgressBar::with_draw_target(
                    None,
                    indicatif::ProgressDrawTarget::hidden(),
                );
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} autotuning kernels: {pos} problems measured ({elapsed})",
                    )
                    .expect("static template"),
                );
                bar
            }),
            started: Mutex::new(None),
            budget: None,
            clock: Clock::System,
            spent: Mutex::new((Duration::ZERO, false)),
            deferred: Mutex::new(Default::default()),
            costly: Mutex::new(costly),
            seconds_per_work: Mutex::new(None),
        }
    }

    /// The same tuner, measuring for at most `budget` in this process (`None`:
    /// unbounded).
    pub fn with_budget(mut self, budget: Option<Duration>) -> Tuner {
        self.budget = budget;
        self
    }

    /// The same tuner, reading the time it spends from `clock` (unit tests).
    #[cfg(test)]
    fn with_manual_clock(mut self, clock: &std::sync::Arc<Mutex<Duration>>) -> Tuner {
        self.clock = Clock::Manual(clock.clone());
        self
    }

    /// Time spent measuring in this process.
    pub fn spent(&self) -> Duration {
        self.spent.lock().expect("tuner lock").0
    }

    /// Keys this process left unmeasured because its budget ran out.
    pub fn deferred(&self) -> Vec<String> {
        self.deferred
            .lock()
            .expect("tuner lock")
            .iter()
            .cloned()
            .collect()
    }

    pub fn mode(&self) -> Autotune {
        self.mode
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The cached or measured choice for `key`, if any.
    pub fn get(&self, key: &str) -> Option<Choice> {
        self.choices.lock().expect("tuner lock").get(key).cloned()
    }

    /// The choices this process has used (measured or read from the file), by key.
    pub fn used(&self) -> Vec<(String, Choice)> {
        let used = self.used.lock().expect("tuner lock").clone();
        used.into_iter()
            .filter_map(|k| self.get(&k).map(|c| (k, c)))
            .collect()
    }

    /// Keys this process has measured, in order.
    pub fn measured(&self) -> Vec<String> {
        self.measured.lock().expect("tuner lock").clone()
    }

    /// The variant to run for `key`. With autotuning off, or when only one candidate
    /// is offered, the first candidate (the fallback). Otherwise the remembered
    /// choice if it is still a candidate, else every candidate is measured with
    /// `trial` (which times it and checks its output against the fallback's) and the
    /// fastest that passed is chosen, remembered and written to the cache file.
    ///
    /// `work` is the key's size in any unit proportional to the cost of its trials
    /// (the GEMM family passes its flops): a bounded run predicts from the keys it has
    /// measured whether a new key can fit the budget before paying any trial for it.
    pub fn choose(
        &self,
        key: &str,
        candidates: &[Candidate],
        work: f64,
        mut trial: impl FnMut(&str) -> Trial,
    ) -> String {
        let fallback = candidates[0].name.clone();
        if self.mode == Autotune::Off || candidates.len() == 1 {
            return fallback;
        }
        self.used
            .lock()
            .expect("tuner lock")
            .insert(key.to_string());
        if let Some(c) = self.get(key) {
            if candidates.iter().any(|k| k.name == c.variant) {
                return c.variant;
            }
        }
        let untuned = candidates
            .iter()
            .find(|c| c.untuned)
            .map_or(&fallback, |c| &c.name)
            .clone();
        let (spent, exhausted) = *self.spent.lock().expect("tuner lock");
        let predicted = self
            .seconds_per_work
            .lock()
            .expect("tuner lock")
            .map(|rate| rate * work);
        let known_costly = self
            .costly
            .lock()
            .expect("tuner lock")
            .get(key)
            .copied()
            .or(predicted);
        let unaffordable = match (self.budget, known_costly) {
            (Some(budget), Some(secs)) => spent.as_secs_f64() + secs > budget.as_secs_f64(),
            _ => false,
        };
        if exhausted || unaffordable {
            self.deferred
                .lock()
                .expect("tuner lock")
                .insert(key.to_string());
            return untuned;
        }
        self.tick_start();
        let t0 = self.clock.now();
        let elapsed = || self.clock.now() - t0;
        let mut trials = BTreeMap::new();
        for (i, Candidate { name, .. }) in candidates.iter().enumerate() {
            trials.insert(name.clone(), trial(name));
            // After the fallback's trial the whole key is estimated at that trial's cost
            // per candidate, and after every trial the time spent is checked: a key
            // that would pass the budget, or did, is left for later runs, unmeasured
            // (this run runs the untuned default for it), so the budget is passed by at
            // most one candidate's trial. Its estimate is remembered, so later bounded
            // runs skip it while it cannot fit and measure cheaper keys meanwhile; the
            // run goes on with other keys until the budget is spent.
            if let Some(budget) = self.budget {
                let left = candidates.len() - i - 1;
                let estimate = if i == 0 {
                    elapsed() * candidates.len() as u32
                } else {
                    elapsed()
                };
                if i == 0 && work > 0.0 {
                    *self.seconds_per_work.lock().expect("tuner lock") =
                        Some(estimate.as_secs_f64() / work);
                }
                let mut spent = self.spent.lock().expect("tuner lock");
                if left > 0 && spent.0 + estimate > budget {
                    spent.0 += elapsed();
                    spent.1 = spent.0 >= budget;
                    drop(spent);
                    self.costly
                        .lock()
                        .expect("tuner lock")
                        .insert(key.to_string(), estimate.as_secs_f64());
                    self.deferred
                        .lock()
                        .expect("tuner lock")
                        .insert(key.to_string());
                    if let Err(e) = self.save() {
                        eprintln!("warning: autotune cache not written: {e:#}");
                    }
                    return untuned;
                }
            }
        }
        self.spent.lock().expect("tuner lock").0 += elapsed();
        if work > 0.0 {
            *self.seconds_per_work.lock().expect("tuner lock") =
                Some(elapsed().as_secs_f64() / work);
        }
        let best = trials
            .iter()
            .filter_map(|(name, t)| match t {
                Trial::Timed(ms) => Some((name, *ms)),
                Trial::Rejected(_) => None,
            })
            // Ties (and NaN, which never happens for a measured time) keep the
            // candidate order, so the fallback wins a draw.
            .min_by(|a, b| {
                a.1.total_cmp(&b.1).then_with(|| {
                    let pos = |n: &String| candidates.iter().position(|c| &c.name == n);
                    pos(a.0).cmp(&pos(b.0))
                })
            })
            .map(|(name, _)| name.clone())
            .unwrap_or(fallback);
        let choice = Choice {
            variant: best.clone(),
            trials,
            inexact: candidates
                .iter()
                .filter(|c| !c.exact)
                .map(|c| c.name.clone())
                .collect(),
        };
        self.choices
            .lock()
            .expect("tuner lock")
            .insert(key.to_string(), choice);
        self.measured
            .lock()
            .expect("tuner lock")
            .push(key.to_string());
        if let Err(e) = self.save() {
            eprintln!("warning: autotune cache not written: {e:#}");
        }
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
        best
    }

    /// Shows the spinner once tuning has run for a second.
    fn tick_start(&self) {
        let Some(bar) = &self.progress else { return };
        let mut started = self.started.lock().expect("tuner lock");
        let t0 = *started.get_or_insert_with(Instant::now);
        if bar.is_hidden()
            && t0.elapsed() > Duration::from_secs(1)
            && std::io::IsTerminal::is_terminal(&std::io::stderr())
        {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(200));
        }
    }

    /// Ends the spinner (called when a recording is submitted).
    pub fn finish_progress(&self) {
        if let Some(bar) = &self.progress {
            if !bar.is_hidden() {
                bar.finish_and_clear();
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
        }
        *self.started.lock().expect("tuner lock") = None;
    }

    /// Merges this tuner's choices into the cache file (temporary file, then rename).
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Keys another process (or another model, or a `fresh` run's untouched
        // entries) wrote since this tuner read the file are kept; ours win.
        let mut file = read_cache(path).unwrap_or_default();
        file.choices
            .extend(self.choices.lock().expect("tuner lock").clone());
        file.costly
            .extend(self.costly.lock().expect("tuner lock").clone());
        let choices = &file.choices;
        file.costly.retain(|key, _| !choices.contains_key(key));
        file.stamp = cache_stamp();
        crate::files::write_atomic(path, &serde_json::to_vec_pretty(&file)?)
    }
}

/// The choices in `path` if it is a readable cache file of this build.
fn read_cache(path: &Path) -> Option<CacheFile> {
    let text = std::fs::read_to_string(path).ok()?;
    let file: CacheFile = serde_json::from_str(&text).ok()?;
    (file.stamp == cache_stamp()).then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Candidates by name; those named `approx…` are inexact, `usual…` run untuned.
    fn names(v: &[&str]) -> Vec<Candidate> {
        v.iter()
            .map(|s| Candidate {
                name: s.to_string(),
                exact: !s.starts_with("approx"),
                untuned: s.starts_with("usual"),
            })
            .collect()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A manual clock for [`Tuner::with_manual_clock`], and a way to let time pass on it.
    fn manual_clock() -> std::sync::Arc<Mutex<Duration>> {
        std::sync::Arc::new(Mutex::new(Duration::ZERO))
    }

    fn advance(clock: &Mutex<Duration>, ms: u64) {
        *clock.lock().unwrap() += Duration::from_millis(ms);
    }

    #[test]
    fn fastest_passing_candidate_is_chosen_written_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autotune.json");
        let t = Tuner::new(Autotune::On, Some(path.clone()), false);
        let cands = names(&["fallback", "approx-but-wrong", "faster", "slow"]);
        let time = |n: &str| match n {
            "fallback" => Trial::Timed(3.0),
            "approx-but-wrong" => Trial::Rejected("differs".into()),
            "faster" => Trial::Timed(1.0),
            _ => Trial::Timed(9.0),
        };
        assert_eq!(t.choose("k", &cands, 1.0, time), "faster");
        assert_eq!(t.measured(), vec!["k".to_string()]);
        // A second tuner on the same file does not measure again.
        let t2 = Tuner::new(Autotune::On, Some(path.clone()), false);
        let chosen = t2.choose("k", &cands, 1.0, |_| panic!("re-timed a cached key"));
        assert_eq!(chosen, "faster");
        assert!(t2.measured().is_empty());
        // The file says which candidates were inexact.
        assert_eq!(t2.get("k").unwrap().inexact, ["approx-but-wrong"]);
        // Another key written by another tuner survives both tuners' saves.
        let other = Tuner::new(Autotune::On, Some(path.clone()), false);
        assert_eq!(other.choose("other", &cands, 1.0, time), "faster");
        // Fresh ignores the file's choices but keeps the keys it does not re-time.
        let t3 = Tuner::new(Autotune::Fresh, Some(path.clone()), false);
        assert_eq!(t3.choose("k", &cands, 1.0, time), "faster");
        assert_eq!(t3.measured().len(), 1);
        let t5 = Tuner::new(Autotune::On, Some(path.clone()), false);
        assert!(t5.get("other").is_some() && t5.get("k").is_some());
        // A corrupt or stale file only causes a re-tune.
        for text in [
            "{ not json",
            r#"{"stamp":"rsp 0.0.0 shaders 00","choices":{}}"#,
        ] {
            std::fs::write(&path, text).unwrap();
            let t4 = Tuner::new(Autotune::On, Some(path.clone()), false);
            assert_eq!(t4.choose("k", &cands, 1.0, time), "faster");
            assert_eq!(t4.measured().len(), 1);
        }
        // Off never measures.
        let off = Tuner::new(Autotune::Off, None, false);
        assert_eq!(
            off.choose("k", &cands, 1.0, |_| panic!("measured")),
            "fallback"
        );
    }

    #[test]
    fn a_budget_defers_the_keys_it_cannot_afford_to_later_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autotune.json");
        let cands = names(&["fallback", "a", "b", "usual"]);
        // Each trial takes 10 ms on the manual clock, so a key costs 40 ms.
        let clock = manual_clock();
        let slow = |n: &str| {
            advance(&clock, 10);
            Trial::Timed(if n == "b" { 1.0 } else { 2.0 })
        };
        let t = Tuner::new(Autotune::On, Some(path.clone()), false)
            .with_manual_clock(&clock)
            .with_budget(Some(Duration::from_millis(100)));
        let mut chosen = Vec::new();
        for key in ["k1", "k2", "k3", "k4", "k5"] {
            chosen.push(t.choose(key, &cands, 1.0, slow));
        }
        // Two keys fit (80 ms); the third's estimate passes the budget, so it and every
        // later key run the candidate marked for unmeasured keys, unrecorded, and no
        // trial of theirs is paid.
        assert_eq!(t.measured(), strs(&["k1", "k2"]));
        assert_eq!(chosen, strs(&["b", "b", "usual", "usual", "usual"]));
        assert_eq!(t.deferred(), strs(&["k3", "k4", "k5"]));
        assert_eq!(t.spent(), Duration::from_millis(80));
        // The next run measures where this one stopped.
        let next = Tuner::new(Autotune::On, Some(path), false)
            .with_manual_clock(&clock)
            .with_budget(Some(Duration::from_millis(100)));
        for key in ["k1", "k2", "k3", "k4", "k5"] {
            next.choose(key, &cands, 1.0, slow);
        }
        assert_eq!(next.measured(), strs(&["k3", "k4"]));
        assert_eq!(next.spent(), Duration::from_millis(80));
        // A key whose later candidate alone passes the budget stops there, unrecorded:
        // the budget is passed by that one trial, and the run measures nothing more.
        let t = Tuner::new(Autotune::Fresh, None, false)
            .with_manual_clock(&clock)
            .with_budget(Some(Duration::from_millis(100)));
        let slow_second = |n: &str| {
            advance(&clock, if n == "a" { 150 } else { 5 });
            Trial::Timed(1.0)
        };
        assert_eq!(t.choose("k", &cands, 1.0, slow_second), "usual");
        assert!(t.measured().is_empty());
        assert_eq!(t.spent(), Duration::from_millis(155));
        // Without such a candidate an unmeasured key runs the fallback.
        let plain = names(&["fallback", "a"]);
        assert_eq!(t.choose("k6", &plain, 1.0, slow), "fallback");
        assert_eq!(t.deferred(), strs(&["k", "k6"]));
        // Without a budget everything is measured.
        let all = Tuner::new(Autotune::Fresh, None, false).with_manual_clock(&clock);
        for key in ["k1", "k2", "k3"] {
            all.choose(key, &cands, 1.0, slow);
        }
        assert_eq!(all.measured().len(), 3);
        assert!(all.deferred().is_empty());
    }

    #[test]
    fn a_key_too_costly_for_the_budget_is_remembered_and_skipped_for_cheaper_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autotune.json");
        let cands = names(&["fallback", "a", "b", "usual"]);
        let trials = std::cell::Cell::new(0);
        let clock = manual_clock();
        // "big" costs 60 ms a trial (240 ms a key), "small…" 5 ms (20 ms).
        let timed = |key: &'static str| {
            let (trials, clock) = (&trials, &clock);
            move |_: &str| {
                trials.set(trials.get() + 1);
                advance(clock, if key == "big" { 60 } else { 5 });
                Trial::Timed(1.0)
            }
        };
        let budget = Some(Duration::from_millis(100));
        let t = Tuner::new(Autotune::On, Some(path.clone()), false)
            .with_manual_clock(&clock)
            .with_budget(budget);
        // Work: "big" 12 units, "small…" 1 (the GEMM family passes flops).
        assert_eq!(t.choose("big", &cands, 12.0, timed("big")), "usual");
        assert_eq!(trials.get(), 1, "only the fallback's trial was paid");
        // Another key as large is predicted from the first one's cost: no trial.
        assert_eq!(t.choose("big2", &cands, 12.0, timed("big")), "usual");
        assert_eq!(trials.get(), 1);
        // The run goes on: a cheap key after the costly ones is still measured.
        assert_eq!(t.choose("small1", &cands, 1.0, timed("small1")), "fallback");
        assert_eq!(t.measured(), strs(&["small1"]));
        // The next run skips the key known to be costly without a trial and measures
        // cheap ones.
        let next = Tuner::new(Autotune::On, Some(path.clone()), false)
            .with_manual_clock(&clock)
            .with_budget(budget);
        trials.set(0);
        assert_eq!(next.choose("big", &cands, 12.0, timed("big")), "usual");
        assert_eq!(trials.get(), 0);
        next.choose("small2", &cands, 1.0, timed("small2"));
        assert_eq!(next.measured(), strs(&["small2"]));
        assert_eq!(next.deferred(), strs(&["big"]));
        // An unbounded run (rsp tune) measures it, and the file forgets its estimate.
        let all = Tuner::new(Autotune::On, Some(path.clone()), false).with_manual_clock(&clock);
        all.choose("big", &cands, 12.0, timed("big"));
        assert_eq!(all.measured(), strs(&["big"]));
        let file = read_cache(&path).unwrap();
        assert!(file.costly.is_empty() && file.choices.contains_key("big"));
    }

    #[test]
    fn all_rejected_keeps_the_fallback_and_ties_prefer_it() {
        let t = Tuner::new(Autotune::On, None, false);
        let cands = names(&["fallback", "a", "b"]);
        let chosen = t.choose("k", &cands, 1.0, |n| {
            if n == "fallback" {
                Trial::Timed(2.0)
            } else {
                Trial::Rejected("x".into())
            }
        });
        assert_eq!(chosen, "fallback");
        assert_eq!(
            t.choose("k2", &cands, 1.0, |_| Trial::Timed(1.0)),
            "fallback"
        );
    }
}
