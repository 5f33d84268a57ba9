//! `index.html` in a run folder: one page that opens from the file system on a machine with
//! no network, with everything a reader needs to judge the run: the meta (command,
//! versions, CPU lists, TLS parameters, libraries), per scenario its pictures, summary
//! tables and every row whose status is not ok with its note, the closing table, and links
//! to the CSV files, logs and configs.
//!
//! Written at the end of every run (after the pictures, or saying why there are none) and by
//! `harness report DIR` from what a run folder holds, e.g. after `analysis/plot.py` drew it
//! later. The page is made only from the folder's files, so both give the same page.
//!
//! - [`html`]: the page builder (escaping, tables, sections), for other pages too.
//! - `folder`: reading the run folder; `rows`: a CSV's rows that are not ok (or all of
//!   them); `markdown`: plot.py's summaries as HTML; `meta_table`: meta.json as tables.
//!
//! Pictures go in as `<img src="data:image/svg+xml;base64,...">` rather than as inline
//! `<svg>` markup: matplotlib gives every figure the same element ids (`figure_1`,
//! `axes_1`, ... 270 of them shared between the sweep's four SVGs) and a `<style>` that,
//! inline, would apply to the whole page. As an image each SVG keeps its ids and style to
//! itself, and a browser loads nothing an SVG image refers to, by the rules for SVG images.

mod folder;
pub mod html;
mod markdown;
mod meta_table;
mod rows;

use std::path::{Path, PathBuf};

use crate::certs::write_atomically;
use folder::{Figure, Kind, Scenario};
pub use folder::{RunFolder, KINDS};
use html::{code, element, link, paragraph, Html, Page, Section};
use rows::{all_rows, count_line, flagged_rows};

/// The page's file name in the run folder.
pub const FILE: &str = "index.html";

/// Reads the run folder `dir` and writes its `index.html`; returns the page's path.
pub fn write(dir: &Path) -> anyhow::Result<PathBuf> {
    RunFolder::read(dir)?.write()
}

impl RunFolder {
    /// Writes `index.html` into the folder, through a temporary file and a rename, so a
    /// browser open on it never shows half a page.
    pub fn write(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(FILE);
        write_atomically(&path, self.page().render().as_bytes(), 0o644)?;
        Ok(path)
    }

    /// The page.
    pub fn page(&self) -> Page {
        let mut sections = vec![Section {
            id: "run".into(),
            heading: "Run".into(),
            body: match &self.meta {
                Some(meta) => meta_table::to_html(meta, &self.name),
                None => note(Html::text(
                    "No meta.json in this folder: the command, versions and CPU lists are unknown.",
                )),
            },
        }];
        sections.extend(self.scenarios.iter().map(|s| self.scenario_section(s)));
        if let Some(text) = &self.closing_table {
            sections.push(self.closing_table_section(text));
        }
        sections.push(Section {
            id: "files".into(),
            heading: "Files".into(),
            body: html::list(self.files.iter().map(|f| link(f, f))),
        });
        Page {
            title: format!("tls-off run {}", self.name),
            subtitle: self.subtitle(),
            sections,
        }
    }

    /// Start, end and status from meta.json.
    fn subtitle(&self) -> Html {
        let Some(meta) = &self.meta else {
            return Html::text("no meta.json");
        };
        let get = |k: &str| meta.get(k).and_then(|v| v.as_str()).unwrap_or("?");
        let mut line = format!(
            "started {}, ended {}: {}",
            get("start"),
            get("end"),
            get("status")
        );
        if let Some(host) = meta.pointer("/host/hostname").and_then(|v| v.as_str()) {
            line.push_str(&format!(", on {host}"));
        }
        Html::text(&line)
    }

    fn scenario_section(&self, s: &Scenario) -> Section {
        let kind = s.kind;
        let mut body = vec![paragraph(Html::concat([
            Html::text(&count_line(&s.rows, kind)),
            Html::text(" Data: "),
            link(kind.csv, kind.csv),
        ]))];
        if s.figures.is_empty() && !kind.figures.is_empty() {
            body.push(self.no_figures_note(kind));
        }
        body.extend(s.figures.iter().map(figure));
        if kind.every_row {
            body.push(all_rows(&s.rows));
        } else {
            body.push(element(
                "h3",
                &[],
                Html::text("Rows whose status is not ok"),
            ));
            body.push(flagged_rows(&s.rows, kind));
        }
        match (&s.summary, kind.summary) {
            (Some(md), Some(name)) => {
                body.push(element(
                    "h3",
                    &[],
                    Html::concat([Html::text("Medians ("), link(name, name), Html::text(")")]),
                ));
                // Its own list of rows not ok is the one above, read from the CSV.
                body.push(markdown::to_html(md, &["Rows whose status is not ok"]));
            }
            (None, Some(name)) => {
                let medians = match self.closing_table {
                    Some(_) => "; the closing table below has the medians.",
                    None => ".",
                };
                body.push(note(Html::concat([
                    Html::text("No "),
                    code(name),
                    Html::text(" (plot.py writes it with the pictures)"),
                    Html::text(medians),
                ])));
            }
            _ => {}
        }
        Section {
            id: kind.id.into(),
            heading: format!("{} ({})", kind.heading, kind.csv),
            body: Html::concat(body),
        }
    }

