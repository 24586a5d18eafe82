//! The Prometheus files checked by Prometheus's own tool: the config and the alert
//! rules parse (`promtool check`), the alerts fire when and only when their unit
//! tests say (`promtool test rules`), and every dashboard query is valid PromQL.
//! Plus the conventions of the alerts and the Grafana files.
//!
//! promtool comes from Debian's `prometheus` package: `scripts/services.sh` (run by
//! `./test.sh`) installs it.

mod common;

use std::{path::PathBuf, process::Command};

use common::{alert_queries, dashboard, dashboard_queries, read, repo, yaml};

/// Runs `promtool ARGS` in `dir`; panics with its output unless it succeeds.
fn promtool(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): run scripts/services.sh, which installs \
                 Debian's `prometheus` package"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

/// A directory of the test's own under the system's temporary directory.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(genq_testkit::unique_prefix(test));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn promtool_accepts_the_prometheus_config_and_its_rule_files() {
    let out = promtool(
        &repo().join("monitoring"),
        &["check", "config", "prometheus.yml"],
    );
    assert!(out.contains("1 rule files found"), "{out}");
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let out = promtool(
        &repo().join("monitoring"),
        &["check", "rules", "alerts.yml"],
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_alerts_fire_when_their_unit_tests_expect() {
    // promtool compares annotations verbatim: test the rules without them (their
    // templates are checked by `promtool check rules` above).
    let mut rules = yaml("monitoring/alerts.yml");
    for group in rules["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            rule.as_mapping_mut().expect("rule").remove("annotations");
        }
    }
    let dir = temp_dir("alerts-unit");
    std::fs::write(
        dir.join("alerts.yml"),
        serde_yaml_ng::to_string(&rules).expect("yaml"),
    )
    .expect("write rules");
    std::fs::write(
        dir.join("alerts_test.yml"),
        read("tests/deploy/alerts_test.yml"),
    )
    .expect("write tests");
    promtool(&dir, &["test", "rules", "alerts_test.yml"]);
    let _ = std::fs::remove_dir_all(&dir);

    // every alert has a unit test
    let tested = read("tests/deploy/alerts_test.yml");
    for q in alert_queries() {
        let name = q.origin.trim_start_matches("alerts.yml ");
        assert!(
            tested.contains(&format!("alertname: {name}")),
            "alert {name} has no test in tests/deploy/alerts_test.yml"
        );
    }
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    // promtool parses the queries of recording rules: make one per dashboard query.
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{queries:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&q.expr).expect("quote")
        ));
    }
    let dir = temp_dir("dashboard-promql");
    std::fs::write(dir.join("dashboard.yml"), &rules).expect("write");
    let out = promtool(&dir, &["check", "rules", "dashboard.yml"]);
    assert!(
        out.contains(&format!("{} rules found", queries.len())),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_alert_has_a_wait_a_severity_a_summary_and_a_description() {
    let doc = yaml("monitoring/alerts.yml");
    let mut names = std::collections::BTreeSet::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("an alerting rule");
            assert!(names.insert(name.to_owned()), "alert {name} twice");
            assert!(
                rule["for"].as_str().is_some(),
                "{name}: no `for:` (how long the condition must hold)"
            );
            let severity = rule["labels"]["severity"].as_str();
            assert!(
                matches!(severity, Some("warning" | "page")),
                "{name}: labels.severity is {severity:?}, not warning or page"
            );
            for key in ["summary", "description"] {
                let text = rule["annotations"][key].as_str().unwrap_or("");
                assert!(text.trim().len() > 10, "{name}: no annotations.{key}");
            }
        }
    }
    // billing errors page
    let billing = doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .find(|r| {
            r["expr"]
                .as_str()
                .is_some_and(|e| e.contains(r#"outcome="billing""#))
        })
        .expect("a billing alert");
    assert_eq!(billing["labels"]["severity"].as_str(), Some("page"));
}

#[test]
fn the_dashboard_uses_the_provisioned_datasource_and_is_laid_out() {
    let datasource = yaml("monitoring/grafana/provisioning/datasources/prometheus.yml");
    let ds = &datasource["datasources"][0];
    assert_eq!(ds["type"].as_str(), Some("prometheus"));
    assert_eq!(ds["uid"].as_str(), Some("prometheus"));
    assert_eq!(ds["url"].as_str(), Some("http://prometheus:9090"));

    let provider = yaml("monitoring/grafana/provisioning/dashboards/genq.yml");
    let provider = &provider["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert_eq!(
        provider["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );

    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "{}",
        d["schemaVersion"]
    );
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(
        !read("monitoring/grafana/dashboards/genq.json").contains("${DS_"),
        "the dashboard must not need an import-time datasource variable"
    );
    let mut ids = std::collections::BTreeSet::new();
    let mut rows = 0;
    let mut cells = std::collections::BTreeMap::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().expect("title");
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "panel id twice: {title}"
        );
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_u64().unwrap(), pos["w"].as_u64().unwrap());
        let (y, h) = (pos["y"].as_u64().unwrap(), pos["h"].as_u64().unwrap());
        assert!(x + w <= 24, "panel '{title}' is wider than the grid");
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title) {
                    panic!("panels '{title}' and '{other}' overlap");
                }
            }
        }
        if p["type"] == "row" {
            rows += 1;
            continue;
        }
        assert!(pos["h"].as_u64().is_some_and(|h| h > 0), "{title}");
        assert_eq!(
            p["datasource"],
            serde_json::json!({"type": "prometheus", "uid": "prometheus"}),
            "panel '{title}'"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel '{title}' has no query");
        let mut refs = std::collections::BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().expect("refId")), "{title}");
            assert_eq!(t["datasource"]["uid"], "prometheus", "{title}");
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
        }
    }
    assert!(rows >= 3, "panels grouped in rows");
}
