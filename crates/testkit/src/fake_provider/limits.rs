//! Per-key concurrency limits of the fake provider, as a vendor enforces them:
//! queue tasks in flight (submit → its end) and concurrent HTTP calls per bearer
//! key; a call over a limit is answered 429 (`rate_limit_exceeded`, with
//! `Retry-After` when set). The fake records the peak in flight per key and
//! overall, and counts every 429 it answers.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use axum::response::Response;

use super::{FakeFailure, FakeProvider, Shared, lock};

/// What the limits are and what they saw.
#[derive(Default)]
pub(crate) struct Limits {
    pub(crate) tasks_per_key: Option<usize>,
    pub(crate) calls_per_key: Option<usize>,
    pub(crate) retry_after_secs: Option<u64>,
    /// Calls being answered now, per key.
    calls_now: HashMap<String, usize>,
    peak_calls: HashMap<String, usize>,
    peak_calls_total: usize,
    peak_tasks: HashMap<String, usize>,
    peak_tasks_total: usize,
    /// 429 answers (limits, scripted failures, anything).
    pub(crate) rate_limited: usize,
    /// 429 answers because a limit was exceeded.
    pub(crate) over_limit: usize,
    /// Requests per window per key, announced on every answer as OpenAI does
    /// (`x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests`).
    budget: Option<(u32, Duration)>,
    /// Per key: when its window began and the requests it used.
    windows: HashMap<String, (Instant, u32)>,
}

/// A call over a per-key limit (counted); [`OverLimit::response`] is its 429.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverLimit {
    retry_after_secs: Option<u64>,
}

impl OverLimit {
    /// 429 `rate_limit_exceeded`, with `Retry-After` when the limits say so.
    pub(crate) fn response(self) -> Response {
        FakeFailure::RateLimited {
            retry_after_secs: self.retry_after_secs,
        }
        .response()
    }
}

impl Limits {
    fn refusal(&mut self) -> OverLimit {
        self.over_limit += 1;
        OverLimit {
            retry_after_secs: self.retry_after_secs,
        }
    }
}

/// A call counted as in flight until dropped.
pub(crate) struct CallGuard {
    shared: std::sync::Arc<Shared>,
    key: String,
    /// The key's budget after this call: requests left, time to the reset.
    pub(crate) budget: Option<(u32, Duration)>,
}

