//! A small HTML page builder for pages that open from the file system with no network:
//! every piece of text goes through [`escape`] on its way into an [`Html`] value, styles are
//! inline in the head, pictures are `data:` URIs, and the page's Content-Security-Policy
//! forbids the browser any fetch but `data:` images. The run report builds its page with
//! it; so can any other page of the harness (a comparison of two runs).

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Markup that is safe to put in a page: made only by this module's functions, which escape
/// every piece of text and attribute value they are given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// `text`, escaped.
    pub fn text(text: &str) -> Html {
        Html(escape(text))
    }

    /// The pieces one after the other.
    pub fn concat(parts: impl IntoIterator<Item = Html>) -> Html {
        let mut out = Html::default();
        for part in parts {
            out.push(part);
        }
        out
    }

    pub fn push(&mut self, part: Html) {
        self.0.push_str(&part.0);
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `text` with `& < > " '` replaced by entities: safe as element content and as a quoted
/// attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `<tag attr="value"...>content</tag>`; tag and attribute names are the caller's literals,
/// values are escaped.
pub fn element(tag: &'static str, attrs: &[(&'static str, &str)], content: Html) -> Html {
    let mut out = void_element(tag, attrs);
    out.0.push_str(&content.0);
    out.0.push_str(&format!("</{tag}>"));
    out
}

/// An element without content or end tag (`<img ...>`).
fn void_element(tag: &'static str, attrs: &[(&'static str, &str)]) -> Html {
    let mut out = format!("<{tag}");
    for (name, value) in attrs {
        // Writing to a String cannot fail.
        let _ = write!(out, " {name}=\"{}\"", escape(value));
    }
    out.push('>');
    Html(out)
}

pub fn paragraph(content: Html) -> Html {
    element("p", &[], content)
}

/// Text in a `<code>` element.
pub fn code(text: &str) -> Html {
    element("code", &[], Html::text(text))
}

/// Preformatted text (an aligned table as the terminal showed it).
pub fn pre(text: &str) -> Html {
    element("pre", &[], Html::text(text))
}

/// A link to `target`, a path relative to the page (a file beside it, `logs/`) or a
/// `#section`; characters that would end or change the URL are percent-encoded.
pub fn link(target: &str, text: &str) -> Html {
    element("a", &[("href", &relative_href(target))], Html::text(text))
}

/// A bulleted list.
pub fn list(items: impl IntoIterator<Item = Html>) -> Html {
    element(
        "ul",
        &[],
        Html::concat(items.into_iter().map(|i| element("li", &[], i))),
    )
}

/// A picture carried in the page itself: `<img src="data:MIME;base64,...">`.
pub fn inline_image(mime: &str, bytes: &[u8], alt: &str, class: &str) -> Html {
    let src = format!("data:{mime};base64,{}", STANDARD.encode(bytes));
    void_element("img", &[("class", class), ("alt", alt), ("src", &src)])
}

/// How a table column's cells line up: text to the left, numbers to the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table: a header row, then rows of cells, each row with an optional CSS class (the
/// page's style colours `warning` and `error`).
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column names; none for a table of `name | value` lines.
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<(Vec<Html>, Option<String>)>,
    class: Option<String>,
}

impl Table {
    /// A table with these column names, every column left-aligned.
    pub fn new<S: AsRef<str>>(header: &[S]) -> Table {
        Table {
            header: header.iter().map(|h| h.as_ref().to_owned()).collect(),
            align: vec![Align::Left; header.len()],
            ..Table::default()
        }
    }

    /// A table of `name | value` lines: no header, the names in bold.
    pub fn names_and_values() -> Table {
        Table {
            class: Some("names".to_owned()),
            ..Table::default()
        }
    }

    /// Sets column `column`'s alignment (a column past the header is ignored).
    pub fn align(mut self, column: usize, align: Align) -> Table {
        if let Some(a) = self.align.get_mut(column) {
            *a = align;
        }
        self
    }

    pub fn push(&mut self, cells: Vec<Html>) {
        self.rows.push((cells, None));
    }

    /// A row with a CSS class (`warning`, `error`).
    pub fn push_with_class(&mut self, cells: Vec<Html>, class: &str) {
        self.rows.push((cells, Some(class.to_owned())));
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn to_html(&self) -> Html {
        let cell = |tag: &'static str, i: usize, content: Html| match self
            .align
            .get(i)
            .copied()
            .unwrap_or(Align::Left)
        {
            Align::Left => element(tag, &[], content),
            Align::Right => element(tag, &[("class", "num")], content),
        };
        let head = element(
            "tr",
            &[],
            Html::concat(
                self.header
                    .iter()
                    .enumerate()
                    .map(|(i, h)| cell("th", i, Html::text(h))),
            ),
        );
        let body = self.rows.iter().map(|(cells, class)| {
            let cells = Html::concat(
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| cell("td", i, c.clone())),
            );
            match class {
                Some(class) => element("tr", &[("class", class)], cells),
                None => element("tr", &[], cells),
            }
        });
        let mut parts = Vec::new();
        if !self.header.is_empty() {
            parts.push(element("thead", &[], head));
        }
        parts.push(element("tbody", &[], Html::concat(body)));
        let table = match &self.class {
            Some(class) => element("table", &[("class", class)], Html::concat(parts)),
            None => element("table", &[], Html::concat(parts)),
        };
        // Wide tables scroll sideways inside the page rather than widen it.
        element("div", &[("class", "scroll")], table)
    }
}

