//! Pictures at the end of a run: `analysis/plot.py` on the run's `results.csv` when
//! `python3` can import pandas and matplotlib, else the two commands that would make them.
//!
//! The harness never depends on Python: plots that cannot be made are a line of advice and
//! plots that fail are a warning, never a failed run (the CSV is the result; pictures can
//! be made from it at any time).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bins;
use crate::meta;

/// What became of the pictures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plots {
    /// plot.py wrote these files (pictures and summary.md), in its order.
    Written(Vec<PathBuf>),
    /// Not attempted: why, and the commands that would install what is missing and plot.
    Skipped {
        reason: String,
        commands: Vec<String>,
    },
    /// plot.py ran and failed: its message, and the command to run it again.
    Failed { message: String, command: String },
}

/// Plots `csv` with the workspace's `analysis/plot.py` and the `python3` on PATH.
pub fn plot(csv: &Path) -> Plots {
    let script = bins::workspace_root().map(|root| root.join(SCRIPT));
    match script {
        Some(script) if script.is_file() => plot_with(OsStr::new(PYTHON), &script, csv),
        _ => Plots::Skipped {
            reason: format!("{SCRIPT} not found (the harness was built outside its workspace)"),
            commands: vec![shell(&[PYTHON, SCRIPT, &display(csv)])],
        },
    }
}

/// Plots `csv` with `script` run by `python` (tests pass stand-ins for both).
pub fn plot_with(python: &OsStr, script: &Path, csv: &Path) -> Plots {
    let python_name = python.to_string_lossy();
    let requirements = script.with_file_name("requirements.txt");
    let plot_command = shell(&[&python_name, &display(script), &display(csv)]);
    let importable = Command::new(python)
        .args(["-c", "import pandas, matplotlib"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let reason = match importable {
        Ok(status) if status.success() => None,
        Ok(_) => Some(format!("{python_name} cannot import pandas and matplotlib")),
        Err(e) => Some(format!("cannot run {python_name}: {e}")),
    };
    if let Some(reason) = reason {
        return Plots::Skipped {
            reason,
            commands: vec![
                shell(&[
                    &python_name,
                    "-m",
                    "pip",
                    "install",
                    "-r",
                    &display(&requirements),
                ]),
                plot_command,
            ],
        };
    }
    match Command::new(python)
        .arg(script)
        .arg(csv)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Plots::Written(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(PathBuf::from)
                .collect(),
        ),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let message = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map_or_else(|| crate::procs::describe(out.status), str::to_owned);
            Plots::Failed {
                message,
                command: plot_command,
            }
        }
        Err(e) => Plots::Failed {
            message: format!("cannot run {python_name}: {e}"),
            command: plot_command,
        },
    }
}

impl Plots {
    /// One line for meta.json's `plots`: what was drawn, or why nothing was (the report
    /// page says it where a picture is missing).
    pub fn outcome(&self) -> String {
        match self {
            Plots::Written(paths) => format!("{SCRIPT} wrote {} file(s)", paths.len()),
            Plots::Skipped { reason, .. } => reason.clone(),
            Plots::Failed { message, .. } => format!("{SCRIPT} failed: {message}"),
        }
    }

    /// Prints the outcome the way the run prints its paths: results on stdout, a failure
    /// on stderr.
    pub fn print(&self) {
        match self {
            Plots::Failed { .. } => eprintln!("{}", self.lines().join("\n")),
            _ => println!("{}", self.lines().join("\n")),
        }
    }

    /// The lines [`Plots::print`] prints, aligned with `results:` / `meta:` / `logs:`.
    pub fn lines(&self) -> Vec<String> {
        let indent = " ".repeat(LABEL.len());
        match self {
            Plots::Written(paths) if paths.is_empty() => {
                vec![format!("{LABEL}{SCRIPT} wrote nothing")]
            }
            Plots::Written(paths) => paths
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let lead = if i == 0 { LABEL } else { &indent };
                    format!("{lead}{}", p.display())
                })
                .collect(),
            Plots::Skipped { reason, commands } => {
                let mut lines = vec![format!("{LABEL}none: {reason}; to make them:")];
                lines.extend(commands.iter().map(|c| format!("{indent}{c}")));
                lines
            }
            Plots::Failed { message, command } => vec![
                format!("harness: plotting failed: {message}"),
                format!("harness: the results are complete; to plot them again: {command}"),
            ],
        }
    }
}

