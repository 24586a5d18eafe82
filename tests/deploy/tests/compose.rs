//! docker/docker-compose.yml, the Dockerfile and the systemd units, read as data and
//! checked against the repository: binaries that exist, queues the configuration
//! routes to, env files and mounted files that exist, valid ports, dependencies on
//! services that exist (and are health-checked when waited for), and stop timeouts
//! longer than the grace a worker is given, itself at least its longest job.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use common::{env_file, read, repo, workspace_binaries, yaml};
use serde_yaml_ng::Value;

const COMPOSE: &str = "docker/docker-compose.yml";
/// The worker's default `--grace-secs`.
const DEFAULT_GRACE_SECS: u64 = 30;

fn services(doc: &Value) -> BTreeMap<String, Value> {
    doc["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name").to_owned(), v.clone()))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("not a string: {other:?}"),
            })
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Null => Vec::new(),
        other => panic!("not a list: {other:?}"),
    }
}

/// Is the service run from genq's own image?
fn is_genq(svc: &Value) -> bool {
    svc["build"]["dockerfile"].as_str() == Some("docker/Dockerfile")
        || svc["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("genq:"))
}

/// `(path, required)` of the service's env files, relative to docker/.
fn env_files(svc: &Value) -> Vec<(String, bool)> {
    match &svc["env_file"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![(s.clone(), true)],
        Value::Sequence(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => (s.clone(), true),
                m => (
                    m["path"].as_str().expect("env_file path").to_owned(),
                    m["required"].as_bool().unwrap_or(true),
                ),
            })
            .collect(),
        other => panic!("env_file: {other:?}"),
    }
}

/// The environment a genq service sees from its required env files and
/// `environment:` (which wins, as in compose). Optional files are the operator's.
fn environment(svc: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (path, required) in env_files(svc) {
        if required {
            env.extend(env_file(&format!("docker/{path}")));
        }
    }
    match &svc["environment"] {
        Value::Mapping(m) => {
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => String::new(),
                };
                env.insert(k.as_str().expect("variable").to_owned(), v);
            }
        }
        Value::Sequence(items) => {
            for i in items {
                let (k, v) = i.as_str().expect("KEY=value").split_once('=').expect("=");
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        Value::Null => {}
        other => panic!("environment: {other:?}"),
    }
    env
}

/// The value of `--flag VALUE` or `--flag=VALUE` in a command.
fn flag(command: &[String], name: &str) -> Option<String> {
    command.iter().enumerate().find_map(|(i, a)| {
        if a == name {
            command.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{name}=")).map(str::to_owned)
        }
    })
}

/// A compose duration: `90s`, `16m40s`, `1h`, `1m30s`, `500ms`.
fn parse_duration(s: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().unwrap_or_else(|_| panic!("duration '{s}'"));
        num.clear();
        let secs = match unit.as_str() {
            "ms" => v / 1000.0,
            "s" => v,
            "m" => v * 60.0,
            "h" => v * 3600.0,
            other => panic!("duration '{s}': unit {other}"),
        };
        total += Duration::from_secs_f64(secs);
    }
    assert!(num.is_empty(), "duration '{s}' needs a unit");
    total
}

/// Queues the configuration routes job types to (config/genq.example.toml).
fn configured_queues() -> BTreeSet<String> {
    let doc: toml::Table = toml::from_str(&read("config/genq.example.toml")).expect("config");
    doc["jobs"]
        .as_table()
        .expect("jobs")
        .values()
        .filter_map(|j| j.get("queue").and_then(|q| q.as_str()).map(str::to_owned))
        .collect()
}

/// The binaries the Dockerfile builds (`--bin NAME`).
fn image_binaries() -> BTreeSet<String> {
    let dockerfile = read("docker/Dockerfile");
    let words: Vec<&str> = dockerfile.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_owned())
        .collect()
}