impl CallGuard {
    /// Adds the budget headers (OpenAI's names) to a successful answer.
    pub(crate) fn announce(&self, response: &mut Response) {
        let Some((left, reset)) = self.budget else {
            return;
        };
        let headers = response.headers_mut();
        if let Ok(v) = axum::http::HeaderValue::from_str(&left.to_string()) {
            headers.insert("x-ratelimit-remaining-requests", v);
        }
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("{:.3}s", reset.as_secs_f64())) {
            headers.insert("x-ratelimit-reset-requests", v);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut limits = lock(&self.shared.limits);
        if let Some(n) = limits.calls_now.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Shared {
    /// Admits a call with `key` under the per-key call limit: a guard while it
    /// runs, or the 429 to answer.
    pub(crate) fn admit_call(
        self: &std::sync::Arc<Self>,
        key: Option<&str>,
    ) -> Result<Option<CallGuard>, OverLimit> {
        let Some(key) = key else { return Ok(None) };
        let mut limits = lock(&self.limits);
        let now = limits.calls_now.get(key).copied().unwrap_or(0);
        if limits.calls_per_key.is_some_and(|max| now >= max) {
            return Err(limits.refusal());
        }
        let budget = match limits.budget {
            Some((per_window, window)) => {
                let (began, used) = limits
                    .windows
                    .entry(key.to_owned())
                    .or_insert((Instant::now(), 0));
                if began.elapsed() >= window {
                    (*began, *used) = (Instant::now(), 0);
                }
                if *used >= per_window {
                    return Err(limits.refusal());
                }
                *used += 1;
                Some((per_window - *used, window.saturating_sub(began.elapsed())))
            }
            None => None,
        };
        limits.calls_now.insert(key.to_owned(), now + 1);
        let peak = limits.peak_calls.entry(key.to_owned()).or_default();
        *peak = (*peak).max(now + 1);
        let total: usize = limits.calls_now.values().sum();
        limits.peak_calls_total = limits.peak_calls_total.max(total);
        Ok(Some(CallGuard {
            shared: self.clone(),
            key: key.to_owned(),
            budget,
        }))
    }

    /// Whether a task may be created for `key` now (its tasks in flight are
    /// under the limit); the 429 to answer if not. Called with the admission
    /// lock held, so that counting and creating are one step.
    pub(crate) fn admit_task(&self, key: Option<&str>) -> Result<(), OverLimit> {
        let mut limits = lock(&self.limits);
        let Some(max) = limits.tasks_per_key else {
            return Ok(());
        };
        let live = self.live_tasks(key);
        if live >= max {
            return Err(limits.refusal());
        }
        Ok(())
    }

    /// Records the tasks in flight after one was created for `key`.
    pub(crate) fn note_task_created(&self, key: Option<&str>) {
        let (per_key, total) = (self.live_tasks(key), self.live_tasks(None));
        let mut limits = lock(&self.limits);
        if let Some(key) = key {
            let peak = limits.peak_tasks.entry(key.to_owned()).or_default();
            *peak = (*peak).max(per_key);
        }
        limits.peak_tasks_total = limits.peak_tasks_total.max(total);
    }

    /// Tasks not yet ended, of `key` (all keys when `None`).
    fn live_tasks(&self, key: Option<&str>) -> usize {
        let never_finish = self.never_finish();
        lock(&self.tasks)
            .values()
            .filter(|t| key.is_none() || t.key.as_deref() == key)
            .filter(|t| t.is_live(never_finish))
            .count()
    }

    /// Counts a 429 answered.
    pub(crate) fn note_status(&self, status: axum::http::StatusCode) {
        if status == axum::http::StatusCode::TOO_MANY_REQUESTS {
            lock(&self.limits).rate_limited += 1;
        }
    }
}

impl FakeProvider {
    /// At most `limit` queue tasks in flight (submitted, not yet ended) per bearer
    /// key; a submit over it is answered 429. `None`: no limit.
    pub fn set_task_limit_per_key(&self, limit: Option<usize>) {
        lock(&self.shared.limits).tasks_per_key = limit;
    }

    /// At most `limit` HTTP calls being answered at once per bearer key (any
    /// endpoint); a call over it is answered 429. `None`: no limit.
    pub fn set_call_limit_per_key(&self, limit: Option<usize>) {
        lock(&self.shared.limits).calls_per_key = limit;
    }

    /// At most `requests` calls per `window` per bearer key, announced on every
    /// answer (`x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests`); a
    /// call over it is answered 429. `None`: no budget.
    pub fn set_request_budget_per_key(&self, budget: Option<(u32, Duration)>) {
        let mut limits = lock(&self.shared.limits);
        limits.budget = budget;
        limits.windows.clear();
    }

    /// The `Retry-After` (seconds) the limits' 429s carry; `None`: no header.
    pub fn set_limit_retry_after(&self, secs: Option<u64>) {
        lock(&self.shared.limits).retry_after_secs = secs;
    }

    /// The most tasks ever in flight at once, over all keys.
    pub fn peak_tasks_in_flight(&self) -> usize {
        lock(&self.shared.limits).peak_tasks_total
    }

    /// The most tasks ever in flight at once per bearer key.
    pub fn peak_tasks_in_flight_per_key(&self) -> HashMap<String, usize> {
        lock(&self.shared.limits).peak_tasks.clone()
    }

    /// The most HTTP calls ever answered at once, over all keys.
    pub fn peak_calls_in_flight(&self) -> usize {
        lock(&self.shared.limits).peak_calls_total
    }

    /// The most HTTP calls ever answered at once per bearer key.
    pub fn peak_calls_in_flight_per_key(&self) -> HashMap<String, usize> {
        lock(&self.shared.limits).peak_calls.clone()
    }

    /// Tasks in flight now (all keys).
    pub fn tasks_in_flight(&self) -> usize {
        self.shared.live_tasks(None)
    }

    /// Every 429 answered so far (limits and scripted failures).
    pub fn rate_limited_answers(&self) -> usize {
        lock(&self.shared.limits).rate_limited
    }

    /// The 429s answered because a per-key limit was exceeded.
    pub fn over_limit_answers(&self) -> usize {
        lock(&self.shared.limits).over_limit
    }

    /// Forgets the peaks and counts (the limits stay).
    pub fn reset_limit_records(&self) {
        let mut limits = lock(&self.shared.limits);
        limits.peak_calls.clear();
        limits.peak_calls_total = 0;
        limits.peak_tasks.clear();
        limits.peak_tasks_total = 0;
        limits.rate_limited = 0;
        limits.over_limit = 0;
    }
}
