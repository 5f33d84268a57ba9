//! Saved baselines: `--save-baseline NAME` keeps a run's CSV files and meta.json as
//! `results/baselines/NAME/`, and `--baseline NAME` or `compare baseline:NAME` reads them
//! back. A baseline is written in a temporary folder beside its place and renamed into it,
//! so a reader never sees half of one; saving a name again replaces it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::load::scenario_files;
use crate::bins;
use crate::meta;

/// The baselines folder: `dir` if given (`--baseline-dir`, `$TLS_OFF_BASELINES`), else
/// `results/baselines` of the workspace (of the current folder outside one), beside the
/// runs.
pub fn folder(dir: Option<&Path>) -> PathBuf {
    match dir {
        Some(dir) => dir.to_owned(),
        None => bins::workspace_root()
            .map(|r| r.join("results"))
            .unwrap_or_else(|| PathBuf::from("results"))
            .join("baselines"),
    }
}

/// Checks a baseline name: `[A-Za-z0-9._-]+`, not starting with a dot (no `.`, `..` or
/// hidden folder, and the dot-named temporary folders stay apart).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || !name.chars().all(allowed) || name.starts_with('.') {
        bail!(
            "baseline name {name:?}: expected letters, digits, '.', '_' and '-', not starting \
             with '.'"
        );
    }
    Ok(())
}

/// The folder of the saved baseline `name`; an error naming the folder and the baselines
/// there when there is none.
pub fn resolve(name: &str, baselines: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = baselines.join(name);
    if dir.is_dir() {
        return Ok(dir);
    }
    let saved = saved(baselines);
    let saved = if saved.is_empty() {
        "none saved yet".to_owned()
    } else {
        format!("saved: {}", saved.join(", "))
    };
    bail!(
        "no baseline {name:?} in {} ({saved}; a run with --save-baseline {name} saves one)",
        baselines.display()
    )
}

/// The names of the baselines saved in `baselines`, sorted.
pub fn saved(baselines: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(baselines)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| check_name(n).is_ok())
        .collect();
    names.sort();
    names
}

/// Copies `run`'s CSV files and meta.json to `baselines/name/` (replacing a baseline of
/// that name) and returns that folder.
pub fn save(run: &Path, name: &str, baselines: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    std::fs::create_dir_all(baselines)
        .with_context(|| format!("creating the baselines folder {}", baselines.display()))?;
    let pid = std::process::id();
    let tmp = baselines.join(format!(".{name}.tmp-{pid}"));
    let old = baselines.join(format!(".{name}.old-{pid}"));
    for leftover in [&tmp, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)
                .with_context(|| format!("removing {}", leftover.display()))?;
        }
    }
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let copied = copy_run_files(run, &tmp);
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dir = baselines.join(name);
    // rename(2) cannot replace a folder that has files: the old one steps aside first, for
    // the moment between two renames.
    let replacing = dir.exists();
    if replacing {
        std::fs::rename(&dir, &old)
            .with_context(|| format!("moving the old baseline {} aside", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("renaming to {}", dir.display()))?;
    if replacing {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("removing the old baseline at {}", old.display()))?;
    }
    Ok(dir)
}

/// The files of `run` a baseline keeps: its scenario CSV files, the others beside them
/// (`tls-bench.csv`, `faults.csv`) and meta.json.
fn copy_run_files(run: &Path, to: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(run)
        .with_context(|| format!("reading the run folder {}", run.display()))?;
    let mut copied = 0;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading the run folder {}", run.display()))?
            .path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let keep = name == meta::FILE || name.ends_with(".csv");
        if keep && path.is_file() {
            std::fs::copy(&path, to.join(&*name))
                .with_context(|| format!("copying {}", path.display()))?;
            copied += 1;
        }
    }
    if copied == 0 || !scenario_files().iter().any(|f| to.join(f).is_file()) {
        bail!(
            "{}: no {} to keep as a baseline",
            run.display(),
            scenario_files().join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_folder(dir: &Path, rps: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("results.csv"), format!("config,rps\nhttp,{rps}\n")).unwrap();
        std::fs::write(dir.join("meta.json"), "{}\n").unwrap();
        std::fs::write(dir.join("summary.txt"), "table\n").unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
    }

    #[test]
    fn names_are_checked() {
        for good in ["main", "v0.1.0", "before_fix-2"] {
            check_name(good).unwrap();
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "ü"] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn save_copies_csv_and_meta_and_replaces_a_name() {
        let tmp = tempfile::tempdir().unwrap();
        let (run, baselines) = (tmp.path().join("run"), tmp.path().join("baselines"));
        run_folder(&run, "100");
        let dir = save(&run, "main", &baselines).unwrap();
        assert_eq!(dir, baselines.join("main"));
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["meta.json", "results.csv"]);
        run_folder(&run, "200");
        save(&run, "main", &baselines).unwrap();
        let text = std::fs::read_to_string(dir.join("results.csv")).unwrap();
        assert!(text.contains("200"), "{text}");
        assert_eq!(saved(&baselines), ["main"], "no temporary folder is left");
        assert_eq!(resolve("main", &baselines).unwrap(), dir);
    }

    #[test]
    fn a_missing_baseline_names_the_folder_and_what_is_saved() {
        let tmp = tempfile::tempdir().unwrap();
        let err = format!("{:#}", resolve("nope", tmp.path()).unwrap_err());
        assert!(
            err.contains("\"nope\"") && err.contains("none saved yet"),
            "{err}"
        );
        std::fs::create_dir(tmp.path().join("main")).unwrap();
        let err = format!("{:#}", resolve("nope", tmp.path()).unwrap_err());
        assert!(err.contains("saved: main"), "{err}");
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    }

    #[test]
    fn a_folder_without_results_is_not_saved() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("meta.json"), "{}").unwrap();
        let err = format!("{:#}", save(&run, "x", &tmp.path().join("b")).unwrap_err());
        assert!(err.contains("no results.csv"), "{err}");
        assert!(saved(&tmp.path().join("b")).is_empty());
    }
}