#[test]
fn parse_duration_reads_compose_durations() {
    assert_eq!(parse_duration("90s"), Duration::from_secs(90));
    assert_eq!(parse_duration("16m40s"), Duration::from_secs(1000));
    assert_eq!(parse_duration("1h"), Duration::from_secs(3600));
    assert_eq!(parse_duration("500ms"), Duration::from_millis(500));
}

#[test]
fn every_service_has_an_image_and_valid_health_checks() {
    let doc = yaml(COMPOSE);
    for (name, svc) in services(&doc) {
        assert!(
            svc["image"].as_str().is_some() || !svc["build"].is_null(),
            "service {name}: neither image nor build"
        );
        if let Some(build) = svc["build"].as_mapping() {
            let context = build.get("context").and_then(Value::as_str).unwrap_or(".");
            let dockerfile = build
                .get("dockerfile")
                .and_then(Value::as_str)
                .unwrap_or("Dockerfile");
            let path = repo().join("docker").join(context).join(dockerfile);
            assert!(path.is_file(), "service {name}: no {}", path.display());
        }
        if svc["healthcheck"].is_null() || svc["healthcheck"]["disable"].as_bool() == Some(true) {
            continue;
        }
        let test = strings(&svc["healthcheck"]["test"]);
        let valid = if svc["healthcheck"]["test"].is_string() {
            !test.is_empty()
        } else {
            test.len() >= 2 && ["CMD", "CMD-SHELL"].contains(&test[0].as_str())
        };
        assert!(valid, "service {name}: healthcheck.test is {test:?}");
        for key in ["interval", "timeout", "start_period"] {
            if let Some(d) = svc["healthcheck"][key].as_str() {
                assert!(parse_duration(d) > Duration::ZERO, "{name}: {key}");
            }
        }
    }
}

#[test]
fn genq_services_run_binaries_the_workspace_builds_into_the_image() {
    let doc = yaml(COMPOSE);
    let binaries = workspace_binaries();
    let built = image_binaries();
    for bin in ["worker", "genq", "admin", "bot", "fake-provider"] {
        assert!(
            binaries.contains(bin),
            "no [[bin]] {bin} under bin/: {binaries:?}"
        );
        assert!(
            built.contains(bin),
            "docker/Dockerfile does not build {bin}"
        );
    }
    for bin in &built {
        assert!(
            binaries.contains(bin),
            "the Dockerfile builds unknown binary {bin}"
        );
    }
    let mut genq_services = 0;
    for (name, svc) in services(&doc) {
        if !is_genq(&svc) {
            continue;
        }
        genq_services += 1;
        let command = strings(&svc["command"]);
        let bin = command
            .first()
            .unwrap_or_else(|| panic!("{name}: no command"));
        assert!(
            built.contains(bin),
            "service {name} runs '{bin}', which the image does not have ({built:?})"
        );
    }
    assert!(
        genq_services >= 7,
        "admin, relay, settler, bot, fake-provider and workers"
    );
}

