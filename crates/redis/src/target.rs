//! [`RedisTarget`]: what `--redis` / `GENQ_REDIS_URL` names — one server, a
//! Sentinel-managed primary, or a Redis Cluster.
//!
//! - `redis://[user:password@]host:port/[db]` (and `rediss://`, `unix://`): one server;
//! - `redis+sentinel://[user:password@]host1:port1,host2:port2/<master name>[/db]`:
//!   the sentinels to ask for the current primary of `<master name>`; the password
//!   is the primary's (sentinels are asked without one);
//! - `redis+cluster://[user:password@]host1:port1,host2:port2`: seed nodes of a
//!   Redis Cluster (the rest are discovered).

use crate::error::QueueError;

/// The default port of a sentinel when an address names none.
const SENTINEL_PORT: u16 = 26379;
/// The default port of a Redis node when an address names none.
const REDIS_PORT: u16 = 6379;

/// Credentials for the Redis servers holding the data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Where genq's data lives, parsed from a URL (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (`redis://…`), as the `redis` crate parses it.
    Single(String),
    /// The primary the sentinels name for `master`.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        db: i64,
        credentials: Credentials,
    },
    /// A Redis Cluster reached through these seed nodes.
    Cluster {
        nodes: Vec<(String, u16)>,
        credentials: Credentials,
    },
}

fn bad(url: &str, problem: impl std::fmt::Display) -> QueueError {
    QueueError::Config(format!("redis URL '{}': {problem}", redact(url)))
}

/// The URL with any password replaced by `***` (for error messages and logs).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Some((userinfo, hosts)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    let sep = if path.is_empty() && !rest.contains('/') {
        ""
    } else {
        "/"
    };
    format!("{scheme}://{user}:***@{hosts}{sep}{path}")
}

impl RedisTarget {
    /// Parses a URL; the error names what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, QueueError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return Self::parse_sentinel(url, rest);
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            return Self::parse_cluster(url, rest);
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")
        {
            redis::Client::open(url).map_err(|e| bad(url, e))?;
            return Ok(Self::Single(url.to_owned()));
        }
        Err(bad(
            url,
            "unknown scheme (expected redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://)",
        ))
    }

    fn parse_sentinel(url: &str, rest: &str) -> Result<Self, QueueError> {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, hosts) = split_credentials(authority);
        let sentinels = parse_hosts(url, hosts, SENTINEL_PORT)?;
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let master = parts
            .next()
            .ok_or_else(|| {
                bad(
                    url,
                    "no master name (redis+sentinel://host:port,…/<master name>)",
                )
            })?
            .to_owned();
        let db = match parts.next() {
            None => 0,
            Some(db) => db
                .parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or_else(|| bad(url, format!("database '{db}' is not a number")))?,
        };
        if let Some(extra) = parts.next() {
            return Err(bad(
                url,
                format!("unexpected '/{extra}' after the database"),
            ));
        }
        Ok(Self::Sentinel {
            sentinels,
            master,
            db,
            credentials,
        })
    }

    fn parse_cluster(url: &str, rest: &str) -> Result<Self, QueueError> {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() && path != "0" {
            return Err(bad(
                url,
                format!("a cluster has only database 0 (got '/{path}')"),
            ));
        }
        let (credentials, hosts) = split_credentials(authority);
        let nodes = parse_hosts(url, hosts, REDIS_PORT)?;
        Ok(Self::Cluster { nodes, credentials })
    }

    /// Short name of the kind, for logs: `single`, `sentinel`, `cluster`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Single(_) => "single",
            Self::Sentinel { .. } => "sentinel",
            Self::Cluster { .. } => "cluster",
        }
    }
}

/// `user:password@hosts` → the credentials (percent-decoded) and the hosts.
fn split_credentials(authority: &str) -> (Credentials, &str) {
    let Some((userinfo, hosts)) = authority.rsplit_once('@') else {
        return (Credentials::default(), authority);
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let nonempty = |s: &str| (!s.is_empty()).then(|| percent_decode(s));
    (
        Credentials {
            username: nonempty(user),
            password: password.and_then(nonempty),
        },
        hosts,
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host1:port1,host2` → addresses (a missing port is `default_port`).
fn parse_hosts(
    url: &str,
    hosts: &str,
    default_port: u16,
) -> Result<Vec<(String, u16)>, QueueError> {
    let mut out = Vec::new();
    for host in hosts.split(',').map(str::trim) {
        if host.is_empty() {
            return Err(bad(url, "an empty address in the host list"));
        }
        let (name, port) = split_host_port(host);
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(url, format!("port '{p}' of '{host}' is not a port")))?,
        };
        if name.is_empty() {
            return Err(bad(url, format!("address '{host}' has no host")));
        }
        out.push((name.to_owned(), port));
    }
    Ok(out)
}

/// `host:port`, `[v6]:port`, `host` → host and the port's text, if any.
fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if let Some(v6) = host.strip_prefix('[')
        && let Some((name, after)) = v6.split_once(']')
    {
        return (name, after.strip_prefix(':'));
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_database() {
        let t = RedisTarget::parse("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/mymaster/2")
            .expect("valid");
        assert_eq!(
            t,
            RedisTarget::Sentinel {
                sentinels: vec![("10.0.0.1".into(), 26379), ("10.0.0.2".into(), 26379)],
                master: "mymaster".into(),
                db: 2,
                credentials: Credentials {
                    username: None,
                    password: Some("s3cret".into())
                },
            }
        );
        let t = RedisTarget::parse("redis+sentinel://h:1/m").expect("valid");
        assert!(matches!(t, RedisTarget::Sentinel { db: 0, .. }));
    }

    #[test]
    fn cluster_urls_list_seed_nodes() {
        let t = RedisTarget::parse("redis+cluster://u:p%40ss@a:7000,b:7001,c").expect("valid");
        assert_eq!(
            t,
            RedisTarget::Cluster {
                nodes: vec![("a".into(), 7000), ("b".into(), 7001), ("c".into(), 6379)],
                credentials: Credentials {
                    username: Some("u".into()),
                    password: Some("p@ss".into())
                },
            }
        );
        assert_eq!(t.kind(), "cluster");
    }

    #[test]
    fn bad_urls_are_refused_with_the_problem_named() {
        let err = |u: &str| RedisTarget::parse(u).expect_err(u).to_string();
        assert!(err("redis+sentinel://a:1,b:2").contains("no master name"));
        assert!(err("redis+sentinel://a:1/m/x").contains("database 'x'"));
        assert!(err("redis+sentinel://a:1/m/0/y").contains("unexpected '/y'"));
        assert!(err("redis+cluster://a:1,,b:2").contains("empty address"));
        assert!(err("redis+cluster://a:99999").contains("port '99999'"));
        assert!(err("redis+cluster://a:1/3").contains("only database 0"));
        assert!(err("http://a").contains("unknown scheme"));
        // the password never shows in an error
        let e = err("redis+cluster://u:hunter2@a:x");
        assert!(e.contains("u:***@a:x") && !e.contains("hunter2"), "{e}");
        assert_eq!(redact("redis://:pw@h:6379/2"), "redis://:***@h:6379/2");
        assert_eq!(
            redact("redis+cluster://u:pw@a:1,b:2"),
            "redis+cluster://u:***@a:1,b:2"
        );
        assert_eq!(redact("redis://h:6379/"), "redis://h:6379/");
        assert!(matches!(
            RedisTarget::parse("redis://127.0.0.1:6379/1"),
            Ok(RedisTarget::Single(_))
        ));
    }
}
