//! One fuzz input through `proxy::config::Config::parse` (TOML text -> checked `Config`,
//! or a one-line `file:line: message` / `file: key: message` error), two ways:
//!
//! - **raw**: the bytes as TOML text (lossy UTF-8, as an editor might save it), which finds
//!   problems in the TOML layer and in how errors are turned into `file:line` messages;
//! - **structured**: the bytes read as a list of choices that build a syntactically valid
//!   document from the keys `Config` knows, with valid, borderline and wrong-typed values
//!   ([`build_document`]), which gets past the TOML syntax to the semantic checks (zero
//!   timeouts, duplicate listeners, `client_auth` without `client_ca`, client certificates
//!   on a plain listener, a TLS listener without a certificate, SNI names, limits).
//!
//! Shared, via `#[path]`, by the `config` fuzz target and by
//! `proxy/tests/fuzz_regressions.rs`, so a saved crash replays on stable through exactly the
//! code that found it.
//!
//! Properties on every outcome: no panic; an error is one line and names the file (and a
//! line inside the text, for TOML errors); a `Config` that parsed passes its own `check`
//! again, has a listener, and yields TLS settings and (when a listener uses TLS) a
//! certificate set.

use std::path::Path;

use proxy::config::{Config, ConfigError};

/// The file name every error must start with.
pub const FILE_NAME: &str = "fuzz.toml";

/// What the parser said about one input, both ways.
// reason: the fuzz target needs only the panics; the replay test reads these.
#[allow(dead_code)]
#[derive(Debug)]
pub struct Outcome {
    /// The input itself as TOML text.
    pub raw: Result<Config, ConfigError>,
    /// The document [`build_document`] made from the input.
    pub structured: Result<Config, ConfigError>,
}

/// Runs both ways, panics if a property is broken, and returns what the parser said.
pub fn check(data: &[u8]) -> Outcome {
    let raw = parse_checked(&String::from_utf8_lossy(data));
    let doc = build_document(data);
    let structured = parse_checked(&doc);
    // If the generator wrote broken TOML it would only ever test the syntax layer. Only a
    // `Parse` error can mean that, so only then is the document parsed a second time.
    if let Err(ConfigError::Parse { .. }) = &structured {
        if let Err(e) = doc.parse::<toml::Table>() {
            panic!("the generated document is not valid TOML ({e}):\n{doc}");
        }
    }
    Outcome { raw, structured }
}

/// Builds a TOML document from `data` read as choices: which keys and sections appear, and
/// for each key a value, usually a valid one, sometimes an edge case, a wrong type or a free
/// string or integer taken from the input. Strings are escaped, so the document is always
/// valid TOML. Choices lean towards "present and valid" (an input that runs out chooses the
/// first valid value of every key and one listener, a config that parses), so that most
/// documents get past the types to the semantic checks and only a few choices break one.
pub fn build_document(data: &[u8]) -> String {
    let mut c = Choices { data };
    let mut doc = String::new();
    // 1, 2, 3 or (rarely) 0 listeners; 0 is written as an empty list, which only the
    // semantic check rejects (a missing key is a TOML-level "missing field" error).
    let listeners = (usize::from(c.byte()) + 1) % 4;
    if listeners == 0 {
        doc.push_str("listener = []\n");
    }
    c.keys(
        &mut doc,
        &[
            ("threads", COUNTS),
            ("runtime", RUNTIMES),
            ("max_connections", COUNTS),
            ("metrics_listen", ADDRS),
            ("top_clients", COUNTS),
            ("log_format", LOG_FORMATS),
            ("access_log", BOOLS),
        ],
    );
    if c.byte() % 4 != 3 {
        doc.push_str("[timeouts]\n");
        c.keys(
            &mut doc,
            &[
                ("handshake", DURATIONS),
                ("upstream_connect", DURATIONS),
                ("idle", DURATIONS),
                ("shutdown_grace", DURATIONS),
            ],
        );
    }
    if c.byte() % 16 != 15 {
        doc.push_str("[tls]\n");
        c.keys(
            &mut doc,
            &[
                ("backend", BACKENDS),
                ("min_version", TLS_VERSIONS),
                ("cipher_suites", STRING_LISTS),
                ("kx_groups", STRING_LISTS),
                ("alpn", STRING_LISTS),
                ("session_resumption", BOOLS),
                ("strict_sni", BOOLS),
                ("cert", PATHS),
                ("key", PATHS),
            ],
        );
    }
    for _ in 0..c.byte() % 3 {
        doc.push_str("[[tls.sni]]\n");
        c.keys(
            &mut doc,
            &[("name", SNI_NAMES), ("cert", PATHS), ("key", PATHS)],
        );
    }
    for _ in 0..listeners {
        doc.push_str("[[listener]]\n");
        c.keys(
            &mut doc,
            &[
                ("listen", ADDRS),
                ("upstream", UPSTREAMS),
                ("tls", BOOLS),
                ("proxy_protocol", PROXY_PROTOCOLS),
                ("accept_proxy", BOOLS),
                ("client_ca", PATHS),
                ("client_auth", CLIENT_AUTHS),
            ],
        );
    }
    doc
}