#[test]
fn workers_serve_configured_queues_and_every_queue_has_a_worker() {
    let doc = yaml(COMPOSE);
    let mut known = configured_queues();
    assert_eq!(
        known,
        ["img", "maintenance", "text", "video"]
            .map(str::to_owned)
            .into()
    );
    let mut served = BTreeSet::new();
    let mut routes = None;
    for (name, svc) in services(&doc) {
        let command = strings(&svc["command"]);
        if command.first().map(String::as_str) != Some("worker") {
            continue;
        }
        let env = environment(&svc);
        routes = env.get("GENQ_ROUTES").cloned();
        // queues a route moves a job type to are served too
        for route in routes.iter().flat_map(|r| r.split(',')) {
            if let Some((_, q)) = route.split_once('=') {
                known.insert(q.trim().to_owned());
            }
        }
        let queues = flag(&command, "--queues")
            .or_else(|| env.get("GENQ_QUEUES").cloned())
            .unwrap_or_else(|| panic!("worker service {name} names no --queues"));
        for q in queues.split(',').map(str::trim) {
            assert!(
                known.contains(q),
                "worker service {name} serves '{q}', which no job type is routed to ({known:?})"
            );
            served.insert(q.to_owned());
        }
        assert!(
            name.starts_with("worker-"),
            "worker service {name}: prometheus.yml finds workers by their worker-* names"
        );
        assert!(
            svc["container_name"].is_null(),
            "worker service {name} has a container_name: it cannot be scaled"
        );
        assert!(
            svc["ports"].is_null(),
            "worker service {name} publishes host ports: it cannot be scaled"
        );
    }
    for q in &known {
        assert!(
            served.contains(q),
            "no worker service serves queue '{q}' (routes {routes:?})"
        );
    }
    // prometheus.yml scrapes each worker service
    let prom = read("monitoring/prometheus.yml");
    for (name, svc) in services(&doc) {
        if strings(&svc["command"]).first().map(String::as_str) == Some("worker") {
            assert!(
                prom.contains(&format!("\"{name}\"")),
                "prometheus.yml does not scrape {name}"
            );
        }
    }
}

#[test]
fn env_files_exist_and_point_at_the_compose_services() {
    let doc = yaml(COMPOSE);
    let services = services(&doc);
    let mut seen_admin = false;
    for (name, svc) in &services {
        for (path, required) in env_files(svc) {
            let full = repo().join("docker").join(&path);
            if required {
                assert!(full.is_file(), "service {name}: env file {path} is missing");
            } else {
                // the operator's own file: never committed
                assert!(
                    read(".gitignore")
                        .lines()
                        .any(|l| l.trim() == format!("docker/{path}")),
                    "service {name}: optional env file docker/{path} is not in .gitignore"
                );
            }
        }
        if !is_genq(svc) {
            continue;
        }
        let env = environment(svc);
        // URLs name services of this file
        for (key, value) in &env {
            let Some((_, rest)) = value.split_once("://") else {
                continue;
            };
            let authority = rest.split('/').next().unwrap_or("");
            let host_port = authority.rsplit('@').next().unwrap_or("");
            let host = host_port.split(':').next().unwrap_or("");
            assert!(
                services.contains_key(host),
                "service {name}: {key}={value} names host '{host}', not a service"
            );
        }
        assert_eq!(
            env.get("GENQ_CONFIG").map(String::as_str),
            Some("/etc/genq/genq.toml"),
            "{name}"
        );
        if strings(&svc["command"]).first().map(String::as_str) == Some("admin") {
            seen_admin = true;
            // the token is the operator's: read from the optional env file
            assert!(
                env_files(svc).iter().any(|(_, required)| !required),
                "the admin reads GENQ_ADMIN_TOKEN from the operator's env file"
            );
        }
    }
    assert!(seen_admin, "an admin service");
    // the Dockerfile puts the configuration where GENQ_CONFIG says
    assert!(read("docker/Dockerfile").contains("config/genq.example.toml /etc/genq/genq.toml"));
    // every setting of the repository's .env.example is in docker/genq.env.example,
    // except those each service sets itself
    let example = read("docker/genq.env.example");
    for key in env_file(".env.example").keys() {
        if ["GENQ_QUEUES", "GENQ_GRACE_SECS"].contains(&key.as_str()) {
            continue;
        }
        assert!(
            example.contains(&format!("{key}=")),
            "docker/genq.env.example lacks {key} (in .env.example)"
        );
    }
    assert!(example.contains("GENQ_ADMIN_TOKEN"));
    // secrets are the operator's: documented, never filled in
    for file in [".env.example", "docker/genq.env.example"] {
        let env = env_file(file);
        assert_eq!(
            env.get("GENQ_BOT_TOKEN").map(String::as_str),
            Some(""),
            "{file}: GENQ_BOT_TOKEN is listed, empty"
        );
        assert!(!env.contains_key("GENQ_ADMIN_TOKEN"), "{file}");
    }
}

