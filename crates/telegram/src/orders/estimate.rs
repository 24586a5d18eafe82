//! How long until the result: the time estimate in the acknowledgement ("about 3
//! minutes"), computed from the job's place in its queue and what the queue did
//! recently — never a fixed text.
//!
//! For each queue a job passes through (a picture: `text` for its prompt, then the
//! image queue), from Redis:
//!
//! - `d`: the median run time (`finished − started` of the job hash) of the last
//!   succeeded jobs of that job type among the queue's newest [`SAMPLE`] completion
//!   events (`<p>:{q}:events`); without any, a default from the job type's
//!   configured timeout (timeout / 10, clamped to 2 s – 5 min);
//! - `r`: the jobs the queue's workers finish per second, the larger of
//!   - `c / d_q`: `c` = the most jobs that ran at once among those samples (their
//!     `started`–`finished` intervals overlapping) or the jobs running now, whichever
//!     is larger — the workers' parallelism; `d_q` = the median run time of the
//!     queue's sampled jobs of every type (the jobs ahead are of any type);
//!   - the completions of the last [`RATE_WINDOW`] divided by the time since the
//!     oldest of them (what the queue actually achieved lately);
//! - `ahead`: the jobs before it in `ready` (for a later stage: everything ready now).
//!
//! A stage takes `ahead / r + d`; the estimate is the sum of the stages plus the
//! delivery's own lag (the median `finished − enq` of recent `deliver` jobs: the
//! push after the job's event, the send, a 429's reschedule; 1 s without history),
//! clamped to 1 s – 12 h. A paused queue has no estimate (the acknowledgement then
//! gives the position only; the pause is read at once, not from the cache). Each
//! queue's figures are read at start and then at most every [`CACHE_FOR`] (one
//! `XREVRANGE`, one pipelined `HMGET` per sampled job, the queue's stats), shared
//! by every acknowledgement meanwhile; older figures are used while a background
//! read replaces them, so an acknowledgement never waits for one.
//!
//! The words ([`Eta`]): "about a second" under 1.5 s, whole seconds under 10 s,
//! steps of 5 s under a minute, "about a minute" up to 1.5 min, whole minutes up
//! to 10, steps of 5 minutes up to an hour, "about an hour" up to 1.5 h, then whole
//! hours (at most 12). No number ends in 1 (but 11), so the Russian genitive after
//! «около» is always the plural one.
//!
//! Known limits: a queue without history of a job type (a fresh deployment, or
//! none finished within the job hashes' `result_ttl`) gets the timeout-based
//! default, usually far too long; jobs still running are not in `d`, so a queue
//! whose jobs suddenly got slower is seen only as they finish.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use genq_redis::RedisQueue;
use redis::Value;
use tokio::sync::Mutex;
use tracing::{debug, instrument};

use crate::{
    BotError,
    i18n::{Lang, t},
};

/// Completion events read per queue.
pub const SAMPLE: usize = 200;
/// The window of the observed completion rate.
pub const RATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a queue's figures are reused.
pub const CACHE_FOR: Duration = Duration::from_secs(2);
/// The delivery's lag when there is no history.
const DEFAULT_DELIVERY: Duration = Duration::from_secs(1);
/// A job type's run time when there is neither history nor a default for it.
const FALLBACK_RUN: Duration = Duration::from_secs(10);
const MIN_ESTIMATE: f64 = 1.0;
const MAX_ESTIMATE: f64 = 12.0 * 3600.0;

/// One finished job seen in a queue's event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub job_type: String,
    pub succeeded: bool,
    /// When the event was written (the stream entry's time, Redis's clock), ms.
    pub event_ms: u64,
    /// From the job hash while it lasts (the worker's clock), ms.
    pub enq_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
}

