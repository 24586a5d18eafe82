//! The stream of pipeline stage changes (`<p>:{pipelines}:pl_events`), for a
//! bot to edit its status message as stages move.

use std::{collections::BTreeMap, time::Duration};

use genq_redis::RedisQueue;
use redis::{
    AsyncCommands,
    streams::{StreamReadOptions, StreamReadReply},
};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::{PipelineError, keys::Keys};

/// One stage change. `kind`: `started`, `stage` (a stage began: `stage`, `name`),
/// `step` (a job ended: `stage`, `index`, `status`, `attempts`, `class`),
/// `fallback`, `gate_open` (`gate`, `deadline`), `gate_decided` (`gate`, `choice`,
/// `waited_ms`), `gate_timeout`, `stage_done`, `finished` (`outcome`, `stage`,
/// `class`, `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineEvent {
    /// The stream entry id (resume after it).
    pub event_id: String,
    pub pipeline_id: String,
    pub pipeline_type: String,
    pub kind: String,
    pub fields: BTreeMap<String, String>,
}

impl PipelineEvent {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Follows the stream (blocking reads on a connection of its own).
pub struct PipelineEvents {
    queue: RedisQueue,
    conn: genq_redis::RedisConn,
    key: String,
    last: String,
    buffered: std::collections::VecDeque<PipelineEvent>,
}

impl PipelineEvents {
    /// Follows events after `after` (a stream id; `None`: only new ones).
    pub async fn follow(queue: &RedisQueue, after: Option<String>) -> Result<Self, PipelineError> {
        let mut conn = queue.blocking_connection().await?;
        let key = Keys::new(queue).events();
        let last = match after {
            Some(id) => id,
            None => {
                let newest: Vec<(String, BTreeMap<String, String>)> =
                    conn.xrevrange_count(&key, "+", "-", 1).await?;
                newest
                    .first()
                    .map(|(id, _)| id.clone())
                    .unwrap_or_else(|| "0-0".to_owned())
            }
        };
        Ok(Self {
            queue: queue.clone(),
            conn,
            key,
            last,
            buffered: Default::default(),
        })
    }

    /// The next event (waits for one; reconnects on errors).
    pub async fn next(&mut self) -> PipelineEvent {
        loop {
            if let Some(ev) = self.buffered.pop_front() {
                return ev;
            }
            let opts = StreamReadOptions::default().block(1000).count(256);
            let reply: Result<StreamReadReply, _> = self
                .conn
                .xread_options(&[&self.key], &[&self.last], &opts)
                .await;
            match reply {
                Ok(reply) => {
                    for stream in reply.keys {
                        for entry in stream.ids {
                            self.last = entry.id.clone();
                            let mut fields: BTreeMap<String, String> = entry
                                .map
                                .iter()
                                .filter_map(|(k, v)| {
                                    redis::from_redis_value::<String>(v.clone())
                                        .ok()
                                        .map(|v| (k.clone(), v))
                                })
                                .collect();
                            let ev = PipelineEvent {
                                event_id: entry.id.clone(),
                                pipeline_id: fields.remove("id").unwrap_or_default(),
                                pipeline_type: fields.remove("type").unwrap_or_default(),
                                kind: fields.remove("kind").unwrap_or_default(),
                                fields,
                            };
                            self.buffered.push_back(ev);
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "pipeline event stream read failed; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Ok(c) = self.queue.blocking_connection().await {
                        self.conn = c;
                    }
                }
            }
        }
    }
}