#[test]
fn mounted_files_exist_and_named_volumes_are_declared() {
    let doc = yaml(COMPOSE);
    let declared: BTreeSet<String> = doc["volumes"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut binds = 0;
    for (name, svc) in services(&doc) {
        for volume in strings(&svc["volumes"]) {
            let mut parts = volume.split(':');
            let source = parts.next().unwrap_or("");
            let target = parts
                .next()
                .unwrap_or_else(|| panic!("{name}: volume {volume}"));
            assert!(target.starts_with('/'), "{name}: volume {volume}");
            if source.starts_with('.') {
                let path = repo().join("docker").join(source);
                assert!(path.exists(), "service {name}: {source} does not exist");
                binds += 1;
            } else if source.starts_with('/') {
                panic!("service {name}: absolute host path {source} (not portable)");
            } else {
                assert!(
                    declared.contains(source),
                    "service {name}: volume {source} is not declared under volumes:"
                );
            }
        }
    }
    assert!(
        binds >= 4,
        "prometheus config, alerts, grafana provisioning and dashboards"
    );
    // Prometheus loads the rule file it is given next to its config
    let prom = yaml("monitoring/prometheus.yml");
    let rules = strings(&prom["rule_files"]);
    assert_eq!(rules, ["alerts.yml"]);
    let compose = read(COMPOSE);
    assert!(compose.contains("../monitoring/alerts.yml:/etc/prometheus/alerts.yml"));
    assert!(compose.contains("../monitoring/prometheus.yml:/etc/prometheus/prometheus.yml"));
    assert!(compose.contains("../monitoring/grafana/dashboards:/var/lib/grafana/dashboards"));
}

#[test]
fn published_ports_are_valid() {
    let doc = yaml(COMPOSE);
    let mut host_ports = BTreeSet::new();
    for (name, svc) in services(&doc) {
        for spec in strings(&svc["ports"]) {
            let spec = spec.split('/').next().unwrap_or("");
            let parts: Vec<&str> = spec.split(':').collect();
            let (ip, host, container) = match parts.as_slice() {
                [c] => (None, None, *c),
                [h, c] => (None, Some(*h), *c),
                [ip, h, c] => (Some(*ip), Some(*h), *c),
                _ => panic!("service {name}: port '{spec}'"),
            };
            let port = |p: &str| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .unwrap_or_else(|| panic!("service {name}: port '{p}' in '{spec}'"))
            };
            port(container);
            if let Some(h) = host {
                assert!(host_ports.insert(port(h)), "host port {h} published twice");
            }
            if let Some(ip) = ip {
                ip.parse::<std::net::IpAddr>()
                    .unwrap_or_else(|_| panic!("service {name}: address '{ip}'"));
            }
        }
    }
    assert!(host_ports.contains(&9090), "the admin on 9090");
}

#[test]
fn dependencies_name_services_and_health_checked_ones_have_checks() {
    let doc = yaml(COMPOSE);
    let services = services(&doc);
    for (name, svc) in &services {
        let deps: Vec<(String, String)> = match &svc["depends_on"] {
            Value::Null => Vec::new(),
            Value::Sequence(_) => strings(&svc["depends_on"])
                .into_iter()
                .map(|d| (d, "service_started".to_owned()))
                .collect(),
            Value::Mapping(m) => m
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().expect("name").to_owned(),
                        v["condition"]
                            .as_str()
                            .unwrap_or("service_started")
                            .to_owned(),
                    )
                })
                .collect(),
            other => panic!("{name}: depends_on {other:?}"),
        };
        for (dep, condition) in deps {
            let target = services
                .get(&dep)
                .unwrap_or_else(|| panic!("service {name} depends on unknown service {dep}"));
            assert_ne!(&dep, name, "{name} depends on itself");
            match condition.as_str() {
                "service_started" | "service_completed_successfully" => {}
                "service_healthy" => assert!(
                    !target["healthcheck"].is_null(),
                    "{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                ),
                other => panic!("{name}: depends_on {dep}: condition {other}"),
            }
        }
    }
    // the databases are waited for, not just started
    for svc in ["admin", "relay", "settler", "worker-video", "bot"] {
        assert_eq!(
            services[svc]["depends_on"]["redis"]["condition"].as_str(),
            Some("service_healthy"),
            "{svc}"
        );
    }
}

