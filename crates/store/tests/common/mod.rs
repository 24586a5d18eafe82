//! What the store's test files share: a store in a schema of its own, a second
//! store on it (another process), final events, settling from several places at once.
#![allow(dead_code)]

use genq_core::{CompletionEvent, FailureClass, JobStatus};
use genq_store::{Settled, Store, StoreConfig};
use genq_testkit::TestSchema;

pub async fn open(test: &str) -> (Store, TestSchema) {
    let schema = TestSchema::create(test).await.expect("create schema");
    let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
        .await
        .expect("open store");
    (store, schema)
}

/// A second store (its own pool) on the same schema: another bot or settler process.
pub async fn another(schema: &TestSchema) -> Store {
    Store::connect(&StoreConfig::new(&schema.url).schema(&schema.name))
        .await
        .expect("connect a second store")
}

/// A GenerateImage job's final event after 3 runs; a failure is transient.
pub fn final_event(job_id: &str, status: JobStatus) -> CompletionEvent {
    let failed = status != JobStatus::Succeeded;
    CompletionEvent {
        event_id: "1-0".to_owned(),
        job_id: job_id.to_owned(),
        queue: "img".to_owned(),
        job_type: "generate_image".to_owned(),
        status,
        attempts: 3,
        error_class: failed.then_some(FailureClass::Transient),
        error: failed.then(|| "provider kept failing".to_owned()),
    }
}

/// `event` settled twice by each of two stores at once (two settlers that each see
/// the event twice): the outcomes.
pub async fn settle_four_times(
    first: &Store,
    second: &Store,
    event: &CompletionEvent,
) -> Vec<Settled> {
    let settles = [first.clone(), second.clone(), first.clone(), second.clone()].map(|s| {
        let event = event.clone();
        tokio::spawn(async move { s.settle(&event).await.expect("settle") })
    });
    futures::future::join_all(settles)
        .await
        .into_iter()
        .map(|r| r.expect("settle task"))
        .collect()
}

/// How many `outcomes` are `which`.
pub fn count(outcomes: &[Settled], which: &Settled) -> usize {
    outcomes.iter().filter(|o| *o == which).count()
}
