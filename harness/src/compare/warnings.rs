//! What makes two runs less than like for like, one line each: settings in their
//! meta.json that differ (CPU model, pinning, TLS parameters, load), a meta.json missing, a
//! run that did not complete, and a TLS library whose version changed under a key.

use serde_json::Value;

use super::load::{Key, Run};

/// Every warning for comparing `new` with `base`.
pub fn warnings(base: &Run, new: &Run, compared: &[(&Key, String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for run in [base, new] {
        if run.meta.is_none() {
            out.push(format!(
                "{}: no meta.json beside it: CPU model, pinning, TLS parameters, connections \
                 and durations could not be checked",
                run.source.given
            ));
        }
    }
    for (side, run) in [("base", base), ("new", new)] {
        let status = run.meta.as_ref().and_then(|m| m.get("status")?.as_str());
        if let Some(status) = status.filter(|s| !COMPLETE.contains(s)) {
            out.push(format!(
                "{side} {}: the run's status is {status:?} (meta.json): it may lack rows",
                run.source.given
            ));
        }
    }
    if let (Some(b), Some(n)) = (&base.meta, &new.meta) {
        out.extend(meta_differences(b, n));
    }
    out.extend(library_changes(compared));
    out
}

/// One line per setting that differs between two meta.json files, naming it and both
/// values. A setting neither has (an older meta.json) is not a difference.
pub fn meta_differences(base: &Value, new: &Value) -> Vec<String> {
    META_FIELDS
        .iter()
        .filter_map(|&(name, pointer)| {
            let (b, n) = (base.pointer(pointer), new.pointer(pointer));
            (b != n).then(|| {
                format!(
                    "meta.json differs: {name} ({pointer}): {} (base) vs {} (new)",
                    shown(b),
                    shown(n)
                )
            })
        })
        .collect()
}

/// A TLS library that changed version under the same config and backend, once per pair
/// (a run's sizes all name the same library). `compared` holds each key compared with its
/// base and new library.
fn library_changes(compared: &[(&Key, String, String)]) -> Vec<String> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut out = Vec::new();
    for (key, base, new) in compared {
        let pair = (key.config.as_str(), key.tls_backend.as_str());
        if base != new && !seen.contains(&pair) {
            seen.push(pair);
            out.push(format!(
                "{} {}: TLS library {base} (base) vs {new} (new)",
                key.config, key.tls_backend
            ));
        }
    }
    out
}

/// A meta.json value in a warning: strings bare, lists comma-joined, absent as `absent`.
fn shown(value: Option<&Value>) -> String {
    match value {
        None => "absent".to_owned(),
        Some(Value::Null) => "none".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| shown(Some(i)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// The settings whose difference makes two runs' figures not like for like: name, and
/// where `run::starting_meta` and `Plan::to_json` put it.
const META_FIELDS: [(&str, &str); 12] = [
    ("CPU model", "/host/cpu_model"),
    ("server CPUs", "/cpus/server"),
    ("client CPUs", "/cpus/client"),
    ("TLS version", "/plan/tls_version"),
    ("cipher suites", "/plan/cipher_suites"),
    ("key-exchange groups", "/plan/kx_groups"),
    ("certificate type", "/plan/cert_type"),
    ("connections", "/plan/connections"),
    ("duration", "/plan/duration"),
    ("warm-up", "/plan/warmup"),
    ("loadgen threads", "/plan/client_threads"),
    ("rate", "/plan/rate"),
];

/// meta.json statuses of a run that ran every measurement (some may have failed: their
/// rows say so).
const COMPLETE: [&str; 2] = ["complete", "complete-with-errors"];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_difference_is_one_line_with_both_values() {
        let base = json!({
            "host": {"cpu_model": "AMD EPYC 7B13"},
            "cpus": {"server": "0-2", "client": "3"},
            "plan": {"connections": 50, "kx_groups": ["X25519"], "rate": null, "duration": "5s"},
        });
        let mut new = base.clone();
        assert!(meta_differences(&base, &new).is_empty());
        new["plan"]["connections"] = json!(100);
        new["plan"]["kx_groups"] = json!(["X25519", "secp256r1"]);
        new["plan"]["rate"] = json!(20000.0);
        new["cpus"]["server"] = json!("0-1");
        let lines = meta_differences(&base, &new);
        assert_eq!(
            lines,
            [
                "meta.json differs: server CPUs (/cpus/server): 0-2 (base) vs 0-1 (new)",
                "meta.json differs: key-exchange groups (/plan/kx_groups): X25519 (base) vs \
                 X25519,secp256r1 (new)",
                "meta.json differs: connections (/plan/connections): 50 (base) vs 100 (new)",
                "meta.json differs: rate (/plan/rate): none (base) vs 20000.0 (new)",
            ]
        );
        new["plan"].as_object_mut().unwrap().remove("duration");
        let lines = meta_differences(&base, &new);
        assert!(
            lines.contains(
                &"meta.json differs: duration (/plan/duration): 5s (base) vs absent (new)"
                    .to_owned()
            ),
            "{lines:?}"
        );
    }
}