/// The port of an `ADDR:PORT` setting.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("address '{addr}'"))
}

#[test]
fn one_bot_service_with_its_token_health_check_and_scrape_target() {
    let doc = yaml(COMPOSE);
    let bots: Vec<(String, Value)> = services(&doc)
        .into_iter()
        .filter(|(_, svc)| strings(&svc["command"]).first().map(String::as_str) == Some("bot"))
        .collect();
    assert_eq!(bots.len(), 1, "exactly one service runs the bot");
    let (name, svc) = &bots[0];
    assert_eq!(name, "bot");
    assert!(is_genq(svc), "the bot runs from genq's image");
    // one replica long-polls Telegram: nothing that makes several
    for key in ["scale", "deploy"] {
        assert!(svc[key].is_null(), "bot: `{key}` (one replica only)");
    }
    assert!(svc["ports"].is_null(), "bot: long polling needs no port");
    let text = read(COMPOSE);
    assert!(
        text.contains("ONE replica") && text.contains("webhook"),
        "the compose file says why the bot has one replica"
    );
    assert!(
        !text.contains("added with the Telegram bot issue"),
        "a leftover placeholder"
    );
    // the token: the operator's env file, after the example's empty one
    let env = environment(svc);
    assert_eq!(env.get("GENQ_BOT_TOKEN").map(String::as_str), Some(""));
    assert!(
        env_files(svc).iter().any(|(_, required)| !required),
        "the bot reads GENQ_BOT_TOKEN from the operator's env file"
    );
    // the health check and the scrape target are on its metrics address
    let port = port_of(
        env.get("GENQ_BOT_METRICS_ADDR")
            .map_or("0.0.0.0:9101", String::as_str),
    );
    assert_eq!(port, 9101, "GENQ_BOT_METRICS_ADDR's default");
    let test = strings(&svc["healthcheck"]["test"]).join(" ");
    assert!(
        test.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "bot: healthcheck {test}"
    );
    let prom = yaml("monitoring/prometheus.yml");
    let job = prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|c| c["job_name"].as_str() == Some("bot"))
        .expect("prometheus.yml scrapes the bot");
    assert_eq!(
        strings(&job["static_configs"][0]["targets"]),
        [format!("{name}:{port}")]
    );
    // Redis and PostgreSQL are up before it starts
    for dep in ["redis", "postgres"] {
        assert_eq!(
            svc["depends_on"][dep]["condition"].as_str(),
            Some("service_healthy"),
            "bot: {dep}"
        );
    }
    // its delivery worker gets 10 s to finish running deliveries after SIGTERM
    let stop = svc["stop_grace_period"]
        .as_str()
        .map_or(Duration::from_secs(10), parse_duration);
    assert!(
        stop > Duration::from_secs(10),
        "bot: stop_grace_period {stop:?}"
    );
    // it shares the artifacts (users' photos) with the workers
    assert!(
        strings(&svc["volumes"])
            .iter()
            .any(|v| v.starts_with("artifacts:")),
        "bot: the artifacts volume"
    );
}

