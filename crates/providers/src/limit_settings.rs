//! What each API key of a provider may do (its limits, as configured): the
//! settings [`crate::limits`] enforces.

use std::time::Duration;

/// The adaptive (AIMD) in-flight limit of each key.
#[derive(Debug, Clone, PartialEq)]
pub struct Adaptive {
    /// Where a key starts (and where it stands until it changes).
    pub start: u32,
    /// The most it grows to (`max_in_flight` when configured).
    pub ceiling: u32,
    /// Grows by one after this many successes while the key was full.
    pub increase_after: u32,
    /// On a 429 the limit becomes `floor(limit * decrease)`, at least 1.
    pub decrease: f64,
    /// At most one decrease per this period (one overload answers several 429s).
    pub decrease_guard: Duration,
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            start: 4,
            ceiling: 64,
            increase_after: 10,
            decrease: 0.5,
            decrease_guard: Duration::from_secs(1),
        }
    }
}

/// What each API key of a provider may do, across every host. All off by default.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLimits {
    /// Calls (OpenAI protocol) or tasks (queue protocol: submit → end) at once.
    pub max_in_flight: Option<u32>,
    /// Requests sent per minute (calls and submits; polls and downloads are free).
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute (chat): estimated from the request, corrected from the
    /// answer's `usage.total_tokens`.
    pub tokens_per_minute: Option<u64>,
    /// An in-flight limit found by AIMD instead of (or under) `max_in_flight`.
    pub adaptive: Option<Adaptive>,
    /// How long a held slot lives without being renewed (a task's slot is renewed
    /// as it is polled; a dead worker's slot is free after this).
    pub slot_lease: Duration,
    /// A run that finds every slot taken is deferred about this long (±50 %).
    pub defer: Duration,
}

impl Default for KeyLimits {
    fn default() -> Self {
        Self {
            max_in_flight: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            adaptive: None,
            slot_lease: Duration::from_secs(120),
            defer: Duration::from_secs(1),
        }
    }
}

impl KeyLimits {
    /// True when no limit is set: calls go out as before, without Redis round trips.
    pub fn is_off(&self) -> bool {
        self.max_in_flight.is_none()
            && self.requests_per_minute.is_none()
            && self.tokens_per_minute.is_none()
            && self.adaptive.is_none()
    }

    pub(crate) fn script_args(&self) -> (u32, u32, u64, u32, u32) {
        let adaptive = self.adaptive.as_ref();
        (
            self.max_in_flight.unwrap_or(0),
            self.requests_per_minute.unwrap_or(0),
            self.tokens_per_minute.unwrap_or(0),
            u32::from(adaptive.is_some()),
            adaptive.map_or(0, |a| a.start),
        )
    }
}
