//! Retry policy: what each failure class gets (PRODUCT.md's table), overridable per job type.
//!
//! A retry is decided here and carried out by the backend as a reschedule at a due
//! time; nothing sleeps in a worker slot.

use std::{collections::HashMap, time::Duration};

use rand::Rng;

use crate::error::{FailureClass, JobError};

/// What one failure class gets.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassRule {
    /// Never retried: the job fails for good at once.
    Never,
    /// Retried until `max_attempts` runs in all, waiting `base * 2^(n-1)` (capped at
    /// `max`) after the n-th failure, spread by ±`jitter` (a fraction, 0.0-1.0).
    Backoff {
        max_attempts: u32,
        base: Duration,
        max: Duration,
        jitter: f64,
    },
    /// Retried until `max_attempts` runs in all, waiting what the provider asked for
    /// (Retry-After, capped at `cap`), else the n-th entry of `fallback` (the last
    /// entry repeats).
    RetryAfter {
        max_attempts: u32,
        fallback: Vec<Duration>,
        cap: Duration,
    },
}

/// The outcome of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Run again after this delay.
    RetryIn(Duration),
    /// Fail for good (dead letter).
    GiveUp,
}

/// Retry rules by failure class. [`RetryPolicy::default`] is PRODUCT.md's table.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    rules: HashMap<FailureClass, ClassRule>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let transient = ClassRule::Backoff {
            max_attempts: 3,
            base: Duration::from_secs(10),
            max: Duration::from_secs(40),
            jitter: 0.2,
        };
        let mut rules = HashMap::new();
        rules.insert(FailureClass::UserViolation, ClassRule::Never);
        rules.insert(FailureClass::Billing, ClassRule::Never);
        rules.insert(FailureClass::BadInput, ClassRule::Never);
        rules.insert(FailureClass::Cancelled, ClassRule::Never);
        rules.insert(FailureClass::Transient, transient.clone());
        rules.insert(FailureClass::Timeout, transient);
        rules.insert(
            FailureClass::RateLimited,
            ClassRule::RetryAfter {
                max_attempts: 4,
                fallback: vec![
                    Duration::from_secs(60),
                    Duration::from_secs(120),
                    Duration::from_secs(240),
                ],
                cap: Duration::from_secs(3600),
            },
        );
        Self { rules }
    }
}

impl RetryPolicy {
    /// A policy that never retries anything.
    pub fn never() -> Self {
        Self {
            rules: FailureClass::ALL
                .into_iter()
                .map(|c| (c, ClassRule::Never))
                .collect(),
        }
    }

    /// Replaces the rule of one class.
    pub fn with(mut self, class: FailureClass, rule: ClassRule) -> Self {
        self.rules.insert(class, rule);
        self
    }

    pub fn rule(&self, class: FailureClass) -> &ClassRule {
        self.rules.get(&class).unwrap_or(&ClassRule::Never)
    }

    /// The most runs any class may get: the backend uses it to stop re-running a job
    /// whose worker keeps dying (each lost lease counts as a run).
    pub fn max_attempts(&self) -> u32 {
        self.rules
            .values()
            .map(|r| match r {
                ClassRule::Never => 1,
                ClassRule::Backoff { max_attempts, .. }
                | ClassRule::RetryAfter { max_attempts, .. } => *max_attempts,
            })
            .max()
            .unwrap_or(1)
    }

    /// Decides what happens after `attempt` (1-based: the run that just failed) failed with `error`.
    pub fn decide(&self, error: &JobError, attempt: u32) -> RetryDecision {
        match self.rule(error.class) {
            ClassRule::Never => RetryDecision::GiveUp,
            ClassRule::Backoff {
                max_attempts,
                base,
                max,
                jitter,
            } => {
                if attempt >= *max_attempts {
                    return RetryDecision::GiveUp;
                }
                let exp = attempt.saturating_sub(1).min(30);
                let delay = base.saturating_mul(1u32 << exp).min(*max);
                RetryDecision::RetryIn(spread(delay, *jitter))
            }
            ClassRule::RetryAfter {
                max_attempts,
                fallback,
                cap,
            } => {
                if attempt >= *max_attempts {
                    return RetryDecision::GiveUp;
                }
                let delay = match error.retry_after {
                    Some(asked) => asked,
                    None => {
                        let idx = (attempt.saturating_sub(1) as usize)
                            .min(fallback.len().saturating_sub(1));
                        fallback
                            .get(idx)
                            .copied()
                            .unwrap_or(Duration::from_secs(60))
                    }
                };
                RetryDecision::RetryIn(delay.min(*cap))
            }
        }
    }
}

/// Spreads `delay` uniformly by ±`jitter` (a fraction of it).
fn spread(delay: Duration, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    if jitter == 0.0 || delay.is_zero() {
        return delay;
    }
    let factor = rand::rng().random_range((1.0 - jitter)..=(1.0 + jitter));
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: RetryDecision) -> f64 {
        match d {
            RetryDecision::RetryIn(d) => d.as_secs_f64(),
            RetryDecision::GiveUp => -1.0,
        }
    }

    #[test]
    fn never_classes_give_up_at_once() {
        let p = RetryPolicy::default();
        for class in [
            FailureClass::UserViolation,
            FailureClass::Billing,
            FailureClass::BadInput,
            FailureClass::Cancelled,
        ] {
            assert_eq!(
                p.decide(&JobError::new(class, "x"), 1),
                RetryDecision::GiveUp
            );
        }
    }

    #[test]
    fn transient_backs_off_with_jitter_then_gives_up_after_three_runs() {
        let p = RetryPolicy::default();
        let e = JobError::transient("502");
        let first = secs(p.decide(&e, 1));
        let second = secs(p.decide(&e, 2));
        assert!((8.0..=12.0).contains(&first), "first delay {first}");
        assert!((16.0..=24.0).contains(&second), "second delay {second}");
        assert_eq!(p.decide(&e, 3), RetryDecision::GiveUp);
        assert_eq!(
            p.decide(&JobError::timeout("slow"), 3),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn rate_limited_honours_retry_after_else_fallback() {
        let p = RetryPolicy::default();
        let asked = JobError::rate_limited("429", Some(Duration::from_secs(7)));
        assert_eq!(
            p.decide(&asked, 1),
            RetryDecision::RetryIn(Duration::from_secs(7))
        );
        let bare = JobError::rate_limited("429", None);
        assert_eq!(secs(p.decide(&bare, 1)), 60.0);
        assert_eq!(secs(p.decide(&bare, 2)), 120.0);
        assert_eq!(secs(p.decide(&bare, 3)), 240.0);
        assert_eq!(p.decide(&bare, 4), RetryDecision::GiveUp);
    }

    #[test]
    fn per_class_override_and_max_attempts() {
        let p = RetryPolicy::never().with(
            FailureClass::Transient,
            ClassRule::Backoff {
                max_attempts: 5,
                base: Duration::from_millis(10),
                max: Duration::from_millis(25),
                jitter: 0.0,
            },
        );
        let e = JobError::transient("x");
        assert_eq!(
            p.decide(&e, 1),
            RetryDecision::RetryIn(Duration::from_millis(10))
        );
        assert_eq!(
            p.decide(&e, 2),
            RetryDecision::RetryIn(Duration::from_millis(20))
        );
        assert_eq!(
            p.decide(&e, 3),
            RetryDecision::RetryIn(Duration::from_millis(25))
        );
        assert_eq!(p.decide(&e, 5), RetryDecision::GiveUp);
        assert_eq!(p.max_attempts(), 5);
        assert_eq!(RetryPolicy::default().max_attempts(), 4);
    }
}