/// The longest timeout of the job types each queue runs, from the catalog built
/// from config/genq.example.toml with `routes` applied (the probe, whose sleep the
/// operator chooses, aside).
async fn longest_job_per_queue(routes: Option<&str>) -> BTreeMap<String, Duration> {
    let mut cfg = genq_config::Config::parse(
        include_str!("../../../config/genq.example.toml"),
        "config/genq.example.toml",
    )
    .expect("example config");
    let dir = std::env::temp_dir().join(genq_testkit::unique_prefix("compose-catalog"));
    cfg.artifacts.dir = dir.join("artifacts");
    cfg.validate().expect("valid config");
    let url = genq_testkit::redis_url();
    let prefix = genq_testkit::unique_prefix("compose-catalog");
    let queue =
        genq_redis::RedisQueue::connect(genq_redis::RedisConfig::with_url(&url).prefix(&prefix))
            .await
            .expect("Redis (scripts/services.sh starts it)");
    let build = genq_catalog::registry_builder(cfg, routes.map(str::to_owned));
    let registry = Arc::new(build(&queue, &prometheus::Registry::new()).expect("catalog"));
    let mut out: BTreeMap<String, Duration> = BTreeMap::new();
    for job_type in registry.job_types() {
        if job_type == "probe" {
            continue;
        }
        let q = registry.queue_of(job_type).expect("queue").to_owned();
        let timeout = registry.get(job_type).expect("job").timeout();
        let e = out.entry(q).or_default();
        *e = (*e).max(timeout);
    }
    genq_testkit::cleanup_prefix(&url, &prefix).await;
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[tokio::test]
async fn compose_workers_finish_their_longest_job_before_docker_kills_them() {
    let doc = yaml(COMPOSE);
    let mut checked = 0;
    for (name, svc) in services(&doc) {
        let command = strings(&svc["command"]);
        if command.first().map(String::as_str) != Some("worker") {
            continue;
        }
        let env = environment(&svc);
        let longest = longest_job_per_queue(env.get("GENQ_ROUTES").map(String::as_str)).await;
        let grace = flag(&command, "--grace-secs")
            .or_else(|| env.get("GENQ_GRACE_SECS").cloned())
            .map_or(DEFAULT_GRACE_SECS, |g| g.parse().expect("grace secs"));
        let stop = svc["stop_grace_period"]
            .as_str()
            .map_or(Duration::from_secs(10), parse_duration);
        assert!(
            stop > Duration::from_secs(grace),
            "{name}: stop_grace_period {stop:?} is not longer than GENQ_GRACE_SECS {grace}: \
             Docker would SIGKILL running jobs"
        );
        let queues = flag(&command, "--queues").expect("--queues");
        for q in queues.split(',') {
            let job = longest.get(q).copied().unwrap_or_default();
            assert!(
                Duration::from_secs(grace) >= job,
                "{name}: GENQ_GRACE_SECS {grace} is shorter than queue {q}'s longest job ({job:?})"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 4);
}

/// `[Section]` → key → values, of a systemd unit file.
fn unit(rel: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in read(rel).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{rel}: line '{line}'"));
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    out
}

fn one<'a>(u: &'a BTreeMap<String, BTreeMap<String, Vec<String>>>, s: &str, k: &str) -> &'a str {
    u.get(s)
        .and_then(|s| s.get(k))
        .and_then(|v| v.last())
        .map_or("", String::as_str)
}

#[tokio::test]
async fn the_systemd_worker_unit_waits_longer_than_its_grace_and_the_grace_covers_every_job() {
    let u = unit("docker/systemd/worker@.service");
    assert_eq!(
        one(&u, "Service", "ExecStart"),
        "/usr/local/bin/worker --queues %i"
    );
    assert_eq!(one(&u, "Service", "EnvironmentFile"), "/etc/genq/genq.env");
    assert_eq!(one(&u, "Service", "Restart"), "always");
    assert_eq!(one(&u, "Service", "RestartSec"), "2");
    assert_eq!(one(&u, "Service", "KillSignal"), "SIGTERM");
    let grace: u64 = u["Service"]["Environment"]
        .iter()
        .find_map(|e| e.trim_matches('"').strip_prefix("GENQ_GRACE_SECS="))
        .expect("Environment=GENQ_GRACE_SECS=")
        .parse()
        .expect("a number");
    let stop: u64 = one(&u, "Service", "TimeoutStopSec")
        .parse()
        .expect("seconds");
    assert!(
        stop > grace,
        "TimeoutStopSec={stop} must be longer than GENQ_GRACE_SECS={grace}"
    );
    // an instance may serve any queue: the grace covers every job type
    let longest = longest_job_per_queue(None)
        .await
        .into_values()
        .max()
        .expect("job types");
    assert!(
        Duration::from_secs(grace) >= longest,
        "GENQ_GRACE_SECS={grace} is shorter than the longest job ({longest:?})"
    );
    let user = one(&u, "Service", "User");
    assert!(!user.is_empty() && user != "root", "a dedicated user");
    assert_eq!(one(&u, "Install", "WantedBy"), "genq.target");
}

#[test]
fn the_systemd_units_run_workspace_binaries_and_belong_to_the_target() {
    let binaries = workspace_binaries();
    let dir = repo().join("docker/systemd");
    let mut units = 0;
    for entry in std::fs::read_dir(&dir).expect("docker/systemd") {
        let path = entry.expect("entry").path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let rel = format!("docker/systemd/{file}");
        let u = unit(&rel);
        assert!(!one(&u, "Unit", "Description").is_empty(), "{file}");
        if file.ends_with(".target") {
            assert_eq!(one(&u, "Install", "WantedBy"), "multi-user.target");
            continue;
        }
        units += 1;
        let exec = one(&u, "Service", "ExecStart");
        let bin = exec
            .split_whitespace()
            .next()
            .and_then(|p| p.strip_prefix("/usr/local/bin/"))
            .unwrap_or_else(|| panic!("{file}: ExecStart={exec} outside /usr/local/bin"));
        assert!(
            binaries.contains(bin),
            "{file}: no workspace binary '{bin}'"
        );
        assert_eq!(
            one(&u, "Service", "EnvironmentFile"),
            "/etc/genq/genq.env",
            "{file}"
        );
        assert_eq!(one(&u, "Service", "Restart"), "always", "{file}");
        assert_eq!(one(&u, "Unit", "PartOf"), "genq.target", "{file}");
        assert_eq!(one(&u, "Install", "WantedBy"), "genq.target", "{file}");
        let user = one(&u, "Service", "User");
        assert!(
            !user.is_empty() && user != "root",
            "{file}: a dedicated user"
        );
        let stop: u64 = one(&u, "Service", "TimeoutStopSec")
            .parse()
            .expect("seconds");
        assert!(stop > 0, "{file}");
    }
    assert!(units >= 4, "worker@, genq@, genq-admin and genq-bot");
    assert!(dir.join("genq-admin.service").is_file());
    assert!(dir.join("genq.target").is_file());
}

#[test]
fn the_systemd_bot_unit_runs_the_bot_and_outlasts_its_delivery_grace() {
    let u = unit("docker/systemd/genq-bot.service");
    assert_eq!(one(&u, "Service", "ExecStart"), "/usr/local/bin/bot");
    assert_eq!(one(&u, "Service", "KillSignal"), "SIGTERM");
    let stop: u64 = one(&u, "Service", "TimeoutStopSec")
        .parse()
        .expect("seconds");
    assert!(
        stop > 10,
        "TimeoutStopSec={stop}: the delivery worker's grace is 10 s"
    );
    assert!(
        one(&u, "Unit", "After").contains("redis")
            && one(&u, "Unit", "After").contains("postgresql"),
        "after Redis and PostgreSQL"
    );
    assert!(
        read("docker/systemd/genq-bot.service").contains("ONE host"),
        "the unit says it runs on one host (long polling)"
    );
}
