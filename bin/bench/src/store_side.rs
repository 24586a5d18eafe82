//! Charge-and-enqueue: the transaction a bot waits for before it answers "taken
//! into work" (user row lock, balance check, job row, ledger charge, outbox entry).

use std::time::{Duration, Instant};

use anyhow::Context;
use genq_store::{PaidJob, Store, StoreConfig};

pub struct ChargeFigures {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A schema of the bench's own, dropped afterwards.
pub struct BenchSchema {
    url: String,
    name: String,
    pub store: Store,
}

impl BenchSchema {
    pub async fn create(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let name = format!("genqbench_{}", crate::now_us());
        let mut con = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {url}"))?;
        // the name is made here from a timestamp: safe to splice
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut con)
            .await?;
        let mut cfg = StoreConfig::new(url).schema(&name);
        cfg.max_connections = max_connections;
        let store = Store::open(&cfg).await?;
        Ok(Self {
            url: url.to_owned(),
            name,
            store,
        })
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        self.store.pool().close().await;
        let mut con = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.name
        )))
        .execute(&mut con)
        .await?;
        Ok(())
    }
}

/// `users` users, each charging `per_user` jobs one after another, all users at once.
pub async fn charge_and_enqueue(
    store: &Store,
    users: usize,
    per_user: usize,
) -> anyhow::Result<ChargeFigures> {
    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        let user = store
            .upsert_user(
                9_000_000 + i as i64 + crate::now_us() as i64 % 1_000_000,
                "en",
            )
            .await?;
        store.grant(user.id, per_user as i64 * 10, "bench").await?;
        ids.push(user.id);
    }
    let started = Instant::now();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|user_id| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_user);
                for n in 0..per_user {
                    let job = PaidJob {
                        user_id,
                        job_type: "generate_image".to_owned(),
                        queue: "img".to_owned(),
                        payload: serde_json::json!({ "prompt": "a lighthouse at dusk", "n": n }),
                        price: 1,
                        idempotency_key: Some(format!("tap-{n}")),
                    };
                    let t = Instant::now();
                    store.charge_and_enqueue(&job).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut all: Vec<Duration> = Vec::with_capacity(users * per_user);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok(ChargeFigures {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: crate::percentile(&all, 0.50),
        p99_ms: crate::percentile(&all, 0.99),
    })
}
