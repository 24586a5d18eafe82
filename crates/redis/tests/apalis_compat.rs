//! genq's backend under plain apalis: WorkerBuilder, a handler fn with extractors,
//! apalis layers, and a Monitor, unchanged.

use std::time::Duration;

use apalis::layers::limit::ConcurrencyLimitLayer;
use apalis_core::{
    error::BoxDynError,
    monitor::Monitor,
    task::{attempt::Attempt, task_id::TaskId},
    worker::builder::WorkerBuilder,
};
use genq_core::{JobError, JobStatus};
use genq_redis::{ConsumerOptions, NewJob, QueueConsumer, RawJob, RedisConfig, RedisQueue};
use genq_testkit::{cleanup_prefix, redis_url, unique_prefix, wait_until};

async fn handler(job: RawJob, id: TaskId, attempt: Attempt) -> Result<String, BoxDynError> {
    assert_eq!(id.to_string(), job.id);
    if job.payload == "\"fail\"" {
        return Err(Box::new(JobError::bad_input("told to fail")));
    }
    Ok(format!("{} on attempt {}", job.payload, attempt.current()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_apalis_worker_and_monitor_run_on_the_genq_backend() {
    let prefix = unique_prefix("apalis");
    let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
        .await
        .unwrap();
    let consumer = QueueConsumer::start(queue.clone(), "plain", "w1", ConsumerOptions::default())
        .await
        .unwrap();

    let ok = queue
        .push(NewJob::new("plain", "any", "\"hello\""))
        .await
        .unwrap()
        .id;
    let bad = queue
        .push(NewJob::new("plain", "any", "\"fail\""))
        .await
        .unwrap()
        .id;

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let c = consumer.clone();
    let monitor = Monitor::new().register(move |_| {
        WorkerBuilder::new("plain-worker")
            .backend(c.backend())
            .layer(ConcurrencyLimitLayer::new(4))
            .build(handler)
    });
    let run = tokio::spawn(monitor.run_with_signal(async move {
        let _ = rx.await;
        Ok(())
    }));

    let done = wait_until(Duration::from_secs(20), || async {
        let a = queue.job("plain", &ok).await.ok().flatten()?;
        let b = queue.job("plain", &bad).await.ok().flatten()?;
        (a.status.is_final() && b.status.is_final()).then_some((a, b))
    })
    .await
    .expect("both jobs end");
    assert_eq!(done.0.status, JobStatus::Succeeded);
    assert_eq!(
        done.0.result,
        Some(serde_json::json!("\"hello\" on attempt 1"))
    );
    assert_eq!(
        done.1.status,
        JobStatus::Failed,
        "bad input is never retried"
    );
    assert_eq!(done.1.error.as_deref(), Some("told to fail"));

    let _ = tx.send(());
    run.await.unwrap().unwrap();
    cleanup_prefix(&redis_url(), &prefix).await;
}