/// What a queue's recent history says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueHistory {
    /// Median run time (s) by job type, of the succeeded samples.
    pub run_secs: HashMap<String, f64>,
    /// Median run time (s) of every succeeded sample.
    pub queue_run_secs: Option<f64>,
    /// Median time (s) from push to finish of the succeeded samples.
    pub turnaround_secs: Option<f64>,
    /// Completions per second over [`RATE_WINDOW`] (at least 2 completions).
    pub completions_per_sec: Option<f64>,
    /// The most samples that ran at once.
    pub peak_parallel: u64,
    pub running: u64,
    pub ready: u64,
    pub paused: bool,
}

/// The median; `None` for no values.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// The most of `intervals` (start, end) that overlap at one instant.
pub fn peak_overlap(intervals: &[(u64, u64)]) -> u64 {
    let mut edges: Vec<(u64, i64)> = Vec::with_capacity(intervals.len() * 2);
    for &(start, end) in intervals {
        edges.push((start, 1));
        // an interval ending when another starts does not overlap it
        edges.push((end.max(start), -1));
    }
    edges.sort_by_key(|&(at, delta)| (at, delta));
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, delta) in edges {
        now += delta;
        peak = peak.max(now);
    }
    peak.max(0) as u64
}

/// The figures behind an estimate, from a queue's samples (newest first or in any
/// order) at `now_ms` (Redis's clock), with its running/ready/paused state.
pub fn history(
    samples: &[Sample],
    now_ms: u64,
    running: u64,
    ready: u64,
    paused: bool,
) -> QueueHistory {
    let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1000.0;
    let mut by_type: HashMap<String, Vec<f64>> = HashMap::new();
    let mut all = Vec::new();
    let mut turnaround = Vec::new();
    let mut intervals = Vec::new();
    for s in samples.iter().filter(|s| s.succeeded) {
        if let (Some(start), Some(end)) = (s.started_ms, s.finished_ms) {
            let run = ms(start, end);
            by_type.entry(s.job_type.clone()).or_default().push(run);
            all.push(run);
            intervals.push((start, end));
        }
        if let (Some(enq), Some(end)) = (s.enq_ms, s.finished_ms) {
            turnaround.push(ms(enq, end));
        }
    }
    let window_start = now_ms.saturating_sub(RATE_WINDOW.as_millis() as u64);
    let recent: Vec<u64> = samples
        .iter()
        .map(|s| s.event_ms)
        .filter(|&at| at >= window_start && at <= now_ms)
        .collect();
    let completions_per_sec = match recent.iter().min() {
        Some(&oldest) if recent.len() >= 2 => {
            Some(recent.len() as f64 / ms(oldest, now_ms).max(1.0))
        }
        _ => None,
    };
    QueueHistory {
        run_secs: by_type
            .into_iter()
            .filter_map(|(k, mut v)| Some((k, median(&mut v)?)))
            .collect(),
        queue_run_secs: median(&mut all),
        turnaround_secs: median(&mut turnaround),
        completions_per_sec,
        peak_parallel: peak_overlap(&intervals),
        running,
        ready,
        paused,
    }
}

/// Jobs per second the queue's workers get through: the larger of their
/// parallelism over the typical run time and the observed completion rate.
pub fn throughput(h: &QueueHistory, fallback_run_secs: f64) -> f64 {
    let parallel = h.running.max(h.peak_parallel).max(1) as f64;
    let run = h.queue_run_secs.unwrap_or(fallback_run_secs).max(0.001);
    (parallel / run).max(h.completions_per_sec.unwrap_or(0.0))
}

/// One queue a job passes through, with the figures for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Jobs before it.
    pub ahead: u64,
    /// Its own run time, s.
    pub run_secs: f64,
    /// Jobs per second the queue finishes.
    pub per_sec: f64,
}