/// `Config::parse` plus the properties every outcome must keep.
fn parse_checked(text: &str) -> Result<Config, ConfigError> {
    let path = Path::new(FILE_NAME);
    let result = Config::parse(text, path);
    match &result {
        Ok(config) => {
            if let Err(e) = config.check(path) {
                panic!("a parsed config fails its own check: {e}");
            }
            assert!(!config.listeners.is_empty(), "parsed without a listener");
            for listener in &config.listeners {
                let _ = config.tls.settings(listener);
            }
            if config.uses_tls() {
                assert!(
                    config.tls.cert_set().is_some(),
                    "a TLS listener without a certificate"
                );
            }
        }
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.starts_with(FILE_NAME),
                "error does not name the file: {message:?}"
            );
            assert!(
                !message.contains('\n'),
                "error is not one line: {message:?}"
            );
            match err {
                ConfigError::Parse { line, .. } => {
                    let lines = text.matches('\n').count() + 1;
                    assert!(*line <= lines, "line {line} of a {lines}-line text");
                }
                ConfigError::Invalid { .. } => {}
                ConfigError::Read { .. } => panic!("parse from text reported a read error"),
            }
        }
    }
    result
}

/// The fuzz input read front to back as choices; once it is used up every choice is 0.
struct Choices<'a> {
    data: &'a [u8],
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A number in `0..n` (`n` is small, so the modulo bias does not matter here).
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    /// Up to 31 input bytes as text, escaped for a TOML basic string (no quotes).
    fn text(&mut self) -> String {
        let len = self.below(32).min(self.data.len());
        let (taken, rest) = self.data.split_at(len);
        self.data = rest;
        escape(&String::from_utf8_lossy(taken))
    }

    fn integer(&mut self) -> i64 {
        let mut bytes = [0; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        i64::from_le_bytes(bytes)
    }

    /// One value literal: three times in four a valid one from `pool`, else an odd one, a
    /// free string (maybe after a prefix the upstream and address parsers look for) or a
    /// free integer.
    fn value(&mut self, pool: &Pool) -> String {
        let b = usize::from(self.byte());
        if b % 4 != 3 {
            return pool.valid[(b / 4) % pool.valid.len()].to_string();
        }
        let i = (b / 4) % (pool.odd.len() + 2);
        if let Some(literal) = pool.odd.get(i) {
            (*literal).to_string()
        } else if i == pool.odd.len() {
            let prefix = FREE_PREFIXES[self.below(FREE_PREFIXES.len())];
            format!("\"{prefix}{}\"", self.text())
        } else {
            self.integer().to_string()
        }
    }

    /// Writes each key with probability 7/8, then rarely one unknown key (`x-...`).
    fn keys(&mut self, doc: &mut String, keys: &[(&str, &Pool)]) {
        for (key, pool) in keys {
            if self.byte() % 8 != 7 {
                let value = self.value(pool);
                doc.push_str(&format!("{key} = {value}\n"));
            }
        }
        if self.byte() % 16 == 15 {
            // The prefix keeps it from repeating a known key, which would be a TOML error.
            let key = self.text();
            doc.push_str(&format!("\"x-{key}\" = 1\n"));
        }
    }
}

