//! `harness report DIR` on a fixture run folder (analysis/fixtures: the CSV files and
//! meta.json, numbers invented in the harness's shapes): the page it writes, and its exit
//! codes. Debug binary, no measurement: seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn harness() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.stdin(Stdio::null());
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../analysis/fixtures")
}

/// A run folder made of the fixtures: the three scenarios' CSV files, meta.json, and the
/// logs/ and configs/ folders a run has.
fn fixture_run(dir: &Path) -> PathBuf {
    let run = dir.join("20250101T120000Z-fixture");
    std::fs::create_dir_all(run.join("logs")).expect("a fresh temporary folder is writable");
    std::fs::create_dir_all(run.join("configs")).expect("a fresh temporary folder is writable");
    for name in ["results.csv", "handshakes.csv", "idle.csv", "meta.json"] {
        std::fs::copy(fixtures().join(name), run.join(name))
            .unwrap_or_else(|e| panic!("copying the fixture {name}: {e}"));
    }
    run
}

fn report(run: &Path) -> Output {
    harness()
        .arg("report")
        .arg(run)
        .output()
        .expect("the harness binary runs")
}

/// Each `src="..."` and `href="..."` value in the page.
fn references(page: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attr) {
            let rest = &page[at + attr.len()..];
            out.push(&rest[..rest.find('"').expect("attribute values are quoted")]);
        }
    }
    out
}

/// The notes of the rows whose status is not ok, from a fixture CSV.
fn flagged_notes(csv: &Path) -> Vec<String> {
    let mut reader = csv::Reader::from_path(csv).expect("the fixture is a CSV");
    let header = reader.headers().expect("the fixture has a header").clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column"))
    };
    let (status, note) = (col("status"), col("note"));
    reader
        .records()
        .map(|r| r.expect("the fixture's rows parse"))
        .filter(|r| &r[status] != "ok")
        .map(|r| r[note].to_owned())
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[test]
fn report_writes_the_meta_the_flagged_rows_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let run = fixture_run(dir.path());
    let out = report(&run);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let page_path = run.join("index.html");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&page_path.display().to_string()),
        "{log}"
    );
    let page = std::fs::read_to_string(&page_path).unwrap();

    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    for pointer in [
        "/command_line",
        "/host/cpu_model",
        "/cpus/server",
        "/cpus/client",
        "/plan/tls_version",
        "/plan/cert_type",
        "/plan/duration",
        "/binaries/proxy/version",
        "/libraries/rustls",
        "/peers/haproxy/tls_library",
    ] {
        let value = meta.pointer(pointer).and_then(|v| v.as_str());
        let value = value.unwrap_or_else(|| panic!("fixture meta.json has no {pointer}"));
        assert!(
            page.contains(&escape(value)),
            "{pointer} = {value:?} not in the page"
        );
    }
    let groups = meta["plan"]["kx_groups"].as_array().unwrap();
    let groups: Vec<&str> = groups.iter().map(|g| g.as_str().unwrap()).collect();
    assert!(page.contains(&groups.join(", ")), "{groups:?}");

    let mut notes = 0;
    for csv in ["results.csv", "handshakes.csv", "idle.csv"] {
        for note in flagged_notes(&run.join(csv)) {
            assert!(
                page.contains(&escape(&note)),
                "{csv}: note {note:?} not in the page"
            );
            notes += 1;
        }
        assert!(
            page.contains(&format!("href=\"{csv}\"")),
            "no link to {csv}"
        );
    }
    assert_eq!(notes, 3 + 3 + 2, "the fixtures' rows that are not ok");
    for target in ["meta.json", "logs/", "configs/"] {
        assert!(
            page.contains(&format!("href=\"{target}\"")),
            "no link to {target}"
        );
    }
    // plot.py has not drawn this folder: the page says so and how.
    assert!(page.contains("No pictures in this folder"), "{page}");
    assert!(page.contains("python3 analysis/plot.py"), "{page}");

    let refs = references(&page);
    assert!(refs.len() > 5, "{refs:?}");
    for r in &refs {
        assert!(
            !r.contains("http://") && !r.contains("https://") && !r.starts_with("//"),
            "a reference that leaves the file system: {r}"
        );
    }
}

#[test]
fn pictures_go_in_the_page_and_a_rewrite_is_the_same_page() {
    let dir = tempfile::tempdir().unwrap();
    let run = fixture_run(dir.path());
    let svg = "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40\" \
               height=\"20\"><rect width=\"40\" height=\"20\"/></svg>\n";
    std::fs::write(run.join("latency.svg"), svg).unwrap();
    std::fs::write(
        run.join("summary.md"),
        "## p50 latency: median, µs\n\n| series | 10 B |\n| --- | ---: |\n| http | 762 |\n",
    )
    .unwrap();
    let first = report(&run);
    assert!(first.status.success(), "{}", text(&first));
    let page = std::fs::read_to_string(run.join("index.html")).unwrap();
    assert!(
        page.contains("src=\"data:image/svg+xml;base64,PD94bWwg"),
        "the SVG as a data: URI"
    );
    assert!(
        page.contains("<td class=\"num\">762</td>"),
        "summary.md's table"
    );
    assert!(page.contains("href=\"summary.md\""), "summary.md linked");

    let again = report(&run);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        std::fs::read_to_string(run.join("index.html")).unwrap(),
        page
    );
    let mut names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        !names.iter().any(|n| n.ends_with(".tmp")),
        "no temporary file left: {names:?}"
    );
}

#[test]
fn a_missing_folder_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-run");
    let out = report(&missing);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains(&missing.display().to_string()), "{log}");
}

#[test]
fn a_folder_without_csv_names_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a run").unwrap();
    let out = report(dir.path());
    let log = text(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    for expected in ["results.csv", "handshakes.csv", "idle.csv", "faults.csv"] {
        assert!(log.contains(expected), "{expected}: {log}");
    }
    assert!(!dir.path().join("index.html").exists());
}

#[test]
fn malformed_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = fixture_run(dir.path());
    std::fs::write(run.join("meta.json"), "{\"status\": ").unwrap();
    let out = report(&run);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains("meta.json"), "{log}");

    std::fs::copy(fixtures().join("meta.json"), run.join("meta.json")).unwrap();
    std::fs::write(run.join("idle.csv"), "config,tls_backend\nhttp,none\n").unwrap();
    let out = report(&run);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(
        log.contains("idle.csv") && log.contains("`status`"),
        "{log}"
    );
}