/// Seconds until the result: each stage's wait (`ahead / r`) and run (`d`), then
/// the delivery; clamped to 1 s – 12 h.
pub fn estimate_secs(stages: &[Stage], delivery_secs: f64) -> f64 {
    let total: f64 = stages
        .iter()
        .map(|s| s.ahead as f64 / s.per_sec.max(1e-6) + s.run_secs)
        .sum::<f64>()
        + delivery_secs;
    total.clamp(MIN_ESTIMATE, MAX_ESTIMATE)
}

/// An estimate in the words a user reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eta {
    Second,
    Seconds(u64),
    Minute,
    Minutes(u64),
    Hour,
    Hours(u64),
}

impl Eta {
    /// The friendly rounding of `secs` (see the module docs).
    pub fn from_secs(secs: f64) -> Eta {
        let secs = if secs.is_finite() {
            secs.max(0.0)
        } else {
            MAX_ESTIMATE
        };
        let round_to = |v: f64, step: f64| ((v / step).round() * step) as u64;
        if secs < 1.5 {
            Eta::Second
        } else if secs < 9.5 {
            Eta::Seconds((secs.round() as u64).max(2))
        } else if secs < 57.5 {
            Eta::Seconds(round_to(secs, 5.0).max(10))
        } else if secs < 90.0 {
            Eta::Minute
        } else if secs < 10.5 * 60.0 {
            Eta::Minutes(((secs / 60.0).round() as u64).clamp(2, 10))
        } else if secs < 57.5 * 60.0 {
            Eta::Minutes(round_to(secs / 60.0, 5.0).clamp(10, 55))
        } else if secs < 90.0 * 60.0 {
            Eta::Hour
        } else {
            Eta::Hours(((secs / 3600.0).round() as u64).clamp(2, 12))
        }
    }

    /// What it stands for, in seconds.
    pub fn secs(self) -> u64 {
        match self {
            Eta::Second => 1,
            Eta::Seconds(n) => n,
            Eta::Minute => 60,
            Eta::Minutes(n) => n * 60,
            Eta::Hour => 3600,
            Eta::Hours(n) => n * 3600,
        }
    }

    /// The estimate `text` (an acknowledgement, say) gives in `lang`'s words, if any.
    pub fn find_in(text: &str, lang: Lang) -> Option<Eta> {
        let fixed = [
            (t(lang, "ack.eta_second", &[]), Eta::Second),
            (t(lang, "ack.eta_minute", &[]), Eta::Minute),
            (t(lang, "ack.eta_hour", &[]), Eta::Hour),
        ];
        if let Some((_, eta)) = fixed
            .iter()
            .find(|(words, _)| text.contains(words.as_str()))
        {
            return Some(*eta);
        }
        type Make = fn(u64) -> Eta;
        let numbered: [(&str, Make); 3] = [
            ("ack.eta_seconds", Eta::Seconds),
            ("ack.eta_minutes", Eta::Minutes),
            ("ack.eta_hours", Eta::Hours),
        ];
        for (key, make) in numbered {
            let template = t(lang, key, &[]);
            let Some((before, after)) = template.split_once("{n}") else {
                continue;
            };
            for (at, _) in text.match_indices(before) {
                let rest = &text[at + before.len()..];
                let digits =
                    rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                if digits > 0
                    && rest[digits..].starts_with(after)
                    && let Ok(n) = rest[..digits].parse()
                {
                    return Some(make(n));
                }
            }
        }
        None
    }

    /// "about 3 minutes", in `lang`.
    pub fn text(self, lang: Lang) -> String {
        match self {
            Eta::Second => t(lang, "ack.eta_second", &[]),
            Eta::Seconds(n) => t(lang, "ack.eta_seconds", &[("n", &n)]),
            Eta::Minute => t(lang, "ack.eta_minute", &[]),
            Eta::Minutes(n) => t(lang, "ack.eta_minutes", &[("n", &n)]),
            Eta::Hour => t(lang, "ack.eta_hour", &[]),
            Eta::Hours(n) => t(lang, "ack.eta_hours", &[("n", &n)]),
        }
    }
}