/// Escapes `s` for a TOML basic string: quotes, backslashes and control characters.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The TOML literals one key may get: `valid` ones (at least one) parse for this key on their
/// own; `odd` ones are edge cases, semantically invalid values and wrong types.
struct Pool {
    valid: &'static [&'static str],
    odd: &'static [&'static str],
}

const COUNTS: &Pool = &Pool {
    valid: &["2", "1", "100", "10000"],
    odd: &["0", "10001", "-1", "9223372036854775807", "\"4\""],
};
const RUNTIMES: &Pool = &Pool {
    valid: &["\"per-core\"", "\"multi-thread\""],
    odd: &["\"PerCore\"", "1"],
};
const LOG_FORMATS: &Pool = &Pool {
    valid: &["\"text\"", "\"json\""],
    odd: &["\"xml\""],
};
const BOOLS: &Pool = &Pool {
    valid: &["true", "false"],
    odd: &["\"yes\"", "1"],
};
const DURATIONS: &Pool = &Pool {
    valid: &["\"10s\"", "\"500ms\"", "\"1h 30m\"", "\"1ns\""],
    odd: &[
        "\"0s\"",
        "\"0ns\"",
        "\"soon\"",
        "\"-1s\"",
        "\"18446744073709551616s\"",
        "\"99999999999999999999d\"",
        "10",
    ],
};
const BACKENDS: &Pool = &Pool {
    valid: &["\"rustls-aws-lc\"", "\"rustls-ring\"", "\"openssl\""],
    odd: &["\"gnutls\"", "\"\""],
};
const TLS_VERSIONS: &Pool = &Pool {
    valid: &["\"1.2\"", "\"1.3\""],
    odd: &["\"1.1\"", "1.3"],
};
const STRING_LISTS: &Pool = &Pool {
    valid: &[
        "[]",
        "[\"TLS_AES_128_GCM_SHA256\"]",
        "[\"X25519\", \"secp256r1\"]",
        "[\"h2\", \"http/1.1\"]",
        "[\"\"]",
    ],
    odd: &["[1, 2]", "\"h2\"", "[[\"h2\"]]"],
};
const PATHS: &Pool = &Pool {
    valid: &["\"c.pem\"", "\"/etc/tls-off/key.pem\"", "\"\""],
    odd: &["7", "[]"],
};
const SNI_NAMES: &Pool = &Pool {
    valid: &["\"api.example.com\"", "\"API.example.com\"", "\"a\""],
    odd: &["\"*.example.com\"", "\"\"", "\"a b\"", "\"a/b\""],
};
const ADDRS: &Pool = &Pool {
    valid: &[
        "\"127.0.0.1:8443\"",
        "\"[::1]:8443\"",
        "\"0.0.0.0:0\"",
        "\"127.0.0.1:9100\"",
    ],
    odd: &["\"localhost:443\"", "\"127.0.0.1\"", "\"[::1]\"", "8443"],
};
const UPSTREAMS: &Pool = &Pool {
    valid: &[
        "\"unix:/run/app.sock\"",
        "\"tcp:127.0.0.1:80\"",
        "\"tcp:[::1]:80\"",
        "\"tcp:backend.internal:0\"",
    ],
    odd: &[
        "\"unix:\"",
        "\"tcp::80\"",
        "\"tcp:host:65536\"",
        "\"tcp:host:\"",
        "\"http://x\"",
    ],
};
const PROXY_PROTOCOLS: &Pool = &Pool {
    valid: &["\"v1\"", "\"v2\""],
    odd: &["\"v3\"", "2"],
};
const CLIENT_AUTHS: &Pool = &Pool {
    valid: &["\"required\"", "\"optional\""],
    odd: &["\"maybe\""],
};
/// Put before a free string, so free text also lands behind the upstream forms.
const FREE_PREFIXES: &[&str] = &["", "unix:", "tcp:", "tcp:127.0.0.1:", "127.0.0.1:"];
