//! [`EventFollower`]: follows the completion event streams of some queues (one
//! dedicated connection per queue, since a blocking read would stall a shared one).

use std::{collections::HashMap, time::Duration};

use genq_core::CompletionEvent;
use redis::{
    AsyncCommands,
    streams::{StreamReadOptions, StreamReadReply},
};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::warn;

use crate::{error::QueueError, queue::RedisQueue};

/// Where a follower starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStart {
    /// Only events after the follower started.
    New,
    /// Every event still kept.
    Beginning,
    /// After the given stream entry id (resuming).
    After(String),
}

/// Receives completion events of the queues it follows.
pub struct EventFollower {
    rx: mpsc::Receiver<CompletionEvent>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for EventFollower {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl EventFollower {
    /// Starts following `queues` from `start`.
    pub async fn start(
        queue: &RedisQueue,
        queues: &[String],
        start: EventStart,
    ) -> Result<Self, QueueError> {
        let (tx, rx) = mpsc::channel(1024);
        let mut tasks = Vec::new();
        for name in queues {
            genq_core::validate_queue_name(name)?;
            let mut conn = queue.blocking_connection().await?;
            let key = queue.events_key(name);
            let mut last = match &start {
                EventStart::Beginning => "0-0".to_owned(),
                EventStart::After(id) => id.clone(),
                EventStart::New => {
                    let info: Vec<redis::Value> = redis::cmd("XREVRANGE")
                        .arg(&key)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query_async(&mut conn)
                        .await?;
                    last_entry_id(&info).unwrap_or_else(|| "0-0".to_owned())
                }
            };
            let tx = tx.clone();
            let queue = queue.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                let opts = StreamReadOptions::default().block(1000).count(256);
                loop {
                    let reply: Result<StreamReadReply, _> = conn.xread_options(&[&key], &[&last], &opts).await;
                    match reply {
                        Ok(reply) => {
                            for stream in reply.keys {
                                for entry in stream.ids {
                                    last = entry.id.clone();
                                    if let Some(ev) = to_event(&name, &entry.id, &entry.map)
                                        && tx.send(ev).await.is_err()
                                    {
                                        return;
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            warn!(queue = %name, error = %e, "event stream read failed; reconnecting");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            if let Ok(c) = queue.blocking_connection().await {
                                conn = c;
                            }
                        }
                    }
                }
            }));
        }
        Ok(Self { rx, tasks })
    }

    /// The next event; `None` only if every follower task ended.
    pub async fn next(&mut self) -> Option<CompletionEvent> {
        self.rx.recv().await
    }
}

fn last_entry_id(reply: &[redis::Value]) -> Option<String> {
    match reply.first()? {
        redis::Value::Array(entry) => match entry.first()? {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        },
        _ => None,
    }
}

fn to_event(
    queue: &str,
    event_id: &str,
    map: &HashMap<String, redis::Value>,
) -> Option<CompletionEvent> {
    let get = |k: &str| -> Option<String> {
        match map.get(k)? {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            redis::Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        }
        .filter(|s| !s.is_empty())
    };
    Some(CompletionEvent {
        event_id: event_id.to_owned(),
        job_id: get("id")?,
        queue: queue.to_owned(),
        job_type: get("type").unwrap_or_default(),
        status: get("status")?.parse().ok()?,
        attempts: get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
        error_class: get("class").and_then(|c| c.parse().ok()),
        error: get("error"),
    })
}