/// `path` relative to the current folder when it lies under it (shorter to copy).
fn display(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_owned));
    relative
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_owned())
        .to_string_lossy()
        .into_owned()
}

fn shell(words: &[&str]) -> String {
    meta::shell_line(&words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>())
}

/// The interpreter the harness looks for; the same name the printed commands use.
const PYTHON: &str = "python3";
/// The plotting script, relative to the workspace root.
const SCRIPT: &str = "analysis/plot.py";
/// The label in front of the first path, as wide as `results: `.
const LABEL: &str = "plots:   ";

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in `python3`: `-c` (the import check) exits `import_code`; running the
    /// script prints `body`'s stdout/stderr and exits `plot_code`.
    fn fake_python(dir: &Path, import_code: i32, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("python3");
        std::fs::write(
            &path,
            format!("#!/bin/sh\nif [ \"$1\" = -c ]; then exit {import_code}; fi\n{body}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn run(python: &Path, dir: &Path) -> Plots {
        plot_with(
            python.as_os_str(),
            &dir.join("analysis/plot.py"),
            &dir.join("run/results.csv"),
        )
    }

    #[test]
    fn written_pictures_are_listed_under_one_label() {
        let dir = tempfile::tempdir().unwrap();
        let python = fake_python(
            dir.path(),
            0,
            "echo /r/latency.png; echo; echo /r/summary.md",
        );
        let plots = run(&python, dir.path());
        assert_eq!(
            plots,
            Plots::Written(vec!["/r/latency.png".into(), "/r/summary.md".into()])
        );
        assert_eq!(
            plots.lines(),
            ["plots:   /r/latency.png", "         /r/summary.md"]
        );
    }

    #[test]
    fn without_pandas_it_says_how_to_install_and_plot() {
        let dir = tempfile::tempdir().unwrap();
        let python = fake_python(dir.path(), 1, "exit 99");
        let Plots::Skipped { reason, commands } = run(&python, dir.path()) else {
            panic!("expected Skipped")
        };
        assert!(reason.contains("pandas and matplotlib"), "{reason}");
        assert_eq!(commands.len(), 2, "{commands:?}");
        assert!(
            commands[0].contains("-m pip install -r")
                && commands[0].ends_with("analysis/requirements.txt"),
            "{commands:?}"
        );
        assert!(
            commands[1].contains("analysis/plot.py") && commands[1].ends_with("run/results.csv"),
            "{commands:?}"
        );
    }

    #[test]
    fn a_missing_python_is_a_skip_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let plots = run(&dir.path().join("no-such-python"), dir.path());
        let text = plots.lines().join("\n");
        assert!(matches!(plots, Plots::Skipped { .. }), "{text}");
        assert!(
            text.contains("cannot run") && text.contains("pip install"),
            "{text}"
        );
    }

    #[test]
    fn a_failing_plot_shows_its_message_and_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let python = fake_python(
            dir.path(),
            0,
            "echo 'plot.py: x.csv: missing required column(s): p99' >&2; exit 2",
        );
        let plots = run(&python, dir.path());
        let Plots::Failed { message, command } = &plots else {
            panic!("expected Failed: {plots:?}")
        };
        assert_eq!(message, "plot.py: x.csv: missing required column(s): p99");
        assert!(command.ends_with("run/results.csv"), "{command}");
        assert!(plots.lines()[1].contains("to plot them again"));
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(
            shell(&["python3", "/a b/plot.py", "x.csv"]),
            "python3 '/a b/plot.py' x.csv"
        );
    }
}
