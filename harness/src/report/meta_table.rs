//! The page's account of a run from its `meta.json`: the command, the machine and its CPU
//! lists, the plan, the TLS parameters, and the programs and TLS libraries that ran. A field
//! the file does not have (an older harness, a fault-suite run) is left out, not shown
//! empty.

use serde_json::Value;

use super::html::{element, Html, Table};

/// The tables, each under its heading; short ones side by side where the page has room.
pub fn to_html(meta: &Value, folder_name: &str) -> Html {
    let mut out = Html::default();
    for (heading, rows) in groups(meta, folder_name) {
        let rows: Vec<(&str, String)> = rows
            .into_iter()
            .filter_map(|(label, value)| Some((label, value?)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let mut table = Table::names_and_values();
        for (label, value) in rows {
            table.push(vec![Html::text(label), Html::text(&value)]);
        }
        out.push(element(
            "div",
            &[("class", "group")],
            Html::concat([element("h3", &[], Html::text(heading)), table.to_html()]),
        ));
    }
    element("div", &[("class", "groups")], out)
}

/// A heading and its `name | value` lines; a value of `None` is left out.
type Group = (&'static str, Vec<(&'static str, Option<String>)>);

fn groups(meta: &Value, folder_name: &str) -> Vec<Group> {
    let at = |pointer: &str| meta.pointer(pointer).and_then(show);
    let plan = |key: &str| at(&format!("/plan/{key}"));
    vec![
        (
            "Command and outcome",
            vec![
                ("run folder", Some(folder_name.to_owned())),
                ("status", at("/status")),
                ("error", at("/error")),
                ("started", at("/start")),
                ("ended", at("/end")),
                ("rows", at("/rows")),
                ("command", at("/command_line")),
                ("working folder", at("/cwd")),
                ("git commit", git(meta)),
                ("skipped configs", lines(meta, "/skipped")),
            ],
        ),
        (
            "Machine and CPUs",
            vec![
                ("host", at("/host/hostname")),
                ("CPU model", at("/host/cpu_model")),
                ("kernel", at("/host/kernel")),
                ("CPUs", at("/host/cpu_count")),
                ("harness's CPU mask", at("/host/harness_affinity")),
                ("server CPUs", at("/cpus/server")),
                ("client CPUs (load generator)", at("/cpus/client")),
                ("CPU warning", at("/cpus/warning")),
                ("open-file limit", at("/nofile_limit")),
            ],
        ),
        (
            "TLS parameters",
            vec![
                ("TLS version", plan("tls_version")),
                ("cipher suites", plan("cipher_suites")),
                ("key-exchange groups", plan("kx_groups")),
                ("certificate", plan("cert_type")),
                ("TLS backends", plan("tls_backends")),
            ],
        ),
        (
            "Plan",
            vec![
                ("plan", plan("source")),
                ("scenario", plan("scenario")),
                ("configs", plan("configs")),
                ("body sizes (bytes)", plan("sizes")),
                ("iterations", plan("iterations")),
                ("duration", plan("duration")),
                ("warm-up", plan("warmup")),
                ("connections", plan("connections")),
                ("client threads", plan("client_threads")),
                ("rate (requests/s, open loop)", plan("rate")),
                ("idle connections", plan("idle_connections")),
                ("idle hold", plan("idle_hold")),
                ("target", plan("target")),
                ("peer set", plan("peers")),
            ],
        ),
        ("Programs and TLS libraries", programs(meta)),
    ]
}

/// Versions of our binaries (with each backend's TLS library), the peers, and the TLS
/// crates the workspace locked.
fn programs(meta: &Value) -> Vec<(&'static str, Option<String>)> {
    let at = |pointer: &str| meta.pointer(pointer).and_then(show);
    let mut rows = vec![
        ("proxy", at("/binaries/proxy/version")),
        ("proxy's TLS libraries", at("/binaries/proxy/tls_libraries")),
        ("echo-server", at("/binaries/echo-server/version")),
        (
            "echo-server's TLS libraries",
            at("/binaries/echo-server/tls_libraries"),
        ),
        ("loadgen", at("/binaries/loadgen/version")),
        ("peers", peers(meta)),
    ];
    rows.push(("TLS crates (Cargo.lock)", locked_crates(meta)));
    rows.push(("OpenSSL linked in", at("/libraries/openssl_linked")));
    rows.push(("host's openssl", at("/libraries/openssl_cli")));
    rows
}

/// `haproxy: HAProxy version 3.0.11 (current), AWS-LC 5.12.0; nginx: ...`.
fn peers(meta: &Value) -> Option<String> {
    let peers = meta.get("peers")?.as_object()?;
    if peers.is_empty() {
        return None;
    }
    let line = peers
        .iter()
        .map(|(config, p)| {
            let get = |k: &str| p.get(k).and_then(show).unwrap_or_else(|| "?".to_owned());
            format!(
                "{config}: {} ({}), {}",
                get("version"),
                get("origin"),
                get("tls_library")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(line)
}

/// `rustls 0.23.46, aws-lc-rs 1.19.0, ...`: the crates meta.json's `libraries` names.
fn locked_crates(meta: &Value) -> Option<String> {
    let libraries = meta.get("libraries")?.as_object()?;
    let crates: Vec<String> = libraries
        .iter()
        .filter(|(name, _)| !name.starts_with("openssl_"))
        .filter_map(|(name, version)| Some(format!("{name} {}", version.as_str()?)))
        .collect();
    (!crates.is_empty()).then(|| crates.join(", "))
}

/// A list of sentences, one a line (`none` when empty).
fn lines(meta: &Value, pointer: &str) -> Option<String> {
    let items = meta.pointer(pointer)?.as_array()?;
    if items.is_empty() {
        return Some("none".to_owned());
    }
    Some(items.iter().filter_map(show).collect::<Vec<_>>().join("\n"))
}

/// `abc123...`, with a word when tracked files differed from it.
fn git(meta: &Value) -> Option<String> {
    let commit = meta.pointer("/git/commit")?.as_str()?;
    match meta.pointer("/git/dirty").and_then(Value::as_bool) {
        Some(true) => Some(format!("{commit} (with uncommitted changes)")),
        _ => Some(commit.to_owned()),
    }
}

/// A JSON value as one line of text; `None` for null. A list is its items joined (`none`
/// when empty: an empty list of skipped configs says something), an object its `key:
/// value` pairs.
fn show(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) if items.is_empty() => Some("none".to_owned()),
        Value::Array(items) => Some(items.iter().filter_map(show).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => Some(
            map.iter()
                .filter_map(|(k, v)| Some(format!("{k}: {}", show(v)?)))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn present_fields_are_shown_and_absent_ones_left_out() {
        let meta = json!({
            "status": "complete",
            "command_line": "harness --preset smoke",
            "git": {"commit": "abc", "dirty": true},
            "cpus": {"server": "0-2", "client": "3", "warning": null},
            "plan": {
                "tls_version": "TLSv1.3",
                "kx_groups": ["X25519", "secp256r1"],
                "sizes": [10, 1000],
            },
            "binaries": {"proxy": {
                "version": "proxy 0.1.0",
                "tls_libraries": {
                    "openssl": "OpenSSL 3.6.3",
                    "rustls-ring": "rustls 0.23.46 + ring 0.17.14",
                },
            }},
            "peers": {"haproxy": {
                "program": "/usr/sbin/haproxy",
                "version": "HAProxy version 2.6.12",
                "origin": "system",
                "tls_library": "OpenSSL 3.0.15",
            }},
            "libraries": {"rustls": "0.23.46", "ring": null, "openssl_cli": "OpenSSL 3.0.15"},
            "skipped": [],
        });
        let html = to_html(&meta, "20240501T120000Z-host");
        let s = html.as_str();
        for expected in [
            "<td>run folder</td><td>20240501T120000Z-host</td>",
            "<td>command</td><td>harness --preset smoke</td>",
            "<td>git commit</td><td>abc (with uncommitted changes)</td>",
            "<td>server CPUs</td><td>0-2</td>",
            "<td>key-exchange groups</td><td>X25519, secp256r1</td>",
            "<td>body sizes (bytes)</td><td>10, 1000</td>",
            "openssl: OpenSSL 3.6.3; rustls-ring: rustls 0.23.46 + ring 0.17.14",
            "haproxy: HAProxy version 2.6.12 (system), OpenSSL 3.0.15",
            "<td>TLS crates (Cargo.lock)</td><td>rustls 0.23.46</td>",
            "<td>host&#39;s openssl</td><td>OpenSSL 3.0.15</td>",
            "<td>skipped configs</td><td>none</td>",
        ] {
            assert!(s.contains(expected), "{expected}\n{s}");
        }
        assert!(!s.contains("CPU warning"), "null is left out: {s}");
        let skipped = json!({"skipped": ["skipping a: why", "skipping b: why"]});
        let html = to_html(&skipped, "run");
        assert!(
            html.as_str()
                .contains("<td>skipping a: why\nskipping b: why</td>"),
            "one a line: {html:?}"
        );
        assert!(!s.contains("<td>kernel</td>"), "absent is left out: {s}");
    }
}
