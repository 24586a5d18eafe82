//! What a vendor's answer says about waiting: `Retry-After` (seconds or an HTTP
//! date), `retry-after-ms`, OpenAI's `x-ratelimit-reset-requests` /
//! `x-ratelimit-reset-tokens` (Go durations: `6m0s`, `20ms`, `1.5s`).

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// `Retry-After`: delay-seconds, or an HTTP date (the wait until then, measured
/// against `now`; a date in the past is no wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // some vendors send fractional seconds
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A Go duration as OpenAI sends it: `6m0s`, `20ms`, `1.5s`, `1h2m3s`, `0s`.
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total))
}

/// How long a rate-limited answer asks to wait, by the first hint present:
/// `Retry-After`, then `retry-after-ms`, then the reset of the exhausted OpenAI
/// limit (`x-ratelimit-reset-requests` when no requests remain, `-tokens` when no
/// tokens remain, else the later of the two).
pub fn retry_hint(headers: &HeaderMap) -> Option<Duration> {
    retry_hint_at(headers, SystemTime::now())
}

pub(crate) fn retry_hint_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(d) = header(headers, "retry-after").and_then(|v| parse_retry_after(v, now)) {
        return Some(d);
    }
    if let Some(ms) = header(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let reset = |name: &str| header(headers, name).and_then(parse_go_duration);
    let requests = reset("x-ratelimit-reset-requests");
    let tokens = reset("x-ratelimit-reset-tokens");
    let exhausted = |name: &str| header(headers, name) == Some("0");
    match (requests, tokens) {
        (Some(r), _) if exhausted("x-ratelimit-remaining-requests") => Some(r),
        (_, Some(t)) if exhausted("x-ratelimit-remaining-tokens") => Some(t),
        (r, t) => r.max(t),
    }
}

/// On a *successful* answer: how long until the key can take another call, when
/// the vendor says its budget is spent (`x-ratelimit-remaining-requests: 0` or
/// `x-ratelimit-remaining-tokens: 0`, until the matching `x-ratelimit-reset-*`,
/// else one second). `None` while budget remains or nothing is said.
pub fn exhausted_for(headers: &HeaderMap) -> Option<Duration> {
    let spent = |remaining: &str, reset: &str| {
        (header(headers, remaining) == Some("0")).then(|| {
            header(headers, reset)
                .and_then(parse_go_duration)
                .unwrap_or(Duration::from_secs(1))
        })
    };
    let requests = spent(
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    );
    let tokens = spent("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens");
    requests.max(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // RFC 850 and asctime forms are HTTP dates too
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:05 2015", now),
            Some(Duration::from_secs(5))
        );
        // a date gone by: no wait
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("250us"), Some(Duration::from_micros(250)));
        for bad in ["", "5", "s", "5x", "1..2s", "-1s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hints_in_order_of_precedence() {
        let now = SystemTime::now();
        let all = headers(&[
            ("retry-after", "2"),
            ("retry-after-ms", "700"),
            ("x-ratelimit-reset-requests", "6m0s"),
        ]);
        assert_eq!(retry_hint_at(&all, now), Some(Duration::from_secs(2)));
        let ms = headers(&[
            ("retry-after-ms", "700"),
            ("x-ratelimit-reset-tokens", "9s"),
        ]);
        assert_eq!(retry_hint_at(&ms, now), Some(Duration::from_millis(700)));
        // the exhausted limit's reset
        let tokens_out = headers(&[
            ("x-ratelimit-remaining-requests", "12"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ]);
        assert_eq!(
            retry_hint_at(&tokens_out, now),
            Some(Duration::from_millis(20))
        );
        let requests_out = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1.5s"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ]);
        assert_eq!(
            retry_hint_at(&requests_out, now),
            Some(Duration::from_millis(1500))
        );
        // neither said exhausted: the later reset
        let both = headers(&[
            ("x-ratelimit-reset-requests", "3s"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ]);
        assert_eq!(retry_hint_at(&both, now), Some(Duration::from_secs(3)));
        // an unreadable Retry-After falls through to the next hint
        let bad = headers(&[("retry-after", "later"), ("retry-after-ms", "50")]);
        assert_eq!(retry_hint_at(&bad, now), Some(Duration::from_millis(50)));
        assert_eq!(retry_hint_at(&HeaderMap::new(), now), None);
    }

    #[test]
    fn a_spent_budget_on_success_says_until_when() {
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1.5s"),
            ("x-ratelimit-remaining-tokens", "1200"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(exhausted_for(&h), Some(Duration::from_millis(1500)));
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "4"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "20s"),
        ]);
        assert_eq!(exhausted_for(&h), Some(Duration::from_secs(20)));
        let h = headers(&[("x-ratelimit-remaining-requests", "3")]);
        assert_eq!(exhausted_for(&h), None);
        assert_eq!(exhausted_for(&HeaderMap::new()), None);
    }
}