    /// Why a scenario has no pictures: what the run recorded of its plotting in meta.json,
    /// and the commands that draw them now.
    fn no_figures_note(&self, kind: Kind) -> Html {
        let recorded = self
            .meta
            .as_ref()
            .and_then(|m| m.pointer(&format!("/plots/{}", json_pointer_escape(kind.csv))))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let csv = self.dir.join(kind.csv);
        let mut parts = vec![Html::text("No pictures in this folder")];
        match recorded {
            Some(why) => parts.push(Html::text(&format!(" (the run says: {why}). "))),
            None => parts.push(Html::text(". ")),
        }
        parts.extend([
            Html::text("To draw them and put them here: "),
            code(&format!("python3 analysis/plot.py {}", csv.display())),
            Html::text(" then "),
            code(&format!("harness report {}", self.dir.display())),
            Html::text("."),
        ]);
        note(Html::concat(parts))
    }

    fn closing_table_section(&self, text: &str) -> Section {
        // Open when some scenario has no summary.md: then it is the only table of medians.
        let only_medians = self
            .scenarios
            .iter()
            .any(|s| s.kind.summary.is_some() && s.summary.is_none());
        let summary = element(
            "summary",
            &[],
            Html::concat([
                Html::text("The table the run printed at its end ("),
                link("summary.txt", "summary.txt"),
                Html::text(")"),
            ]),
        );
        let attrs: &[(&str, &str)] = if only_medians { &[("open", "")] } else { &[] };
        Section {
            id: "closing-table".into(),
            heading: "Closing table".into(),
            body: element("details", attrs, Html::concat([summary, html::pre(text)])),
        }
    }
}

/// A picture, with links to its files.
fn figure(f: &Figure) -> Html {
    let stem = f.file.rsplit_once('.').map_or(f.file.as_str(), |(s, _)| s);
    let mut caption = vec![link(&f.file, &f.file)];
    if let Some(png) = &f.png {
        caption.push(Html::text(", "));
        caption.push(link(png, png));
    }
    element(
        "figure",
        &[("id", &format!("figure-{stem}"))],
        Html::concat([
            html::inline_image(f.mime, &f.bytes, stem, "plot"),
            element("figcaption", &[], Html::concat(caption)),
        ]),
    )
}

fn note(content: Html) -> Html {
    element("p", &[("class", "note")], content)
}

/// `results.csv` as a JSON pointer token (RFC 6901: `~` and `/` escaped).
fn json_pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::report::{cells, FaultRow, Verdict, COLUMNS};
    use crate::output::{CsvSink, COLUMNS as SWEEP_COLUMNS};

    #[test]
    fn a_fault_suite_folder_gets_its_table_and_no_picture_note() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = CsvSink::create_with(&dir.path().join("faults.csv"), &COLUMNS).unwrap();
        let mut pass = FaultRow::new(1, "slowloris");
        pass.note = "held 500 connections".into();
        let mut fail = FaultRow::new(2, "handshake flood");
        fail.verdict = Verdict::Fail;
        fail.note = "FAIL: good p99 4000 µs > 3 x baseline".into();
        fail.terminator = "nginx".into();
        let mut not_applicable = FaultRow::not_applicable(5, "bad-backend", "one backend");
        not_applicable.terminator = "hitch".into();
        for row in [&pass, &fail, &not_applicable] {
            sink.write(&cells(row)).unwrap();
        }
        drop(sink);
        let page = RunFolder::read(dir.path()).unwrap().page().render();
        assert!(page.contains("<section id=\"faults\">"), "{page}");
        assert!(page.contains("3 rows: 1 pass, 1 fail, 1 n/a."), "{page}");
        assert!(page.contains("held 500 connections"), "{page}");
        assert!(
            page.contains("<tr class=\"error\"><td>2</td><td>handshake flood</td>"),
            "{page}"
        );
        assert!(page.contains("<th>terminator</th></tr>"), "{page}");
        assert!(
            page.contains("<td>n/a: one backend</td><td>–</td><td>hitch</td></tr>"),
            "{page}"
        );
        assert!(
            page.contains("<tr class=\"na\"><td>5</td><td>bad-backend</td>"),
            "an n/a row is greyed, not red: {page}"
        );
        assert!(
            !page.contains("No pictures"),
            "the suite draws none: {page}"
        );
        assert!(page.contains("No meta.json in this folder"), "{page}");
        assert!(page.contains("href=\"faults.csv\""), "{page}");
    }

    #[test]
    fn an_interrupted_run_shows_its_empty_scenario_and_the_closing_table_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(CsvSink::create_with(&dir.path().join("results.csv"), &SWEEP_COLUMNS).unwrap());
        std::fs::write(dir.path().join("summary.txt"), "config  n\nhttp    1\n").unwrap();
        std::fs::write(
            dir.path().join("meta.json"),
            r#"{"status": "interrupted", "plots": {"results.csv": "the run was interrupted"}}"#,
        )
        .unwrap();
        let page = RunFolder::read(dir.path()).unwrap().page().render();
        assert!(page.contains("No rows: the run ended before"), "{page}");
        assert!(
            page.contains("No pictures in this folder (the run says: the run was interrupted)"),
            "{page}"
        );
        assert!(page.contains("<details open=\"\">"), "{page}");
        assert!(page.contains("config  n\nhttp    1"), "{page}");
    }
}