/// One section of a page: an anchor, a heading (listed in the page's contents) and a body.
#[derive(Debug, Clone)]
pub struct Section {
    pub id: String,
    pub heading: String,
    pub body: Html,
}

/// A whole page: title, a line under it, and sections in order.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub title: String,
    pub subtitle: Html,
    pub sections: Vec<Section>,
}

impl Page {
    /// The page as one HTML5 document: no scripts, no fonts, no fetch of any kind.
    pub fn render(&self) -> String {
        let contents = list(
            self.sections
                .iter()
                .map(|s| link(&format!("#{}", s.id), &s.heading)),
        );
        let mut body = Html::concat([
            element("h1", &[], Html::text(&self.title)),
            paragraph(self.subtitle.clone()),
            element("nav", &[], contents),
        ]);
        for s in &self.sections {
            body.push(element(
                "section",
                &[("id", &s.id)],
                Html::concat([element("h2", &[], Html::text(&s.heading)), s.body.clone()]),
            ));
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{}\n</body>\n</html>\n",
            escape(&self.title),
            body.as_str()
        )
    }
}

/// `target` as an href: kept as it is where it is a plain relative path or `#anchor`;
/// anything else (a space, `%`, `?`, a colon that could make it a scheme) percent-encoded.
fn relative_href(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/#".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The browser may fetch nothing but the page's own `data:` images and inline style: a
/// mistake that adds an external reference shows as a broken picture, never as a request.
/// Links are navigation, which this does not restrict.
const CSP: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
                   base-uri 'none'; form-action 'none'";

/// The page's style: the system's fonts (no web fonts), tables that read down a column,
/// rows with status warning or error coloured.
const STYLE: &str = include_str!("page.css");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let e = element("td", &[("title", "a\"b")], Html::text("<script>"));
        assert_eq!(e.as_str(), "<td title=\"a&quot;b\">&lt;script&gt;</td>");
    }

    #[test]
    fn links_stay_relative_and_cannot_become_a_scheme() {
        assert_eq!(
            link("results.csv", "results.csv").as_str(),
            "<a href=\"results.csv\">results.csv</a>"
        );
        assert_eq!(relative_href("logs/"), "logs/");
        assert_eq!(relative_href("#sweep"), "#sweep");
        assert_eq!(relative_href("a b%?.csv"), "a%20b%25%3F.csv");
        assert_eq!(relative_href("javascript:x"), "javascript%3Ax");
    }

    #[test]
    fn inline_images_are_standard_base64_data_uris() {
        // RFC 4648's alphabet with padding (`+`, `/`, `=`), as data: URIs take it.
        let img = inline_image("image/svg+xml", &[0xfb, 0xff, b'f'], "a<b", "plot");
        assert_eq!(
            img.as_str(),
            "<img class=\"plot\" alt=\"a&lt;b\" src=\"data:image/svg+xml;base64,+/9m\">"
        );
        let img = inline_image("image/png", b"fo", "", "plot");
        assert!(img.as_str().contains("base64,Zm8=\""), "{}", img.as_str());
    }

    #[test]
    fn tables_align_numbers_and_mark_rows() {
        let mut t = Table::new(&["config", "rps"]).align(1, Align::Right);
        t.push(vec![Html::text("http"), Html::text("1,000")]);
        t.push_with_class(vec![Html::text("relay"), Html::text("–")], "error");
        let html = t.to_html();
        let s = html.as_str();
        assert!(s.contains("<th class=\"num\">rps</th>"), "{s}");
        assert!(s.contains("<td class=\"num\">1,000</td>"), "{s}");
        assert!(s.contains("<tr class=\"error\"><td>relay</td>"), "{s}");
        let mut names = Table::names_and_values();
        names.push(vec![Html::text("host"), Html::text("a")]);
        let html = names.to_html();
        assert!(!html.as_str().contains("<thead>"), "{html:?}");
        assert!(
            html.as_str().contains("<table class=\"names\"><tbody>"),
            "{html:?}"
        );
    }

    #[test]
    fn a_page_has_its_sections_listed_and_forbids_fetches() {
        let page = Page {
            title: "run <1>".into(),
            subtitle: Html::text("started"),
            sections: vec![Section {
                id: "sweep".into(),
                heading: "Sweep".into(),
                body: paragraph(Html::text("x")),
            }],
        };
        let text = page.render();
        assert!(text.starts_with("<!DOCTYPE html>"), "{text}");
        assert!(text.contains("<title>run &lt;1&gt;</title>"), "{text}");
        assert!(text.contains("<a href=\"#sweep\">Sweep</a>"), "{text}");
        assert!(
            text.contains("<section id=\"sweep\"><h2>Sweep</h2>"),
            "{text}"
        );
        assert!(text.contains("default-src 'none'"), "{text}");
        assert!(!text.contains("<script"), "{text}");
    }
}