/// A queue a job will pass through.
#[derive(Debug, Clone, Copy)]
pub struct Leg<'a> {
    pub queue: &'a str,
    pub job_type: &'a str,
    /// Jobs before it; `None`: everything ready in that queue now (a later stage).
    pub ahead: Option<u64>,
}

/// A queue's figures and when they were read.
type Cached = (Instant, Arc<QueueHistory>);

/// Estimates from Redis, with each queue's figures cached for [`CACHE_FOR`]. An
/// acknowledgement never waits for a refresh once a queue was read: figures older
/// than that are used while one background read replaces them.
#[derive(Clone)]
pub struct Estimator {
    queue: RedisQueue,
    delivery_queue: String,
    /// Run time by job type when a queue has no history of it.
    default_runs: Arc<HashMap<String, Duration>>,
    cache: Arc<std::sync::Mutex<HashMap<String, Cached>>>,
    /// One reader per queue at a time: a burst of acknowledgements reads Redis once.
    readers: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl Estimator {
    pub fn new(queue: RedisQueue, delivery_queue: &str) -> Self {
        Self {
            queue,
            delivery_queue: delivery_queue.to_owned(),
            default_runs: Arc::new(HashMap::new()),
            cache: Arc::default(),
            readers: Arc::default(),
        }
    }

    /// The run time of each job type without history: a tenth of its timeout,
    /// clamped to 2 s – 5 min.
    pub fn set_default_runs(&mut self, timeouts: impl IntoIterator<Item = (String, Duration)>) {
        self.default_runs = Arc::new(
            timeouts
                .into_iter()
                .map(|(job_type, timeout)| {
                    let d = (timeout / 10).clamp(Duration::from_secs(2), Duration::from_secs(300));
                    (job_type, d)
                })
                .collect(),
        );
    }

    fn default_run(&self, job_type: &str) -> f64 {
        self.default_runs
            .get(job_type)
            .copied()
            .unwrap_or(FALLBACK_RUN)
            .as_secs_f64()
    }

    /// Seconds until the result of a job passing through `legs`; `None` when a
    /// queue on the way is paused.
    #[instrument(level = "debug", skip_all)]
    pub async fn estimate(&self, legs: &[Leg<'_>]) -> Result<Option<f64>, BotError> {
        let mut stages = Vec::with_capacity(legs.len());
        for leg in legs {
            // read now, not from the cache: a queue paused a moment ago gives no estimate
            if self.queue.stats(leg.queue).await?.paused {
                return Ok(None);
            }
            let h = self.history_of(leg.queue).await?;
            let fallback = self.default_run(leg.job_type);
            stages.push(Stage {
                ahead: leg.ahead.unwrap_or(h.ready),
                run_secs: h.run_secs.get(leg.job_type).copied().unwrap_or(fallback),
                per_sec: throughput(&h, fallback),
            });
        }
        let delivery = self
            .history_of(&self.delivery_queue)
            .await?
            .turnaround_secs
            .unwrap_or(DEFAULT_DELIVERY.as_secs_f64());
        let secs = estimate_secs(&stages, delivery);
        debug!(?stages, delivery, secs, "time estimate");
        Ok(Some(secs))
    }

    fn cached(&self, queue: &str) -> Option<Cached> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(queue)
            .cloned()
    }

    /// A queue's figures: the cached ones (refreshed in the background when older
    /// than [`CACHE_FOR`]), or read now when the queue was never read.
    async fn history_of(&self, queue: &str) -> Result<Arc<QueueHistory>, BotError> {
        match self.cached(queue) {
            Some((at, h)) => {
                if at.elapsed() >= CACHE_FOR {
                    let this = self.clone();
                    let queue = queue.to_owned();
                    tokio::spawn(async move {
                        if let Err(e) = this.refresh(&queue).await {
                            debug!(queue, error = %e, "time-estimate figures not refreshed");
                        }
                    });
                }
                Ok(h)
            }
            None => self.refresh(queue).await,
        }
    }

    /// Reads a queue's figures (one reader per queue; a caller that waited for
    /// another's read takes its result).
    async fn refresh(&self, queue: &str) -> Result<Arc<QueueHistory>, BotError> {
        let reader = self
            .readers
            .lock()
            .await
            .entry(queue.to_owned())
            .or_default()
            .clone();
        let _one = reader.lock().await;
        if let Some((at, h)) = self.cached(queue)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(h);
        }
        let h = Arc::new(self.read_history(queue).await?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_owned(), (Instant::now(), h.clone()));
        Ok(h)
    }

