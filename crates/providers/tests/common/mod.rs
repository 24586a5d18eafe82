//! What the provider tests share: key pools in real Redis, a client config for the
//! fake provider.

use std::time::Duration;

use genq_metrics::ProviderMetrics;
use genq_providers::{KeyPool, ProviderConfig};
use genq_testkit::{FakeProvider, redis_url};

/// A key pool of provider `fake` with `keys`, its state under `prefix`.
pub async fn pool(prefix: &str, keys: &[&str], metrics: &ProviderMetrics) -> KeyPool {
    let client = redis::Client::open(redis_url()).unwrap();
    let con = redis::aio::ConnectionManager::new(client)
        .await
        .unwrap()
        .into();
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    KeyPool::new("fake", &keys, con, prefix, metrics.clone()).unwrap()
}

/// Provider `fake` at the fake provider's `path` (`/v1` or `/queue`).
pub fn cfg(fake: &FakeProvider, path: &str) -> ProviderConfig {
    ProviderConfig {
        name: "fake".to_owned(),
        base_url: format!("{}{path}", fake.base_url()),
        keys: vec![],
        timeout: Duration::from_secs(10),
    }
}
