//! The report's JSON printer: serde_json's pretty printer, except that an array inside an
//! array is written on one line. A histogram's thousands of `[value, count]` pairs then take
//! a line each rather than four, and everything else looks as it always did.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// `value` as pretty JSON, nested arrays inline.
pub(super) fn to_string<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, InlineNested::default());
    match value.serialize(&mut ser) {
        // serde_json writes UTF-8 only.
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        // A report is plain fields and maps with string keys: it always serialises.
        Err(e) => format!("{{\"error\": \"{e}\"}}"),
    }
}

/// [`PrettyFormatter`] for every container not inside an array; the ones inside an array
/// (and everything within those) on one line.
#[derive(Default)]
struct InlineNested {
    pretty: PrettyFormatter<'static>,
    /// The pretty containers open: `true` for an array.
    open: Vec<bool>,
    /// How deep inside an inline container the printer is (0: not inside one).
    inline: usize,
}

impl InlineNested {
    /// Starts a container (an array if `array`); `true` if it is written inline: it is an
    /// array's element, or inside one.
    fn begins_inline(&mut self, array: bool) -> bool {
        if self.inline > 0 || self.open.last() == Some(&true) {
            self.inline += 1;
            return true;
        }
        self.open.push(array);
        false
    }
}

impl Formatter for InlineNested {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.begins_inline(true) {
            return w.write_all(b"[");
        }
        self.pretty.begin_array(w)
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.inline > 0 {
            self.inline -= 1;
            return w.write_all(b"]");
        }
        self.open.pop();
        self.pretty.end_array(w)
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if self.inline > 0 {
            return if first { Ok(()) } else { w.write_all(b", ") };
        }
        self.pretty.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.inline > 0 {
            return Ok(());
        }
        self.pretty.end_array_value(w)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.begins_inline(false) {
            return w.write_all(b"{");
        }
        self.pretty.begin_object(w)
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.inline > 0 {
            self.inline -= 1;
            return w.write_all(b"}");
        }
        self.open.pop();
        self.pretty.end_object(w)
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if self.inline > 0 {
            return if first { Ok(()) } else { w.write_all(b", ") };
        }
        self.pretty.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.inline > 0 {
            return w.write_all(b": ");
        }
        self.pretty.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.inline > 0 {
            return Ok(());
        }
        self.pretty.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nested_arrays_take_one_line_and_the_rest_is_pretty() {
        let value = json!({
            "a": 1,
            "empty": [],
            "list": ["x", "y"],
            "h": {"counts": [[1, 2], [3, 4]], "pairs": [[{"k": [5]}]]}
        });
        let text = to_string(&value);
        // serde_json's map sorts its keys.
        let expected = r#"{
  "a": 1,
  "empty": [],
  "h": {
    "counts": [
      [1, 2],
      [3, 4]
    ],
    "pairs": [
      [{"k": [5]}]
    ]
  },
  "list": [
    "x",
    "y"
  ]
}"#;
        assert_eq!(text, expected);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
