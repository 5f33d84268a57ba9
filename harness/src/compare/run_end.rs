//! What a run does after its summary with `--threshold`, `--save-baseline` and
//! `--baseline`: checked before the run starts (exit 2), done on the run's folder at its end.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};

use super::{baseline, html, load, render, threshold, Comparison, Run, Threshold, DEFAULT_NOISE};
use crate::plan::Plan;

/// What a run does at its end besides its summary: `--threshold`, `--save-baseline` and
/// `--baseline` on the run's own folder.
#[derive(Debug, Clone, Default)]
pub struct AtRunEnd {
    pub thresholds: Vec<Threshold>,
    pub save_baseline: Option<String>,
    pub baseline: Option<String>,
    /// The baselines folder ([`baseline::folder`]).
    pub baselines: PathBuf,
}

impl AtRunEnd {
    /// What can be checked before `plan` runs: the names, that `--baseline` exists, and
    /// that the run writes what a baseline keeps (the fault suite writes only faults.csv).
    pub fn check(&self, plan: &Plan) -> anyhow::Result<()> {
        if plan.scenario.is_fault_suite() {
            let flag = match (&self.save_baseline, &self.baseline) {
                (Some(_), _) => Some("--save-baseline"),
                (None, Some(_)) => Some("--baseline"),
                (None, None) => None,
            };
            if let Some(flag) = flag {
                bail!(
                    "{flag}: --scenario {} writes faults.csv, which baselines do not compare",
                    plan.scenario.name()
                );
            }
        }
        if let Some(name) = &self.save_baseline {
            baseline::check_name(name).map_err(|e| anyhow!("--save-baseline: {e}"))?;
        }
        if let Some(name) = &self.baseline {
            baseline::resolve(name, &self.baselines).map_err(|e| anyhow!("--baseline: {e:#}"))?;
        }
        Ok(())
    }

    /// Says that a run that stopped early checked and saved nothing (it lacks rows).
    pub fn skipped(&self) {
        if !self.is_empty() {
            eprintln!(
                "harness: --threshold, --save-baseline and --baseline skipped: the run stopped \
                 before its end"
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.thresholds.is_empty() && self.save_baseline.is_none() && self.baseline.is_none()
    }

    /// Checks the thresholds on the run in `dir` and prints their list, saves it as a
    /// baseline, and prints its comparison with `--baseline` last. Returns whether every
    /// threshold held. The baseline is read before a save of the same name replaces it.
    pub fn finish(&self, dir: &Path) -> anyhow::Result<bool> {
        if self.is_empty() {
            return Ok(true);
        }
        let run = Run::load(&dir.display().to_string(), &self.baselines)?;
        let base = match &self.baseline {
            Some(name) => Some(Run::load(
                &format!("{}{name}", load::BASELINE_PREFIX),
                &self.baselines,
            )?),
            None => None,
        };
        let checks = threshold::check(&self.thresholds, &run);
        if !checks.is_empty() {
            println!("\n{}", render::thresholds_text(&checks));
        }
        if let Some(name) = &self.save_baseline {
            let saved = baseline::save(dir, name, &self.baselines)?;
            println!("baseline {name}: {}", saved.display());
        }
        if let Some(base) = base {
            let comparison = Comparison::of(&base, &run, DEFAULT_NOISE);
            // The page first: the table closes the run's output.
            let page = html::write(&comparison, &dir.join(html::FILE))?;
            println!("comparison page: {}", page.display());
            println!("\n{}", render::text(&comparison));
        }
        Ok(checks.iter().all(|c| c.passed))
    }
}
