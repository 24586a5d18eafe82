//! No code: this package holds the checks of genq's deployment files, in `tests/`.
//!
//! - `promtool.rs`: `promtool check config` / `check rules` on `monitoring/`, the
//!   alerts' unit tests (`promtool test rules`), and every dashboard query parsed
//!   by promtool.
//! - `compose.rs`: `docker/docker-compose.yml` (images, health checks, binaries,
//!   queues, env files, mounts, ports, dependencies, stop grace, the single bot
//!   replica) and the systemd units.
//! - `metric_names.rs`: every metric the alerts and the dashboard use is exported by
//!   a live worker, admin or Telegram bot.