    /// Reads the figures of `queues` (and the delivery queue) now, so that the
    /// first acknowledgements do not wait for them.
    pub async fn warm(&self, queues: &[String]) {
        for q in queues.iter().chain(std::iter::once(&self.delivery_queue)) {
            if let Err(e) = self.refresh(q).await {
                debug!(queue = %q, error = %e, "time-estimate figures not read at start");
            }
        }
    }

    async fn read_history(&self, queue: &str) -> Result<QueueHistory, BotError> {
        let stats = self.queue.stats(queue).await?;
        let base = self.queue.base_key(queue);
        let mut conn = self.queue.connection();
        let (time, entries): ((u64, u64), Value) = redis::pipe()
            .cmd("TIME")
            .cmd("XREVRANGE")
            .arg(format!("{base}:events"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(SAMPLE)
            .query_async(&mut conn)
            .await?;
        let now_ms = time.0 * 1000 + time.1 / 1000;
        let events = parse_events(&entries);
        let mut samples = Vec::with_capacity(events.len());
        if !events.is_empty() {
            let mut pipe = redis::pipe();
            for (_, id, _, _) in &events {
                pipe.cmd("HMGET")
                    .arg(format!("{base}:job:{id}"))
                    .arg("enq")
                    .arg("started")
                    .arg("finished");
            }
            let times: Vec<Vec<Option<u64>>> = pipe.query_async(&mut conn).await?;
            for ((event_ms, _, job_type, succeeded), t) in events.into_iter().zip(times) {
                let at = |i: usize| t.get(i).copied().flatten();
                samples.push(Sample {
                    job_type,
                    succeeded,
                    event_ms,
                    enq_ms: at(0),
                    started_ms: at(1),
                    finished_ms: at(2),
                });
            }
        }
        Ok(history(
            &samples,
            now_ms,
            stats.running,
            stats.ready,
            stats.paused,
        ))
    }
}

/// (event time ms, job id, job type, succeeded) of each `XREVRANGE` entry.
fn parse_events(reply: &Value) -> Vec<(u64, String, String, bool)> {
    crate::streams::parse_entries(reply)
        .into_iter()
        .filter_map(|(entry_id, mut map)| {
            let event_ms = entry_id.split('-').next()?.parse().ok()?;
            let id = map.remove("id").filter(|s| !s.is_empty())?;
            Some((
                event_ms,
                id,
                map.remove("type").unwrap_or_default(),
                map.get("status").is_some_and(|s| s == "succeeded"),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(job_type: &str, started: u64, finished: u64) -> Sample {
        Sample {
            job_type: job_type.to_owned(),
            succeeded: true,
            event_ms: finished,
            enq_ms: Some(started.saturating_sub(100)),
            started_ms: Some(started),
            finished_ms: Some(finished),
        }
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn peak_overlap_counts_parallel_runs_only() {
        assert_eq!(peak_overlap(&[]), 0);
        // back to back: never two at once
        assert_eq!(peak_overlap(&[(0, 10), (10, 20), (20, 30)]), 1);
        assert_eq!(peak_overlap(&[(0, 10), (5, 15), (6, 7), (20, 30)]), 3);
    }

    #[test]
    fn a_stage_waits_its_turn_then_runs() {
        // 30 ahead at 2 jobs/s: 15 s of waiting, then its own 4 s, then 1 s delivery
        let stages = [Stage {
            ahead: 30,
            run_secs: 4.0,
            per_sec: 2.0,
        }];
        assert_eq!(estimate_secs(&stages, 1.0), 20.0);
        // nothing ahead: its run and the delivery
        let stages = [Stage {
            ahead: 0,
            run_secs: 4.0,
            per_sec: 0.0,
        }];
        assert_eq!(estimate_secs(&stages, 1.0), 5.0);
        // two stages add up; the result is clamped
        let two = [
            Stage {
                ahead: 2,
                run_secs: 1.0,
                per_sec: 1.0,
            },
            Stage {
                ahead: 10,
                run_secs: 5.0,
                per_sec: 5.0,
            },
        ];
        assert_eq!(estimate_secs(&two, 0.0), 10.0);
        assert_eq!(estimate_secs(&[], 0.0), MIN_ESTIMATE);
        let huge = [Stage {
            ahead: 1_000_000,
            run_secs: 60.0,
            per_sec: 0.01,
        }];
        assert_eq!(estimate_secs(&huge, 0.0), MAX_ESTIMATE);
    }

    #[test]
    fn history_takes_medians_parallelism_and_rate() {
        let now = 1_000_000;
        // three upscales of 2 s that ran together, one probe of 10 s, one failure
        let mut samples = vec![
            sample("upscale", now - 5000, now - 3000),
            sample("upscale", now - 5000, now - 3000),
            sample("upscale", now - 4500, now - 2500),
            sample("probe", now - 20_000, now - 10_000),
        ];
        samples.push(Sample {
            succeeded: false,
            ..sample("upscale", now - 1000, now - 900)
        });
        let h = history(&samples, now, 1, 7, false);
        assert_eq!(h.run_secs.get("upscale"), Some(&2.0));
        assert_eq!(h.run_secs.get("probe"), Some(&10.0));
        assert_eq!(h.queue_run_secs, Some(2.0));
        assert_eq!(h.turnaround_secs, Some(2.1));
        assert_eq!(h.peak_parallel, 3);
        // 5 completions since the oldest, 10 s ago
        assert_eq!(h.completions_per_sec, Some(0.5));
        assert_eq!((h.running, h.ready, h.paused), (1, 7, false));
        // 3 at once, 2 s each: 1.5 jobs/s beats the observed 0.5
        assert_eq!(throughput(&h, 10.0), 1.5);
    }

    #[test]
    fn old_completions_do_not_count_towards_the_rate() {
        let now = 10_000_000;
        let old = now - RATE_WINDOW.as_millis() as u64 - 1;
        let h = history(
            &[sample("a", old - 10, old), sample("a", old - 10, old)],
            now,
            0,
            0,
            false,
        );
        assert_eq!(h.completions_per_sec, None);
        assert_eq!(h.run_secs.get("a"), Some(&0.01));
    }

    #[test]
    fn without_history_the_default_run_and_one_worker_are_assumed() {
        let h = history(&[], 0, 0, 3, false);
        assert_eq!(
            h,
            QueueHistory {
                ready: 3,
                ..QueueHistory::default()
            }
        );
        assert_eq!(throughput(&h, 20.0), 0.05);
        // jobs running now show the workers' parallelism
        let busy = QueueHistory { running: 8, ..h };
        assert_eq!(throughput(&busy, 20.0), 0.4);
    }

    #[test]
    fn eta_rounds_to_friendly_numbers() {
        let cases = [
            (0.3, Eta::Second),
            (1.6, Eta::Seconds(2)),
            (3.4, Eta::Seconds(3)),
            (9.4, Eta::Seconds(9)),
            (9.6, Eta::Seconds(10)),
            (23.0, Eta::Seconds(25)),
            (57.0, Eta::Seconds(55)),
            (58.0, Eta::Minute),
            (89.0, Eta::Minute),
            (90.0, Eta::Minutes(2)),
            (190.0, Eta::Minutes(3)),
            (629.0, Eta::Minutes(10)),
            (14.0 * 60.0, Eta::Minutes(15)),
            (57.0 * 60.0, Eta::Minutes(55)),
            (58.0 * 60.0, Eta::Hour),
            (100.0 * 60.0, Eta::Hours(2)),
            (48.0 * 3600.0, Eta::Hours(12)),
            (f64::INFINITY, Eta::Hours(12)),
            (f64::NAN, Eta::Hours(12)),
        ];
        for (secs, eta) in cases {
            assert_eq!(Eta::from_secs(secs), eta, "{secs} s");
        }
        // never a number ending in 1 (Russian: «около 21 минуты» would need another form)
        for secs in (0..50_000).map(|s| s as f64 * 0.9) {
            let n = match Eta::from_secs(secs) {
                Eta::Seconds(n) | Eta::Minutes(n) | Eta::Hours(n) => n,
                Eta::Second | Eta::Minute | Eta::Hour => continue,
            };
            assert!(n >= 2 && (n % 10 != 1 || n == 11), "{secs} s → {n}");
        }
    }

    #[test]
    fn eta_is_found_again_in_an_acknowledgement() {
        for eta in [
            Eta::Second,
            Eta::Seconds(2),
            Eta::Seconds(45),
            Eta::Minute,
            Eta::Minutes(7),
            Eta::Minutes(55),
            Eta::Hour,
            Eta::Hours(12),
        ] {
            for lang in Lang::ALL {
                let ack = t(
                    lang,
                    "ack.position_eta",
                    &[("ahead", &3), ("eta", &eta.text(lang))],
                );
                assert_eq!(Eta::find_in(&ack, lang), Some(eta), "{ack}");
            }
        }
        assert_eq!(
            Eta::find_in(&t(Lang::En, "ack.position", &[("ahead", &3)]), Lang::En),
            None
        );
        assert_eq!(Eta::find_in("about seconds", Lang::En), None);
    }

    #[test]
    fn eta_words_in_both_languages() {
        assert_eq!(Eta::Minutes(3).text(Lang::En), "about 3 minutes");
        assert_eq!(Eta::Minutes(3).text(Lang::Ru), "около 3 минут");
        assert_eq!(Eta::Seconds(25).secs(), 25);
        assert_eq!(Eta::Hours(2).secs(), 7200);
        for eta in [
            Eta::Second,
            Eta::Seconds(5),
            Eta::Minute,
            Eta::Minutes(5),
            Eta::Hour,
            Eta::Hours(5),
        ] {
            for lang in Lang::ALL {
                let text = eta.text(lang);
                assert!(!text.contains('{') && !text.starts_with("ack."), "{text}");
            }
        }
    }

    #[test]
    fn events_are_parsed_from_the_stream_reply() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |id: &str, job: &str, status: &str| {
            Value::Array(vec![
                bulk(id),
                Value::Array(vec![
                    bulk("id"),
                    bulk(job),
                    bulk("type"),
                    bulk("upscale"),
                    bulk("status"),
                    bulk(status),
                ]),
            ])
        };
        let reply = Value::Array(vec![
            entry("1700000000123-0", "j1", "succeeded"),
            entry("1700000000100-3", "j2", "failed"),
            Value::Nil,
        ]);
        assert_eq!(
            parse_events(&reply),
            vec![
                (
                    1_700_000_000_123,
                    "j1".to_owned(),
                    "upscale".to_owned(),
                    true
                ),
                (
                    1_700_000_000_100,
                    "j2".to_owned(),
                    "upscale".to_owned(),
                    false
                ),
            ]
        );
        assert!(parse_events(&Value::Nil).is_empty());
    }
}
