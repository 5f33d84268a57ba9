//! The markdown that `analysis/plot.py` writes in its summaries (`summary.md`,
//! `handshakes-summary.md`, `idle-summary.md`) as HTML: `##` headings, paragraphs, pipe
//! tables with `---:` alignment, `- ` lists and `code` spans. That subset only: plot.py
//! writes nothing else, and a line of any other form is shown as the text it is.

use super::html::{self, element, Align, Html, Table};

/// `markdown` as HTML, without the sections whose `##` heading starts with one of `skip`
/// (the page shows those itself, from the CSV) and without the `#` title (the page's own
/// section heading says what the summary is of).
pub fn to_html(markdown: &str, skip: &[&str]) -> Html {
    let mut out = Html::default();
    let mut lines = markdown.lines().peekable();
    let mut skipping = false;
    while let Some(line) = lines.next() {
        if let Some(heading) = line.strip_prefix("## ") {
            skipping = skip.iter().any(|s| heading.starts_with(s));
            if !skipping {
                out.push(element("h3", &[], inline(heading)));
            }
            continue;
        }
        if skipping || line.starts_with("# ") || line.trim().is_empty() {
            continue;
        }
        if line.starts_with('|') {
            let mut block = vec![line];
            while let Some(next) = lines.next_if(|l| l.starts_with('|')) {
                block.push(next);
            }
            out.push(table(&block));
        } else if line.starts_with("- ") {
            let mut items = vec![line];
            while let Some(next) = lines.next_if(|l| l.starts_with("- ")) {
                items.push(next);
            }
            out.push(html::list(items.iter().map(|l| inline(&l[2..]))));
        } else {
            // A paragraph: this line and the plain lines after it, joined as markdown does.
            let mut text = line.to_owned();
            while let Some(next) = lines.next_if(|l| is_plain(l)) {
                text.push(' ');
                text.push_str(next);
            }
            out.push(html::paragraph(inline(&text)));
        }
    }
    out
}

/// A line that continues a paragraph.
fn is_plain(line: &str) -> bool {
    !(line.trim().is_empty()
        || line.starts_with('#')
        || line.starts_with('|')
        || line.starts_with("- "))
}

/// A pipe table: header, the alignment row (`---` or `---:`), then the body. A block
/// without an alignment row is all body under an empty header.
fn table(block: &[&str]) -> Html {
    let rows: Vec<Vec<String>> = block.iter().map(|l| cells(l)).collect();
    let is_rule = |row: &Vec<String>| {
        !row.is_empty()
            && row
                .iter()
                .all(|c| c.trim_matches(':').chars().all(|ch| ch == '-') && c.contains('-'))
    };
    let (header, body) = match rows.get(1) {
        Some(rule) if is_rule(rule) => (rows[0].clone(), &rows[2..]),
        _ => (Vec::new(), &rows[..]),
    };
    let mut t = Table::new(&header);
    if let Some(rule) = rows.get(1).filter(|r| is_rule(r)) {
        for (i, c) in rule.iter().enumerate() {
            if c.ends_with(':') {
                t = t.align(i, Align::Right);
            }
        }
    }
    for row in body {
        t.push(row.iter().map(|c| inline(c)).collect());
    }
    t.to_html()
}

/// The cells of `| a | b \| c |`: split on pipes that are not escaped, trimmed.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim();
    let inner = inner.strip_prefix('|').unwrap_or(inner);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let (mut out, mut cell) = (Vec::new(), String::new());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cell.push('|');
            }
            '|' => out.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    out.push(cell);
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// Text with its `code` spans; an unpaired backtick stays as it is.
fn inline(text: &str) -> Html {
    let parts: Vec<&str> = text.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return Html::text(text);
    }
    Html::concat(parts.iter().enumerate().map(|(i, part)| {
        if i % 2 == 1 {
            html::code(part)
        } else {
            Html::text(part)
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "# Summary of /tmp/run/results.csv

3 rows: 2 ok, 1 error. Figures are medians
over the iterations.

## p50 latency: median, µs

| series | 10 B | 1 kB |
| --- | ---: | ---: |
| http | 762 | 1,358 |
| proxy-rustls (rustls 0.23 \\| ring) | – | 2,799 |

## Rows whose status is not ok

| config | status | note |
| --- | --- | --- |
| http | error | no `listening on` line |

## Notes on ok rows

- 2 row(s): servers share CPU 3 with `loadgen`
";

    #[test]
    fn summaries_become_headings_paragraphs_tables_and_lists() {
        let html = to_html(SUMMARY, &["Rows whose status is not ok"]);
        let s = html.as_str();
        assert!(!s.contains("Summary of"), "the # title is the page's: {s}");
        assert!(
            s.contains("<p>3 rows: 2 ok, 1 error. Figures are medians over the iterations.</p>"),
            "{s}"
        );
        assert!(s.contains("<h3>p50 latency: median, µs</h3>"), "{s}");
        assert!(s.contains("<th class=\"num\">10 B</th>"), "{s}");
        assert!(s.contains("<td>http</td><td class=\"num\">762</td>"), "{s}");
        assert!(
            s.contains("<td>proxy-rustls (rustls 0.23 | ring)</td>"),
            "an escaped pipe is one cell: {s}"
        );
        assert!(!s.contains("listening on"), "skipped section: {s}");
        assert!(s.contains("<h3>Notes on ok rows</h3>"), "{s}");
        assert!(
            s.contains("<li>2 row(s): servers share CPU 3 with <code>loadgen</code></li>"),
            "{s}"
        );
    }

    #[test]
    fn markup_in_the_text_is_escaped() {
        let s = to_html("a <b> & `<c>`\n\n| x |\n| --- |\n| <y> |\n", &[]);
        assert!(
            s.as_str()
                .contains("a &lt;b&gt; &amp; <code>&lt;c&gt;</code>"),
            "{s:?}"
        );
        assert!(s.as_str().contains("<td>&lt;y&gt;</td>"), "{s:?}");
        assert_eq!(inline("one ` tick").as_str(), "one ` tick");
    }
}
