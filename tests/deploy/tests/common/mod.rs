//! What the deployment checks share: the repository's files, the queries of the
//! alerts and the dashboard, and a small PromQL tokenizer.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

pub fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML file of the repository, with `<<: *anchor` merge keys applied.
pub fn yaml(rel: &str) -> serde_yaml_ng::Value {
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: merge keys: {e}"));
    v
}

pub fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("monitoring/grafana/dashboards/genq.json"))
        .expect("dashboard JSON parses")
}

/// One PromQL query and where it comes from (for messages).
#[derive(Debug, Clone)]
pub struct Query {
    pub origin: String,
    pub expr: String,
}

/// Every alerting/recording rule's `expr` in monitoring/alerts.yml.
pub fn alert_queries() -> Vec<Query> {
    let doc = yaml("monitoring/alerts.yml");
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .expect("rule name");
            out.push(Query {
                origin: format!("alerts.yml {name}"),
                expr: rule["expr"].as_str().expect("expr").to_owned(),
            });
        }
    }
    out
}

/// Every panel's (rows' nested panels included) `targets[].expr` in the dashboard.
pub fn dashboard_queries() -> Vec<Query> {
    fn walk(panels: &[serde_json::Value], out: &mut Vec<Query>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Query {
                        origin: format!("dashboard panel '{title}' target {}", t["refId"]),
                        expr: expr.to_owned(),
                    });
                }
            }
            if let Some(nested) = p["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard()["panels"].as_array().expect("panels"), &mut out);
    out
}

/// The query without its string literals (label values, durations stay).
pub fn strip_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None => {
                if c == '"' || c == '\'' || c == '`' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// Identifier-like tokens (`[A-Za-z_:][A-Za-z0-9_:]*`) with their byte offsets,
/// string literals removed first.
pub fn tokens(expr: &str) -> Vec<(usize, String)> {
    let s = strip_strings(expr);
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < bytes.len() {
                let c = bytes[i] as char;
                if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push((start, s[start..i].to_owned()));
        } else if c.is_ascii_digit() {
            // a number or a duration (5m, 1e3): not an identifier
            while i < bytes.len() && (bytes[i] as char).is_ascii_alphanumeric() {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The metric names a query selects: `genq_*` identifiers, and `up`.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    tokens(expr)
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| t.starts_with("genq_") || t == "up")
        .collect()
}

/// Selectors `name{label op "value", ...}`: for each metric name, the label names
/// its matchers use.
pub fn selector_labels(expr: &str) -> BTreeMap<String, BTreeSet<String>> {
    let s = strip_strings(expr);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (at, name) in tokens(expr) {
        if !(name.starts_with("genq_") || name == "up") {
            continue;
        }
        let rest = s[at + name.len()..].trim_start();
        let entry = out.entry(name.clone()).or_default();
        if let Some(inner) = rest.strip_prefix('{') {
            let inner = &inner[..inner.find('}').expect("closing brace")];
            for matcher in inner.split(',').filter(|m| !m.trim().is_empty()) {
                let label: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                entry.insert(label);
            }
        }
    }
    out
}

/// Label names in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`,
/// `group_left (...)` and `group_right (...)` clauses.
pub fn grouping_labels(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let s = strip_strings(expr);
    let mut out = BTreeSet::new();
    for (at, tok) in tokens(expr) {
        if !KEYWORDS.contains(&tok.as_str()) {
            continue;
        }
        let rest = s[at + tok.len()..].trim_start();
        if let Some(inner) = rest.strip_prefix('(') {
            let inner = &inner[..inner.find(')').expect("closing parenthesis")];
            out.extend(
                inner
                    .split(',')
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty()),
            );
        }
    }
    out
}

/// `KEY=value` lines of an env file (comments and blank lines skipped).
pub fn env_file(rel: &str) -> BTreeMap<String, String> {
    read(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Every `[[bin]] name` of the Cargo.toml files under `bin/`.
pub fn workspace_binaries() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join("bin")).expect("bin/") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        for bin in doc
            .get("bin")
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(name) = bin.get("name").and_then(|n| n.as_str()) {
                out.insert(name.to_owned());
            }
        }
    }
    out
}
