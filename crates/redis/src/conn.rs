//! Connections for every kind of [`RedisTarget`]: one server, a Sentinel-managed
//! primary, a Redis Cluster.
//!
//! - [`RedisConn`]: the shared, multiplexed, auto-reconnecting connection every genq
//!   part uses (`AsyncCommands`, pipelines and `Script::invoke_async` work on it as
//!   on a `ConnectionManager`). On a Cluster each command goes to its key's shard;
//!   a pipeline whose commands live in different slots is split into one-command
//!   pipelines (an atomic one cannot be and fails with the server's CROSSSLOT).
//! - [`SentinelManager`]: a `ConnectionManager` to the primary the sentinels name,
//!   swapped for one to the new primary when the old one refuses writes
//!   (`READONLY`), drops or refuses connections — workers follow a failover
//!   without a restart.
//! - [`Connector`]: builds those, a dedicated connection for blocking reads
//!   (`XREAD BLOCK`), and pub/sub subscriptions (RESP3 pushes on a Cluster).

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, stream::BoxStream};
use redis::{
    Cmd, ConnectionAddr, ErrorKind, Pipeline, PushKind, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::target::{Credentials, RedisTarget};

/// How long a connection waits to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two attempts to ask the sentinels for a new primary (a failover takes a
/// second or more; every failing request would otherwise ask again).
const SENTINEL_REFRESH_INTERVAL: Duration = Duration::from_millis(250);
/// The longest a question to the sentinels may take.
const SENTINEL_ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection genq parts share (cheap to clone; see the module docs).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Sentinel(SentinelManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Sentinel(_) => "RedisConn::Sentinel",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl From<ConnectionManager> for RedisConn {
    fn from(conn: ConnectionManager) -> Self {
        Self::Single(conn)
    }
}

impl RedisConn {
    /// True on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => cluster_pipeline(c, pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A pipeline on a Cluster: as one when its commands share a slot, else one
/// pipeline per command, in parallel, the replies in order.
fn cluster_pipeline<'a>(
    conn: &'a mut ClusterConnection,
    pipeline: &'a Pipeline,
    offset: usize,
    count: usize,
) -> RedisFuture<'a, Vec<Value>> {
    async move {
        match conn.req_packed_commands(pipeline, offset, count).await {
            Err(e) if is_cross_slot(&e) && !pipeline.is_transaction() => {
                let each = pipeline.cmd_iter().map(|cmd| {
                    let mut conn = conn.clone();
                    let mut one = redis::pipe();
                    one.add_command(cmd.clone());
                    async move {
                        let mut reply = conn.req_packed_commands(&one, 0, 1).await?;
                        Ok::<_, RedisError>(reply.pop().unwrap_or(Value::Nil))
                    }
                });
                futures::future::try_join_all(each).await
            }
            other => other,
        }
    }
    .boxed()
}

fn is_cross_slot(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::CrossSlot)
}

/// The sentinels of a primary, shared by every connection to it.
type Sentinels = Arc<Mutex<SentinelClient>>;

/// A `ConnectionManager` to the primary the sentinels name, replaced when that
/// primary stops being one (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct SentinelManager {
    inner: Arc<SentinelInner>,
}

struct SentinelInner {
    sentinels: Sentinels,
    config: ConnectionManagerConfig,
    /// Bumped at each swap: a request that failed on an older connection does not
    /// swap again (no storm of refreshes after one failover).
    generation: AtomicU64,
    current: RwLock<ConnectionManager>,
    /// When the sentinels were last asked; held while asking.
    last_ask: Mutex<Option<Instant>>,
}

impl SentinelManager {
    /// Asks the sentinels for the primary and connects to it.
    pub async fn connect(
        sentinels: Sentinels,
        config: ConnectionManagerConfig,
    ) -> RedisResult<Self> {
        let conn = primary_manager(&sentinels, &config).await?;
        Ok(Self {
            inner: Arc::new(SentinelInner {
                sentinels,
                config,
                generation: AtomicU64::new(0),
                current: RwLock::new(conn),
                last_ask: Mutex::new(None),
            }),
        })
    }

    fn current(&self) -> (u64, ConnectionManager) {
        let generation = self.inner.generation.load(Ordering::Acquire);
        let conn = match self.inner.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        (generation, conn)
    }

    /// Connects to the primary the sentinels name now, unless another request did
    /// since `seen` failed, or the sentinels were asked a moment ago.
    async fn follow_primary(&self, seen: u64) {
        let mut last_ask = self.inner.last_ask.lock().await;
        if self.inner.generation.load(Ordering::Acquire) != seen
            || last_ask.is_some_and(|t| t.elapsed() < SENTINEL_REFRESH_INTERVAL)
        {
            return;
        }
        *last_ask = Some(Instant::now());
        let asked = tokio::time::timeout(
            SENTINEL_ASK_TIMEOUT,
            primary_manager(&self.inner.sentinels, &self.inner.config),
        )
        .await;
        match asked {
            Ok(Ok(conn)) => {
                match self.inner.current.write() {
                    Ok(mut c) => *c = conn,
                    Err(poisoned) => *poisoned.into_inner() = conn,
                }
                self.inner.generation.fetch_add(1, Ordering::AcqRel);
                info!("connected to the primary the sentinels name now");
            }
            Ok(Err(e)) => {
                warn!(error = %e, "the sentinels name no reachable primary yet (failover in progress?)")
            }
            Err(_) => warn!("the sentinels did not answer within {SENTINEL_ASK_TIMEOUT:?}"),
        }
    }
}

/// A `ConnectionManager` to the primary the sentinels name.
async fn primary_manager(
    sentinels: &Sentinels,
    config: &ConnectionManagerConfig,
) -> RedisResult<ConnectionManager> {
    let client = sentinels.lock().await.async_get_client().await?;
    ConnectionManager::new_with_config(client, config.clone()).await
}

/// Whether an error means the connection no longer reaches a writable primary.
fn lost_primary(e: &RedisError) -> bool {
    e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_io_error()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
        || e.code() == Some("UNBLOCKED")
}

/// Whether the request surely did not run (so it may be sent again at once).
fn not_run(e: &RedisError) -> bool {
    e.is_connection_refusal() || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// A `READONLY` reply inside a pipeline's replies.
fn pipeline_hit_replica(values: &[Value]) -> bool {
    values
        .iter()
        .any(|v| matches!(v, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::ReadOnly)))
}

impl ConnectionLike for SentinelManager {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            let (generation, mut conn) = self.current();
            match conn.req_packed_command(cmd).await {
                Err(e) if lost_primary(&e) => {
                    self.follow_primary(generation).await;
                    let (now, mut conn) = self.current();
                    if now != generation && not_run(&e) {
                        return conn.req_packed_command(cmd).await;
                    }
                    Err(e)
                }
                other => other,
            }
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            let (generation, mut conn) = self.current();
            let reply = conn.req_packed_commands(pipeline, offset, count).await;
            match &reply {
                Err(e) if lost_primary(e) => self.follow_primary(generation).await,
                Ok(values) if pipeline_hit_replica(values) => self.follow_primary(generation).await,
                _ => {}
            }
            reply
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.current().1.get_db()
    }
}

/// A pub/sub message: its channel and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubMessage {
    pub channel: String,
    pub payload: String,
}

/// Builds connections to a [`RedisTarget`] (see the module docs).
pub struct Connector {
    target: RedisTarget,
    sentinels: Option<Sentinels>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("kind", &self.target.kind())
            .finish()
    }
}

impl Connector {
    /// A connector for `target` (nothing is connected yet).
    pub fn new(target: RedisTarget) -> RedisResult<Self> {
        let sentinels = match &target {
            RedisTarget::Sentinel {
                sentinels,
                master,
                db,
                credentials,
            } => Some(Arc::new(Mutex::new(sentinel_client(
                sentinels,
                master,
                *db,
                credentials,
            )?))),
            _ => None,
        };
        Ok(Self { target, sentinels })
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// A connection whose requests wait at most `response_timeout` for a reply.
    pub async fn connect(&self, response_timeout: Duration) -> RedisResult<RedisConn> {
        match (&self.target, &self.sentinels) {
            (RedisTarget::Single(url), _) => {
                let client = redis::Client::open(url.as_str())?;
                let conn =
                    ConnectionManager::new_with_config(client, manager_config(response_timeout))
                        .await?;
                Ok(RedisConn::Single(conn))
            }
            (RedisTarget::Sentinel { .. }, Some(sentinels)) => Ok(RedisConn::Sentinel(
                SentinelManager::connect(sentinels.clone(), manager_config(response_timeout))
                    .await?,
            )),
            (RedisTarget::Cluster { nodes, credentials }, _) => {
                let conn = cluster_builder(nodes, credentials)
                    .response_timeout(response_timeout)
                    .build()?
                    .get_async_connection()
                    .await?;
                Ok(RedisConn::Cluster(conn))
            }
            (RedisTarget::Sentinel { .. }, None) => Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "sentinel target without sentinels",
            ))),
        }
    }

    /// Subscribes to `channels`; the stream ends when the subscription's connection
    /// does (resubscribe then). On a Cluster the client resubscribes by itself.
    pub async fn subscribe(
        &self,
        channels: &[String],
    ) -> RedisResult<BoxStream<'static, PubSubMessage>> {
        let client = match (&self.target, &self.sentinels) {
            (RedisTarget::Single(url), _) => redis::Client::open(url.as_str())?,
            (RedisTarget::Sentinel { .. }, Some(sentinels)) => {
                sentinels.lock().await.async_get_client().await?
            }
            (RedisTarget::Cluster { nodes, credentials }, _) => {
                return cluster_subscribe(nodes, credentials, channels).await;
            }
            (RedisTarget::Sentinel { .. }, None) => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "sentinel target without sentinels",
                )));
            }
        };
        let mut pubsub = client.get_async_pubsub().await?;
        for channel in channels {
            pubsub.subscribe(channel).await?;
        }
        Ok(pubsub
            .into_on_message()
            .map(|m| PubSubMessage {
                channel: m.get_channel_name().to_owned(),
                payload: m.get_payload().unwrap_or_default(),
            })
            .boxed())
    }
}

fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}

fn sentinel_client(
    sentinels: &[(String, u16)],
    master: &str,
    db: i64,
    credentials: &Credentials,
) -> RedisResult<SentinelClient> {
    let addrs = sentinels
        .iter()
        .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
    let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
        .set_client_to_redis_db(db);
    if let Some(user) = &credentials.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = &credentials.password {
        builder = builder.set_client_to_redis_password(password);
    }
    builder.build()
}

fn cluster_builder(nodes: &[(String, u16)], credentials: &Credentials) -> ClusterClientBuilder {
    let urls: Vec<String> = nodes
        .iter()
        .map(|(host, port)| format!("redis://{host}:{port}/"))
        .collect();
    let mut builder = ClusterClientBuilder::new(urls).connection_timeout(CONNECT_TIMEOUT);
    if let Some(user) = &credentials.username {
        builder = builder.username(user);
    }
    if let Some(password) = &credentials.password {
        builder = builder.password(password);
    }
    builder
}

/// Pub/sub on a Cluster: a connection of its own speaking RESP3, whose pushes
/// arrive on a channel; the connection lives as long as the stream.
async fn cluster_subscribe(
    nodes: &[(String, u16)],
    credentials: &Credentials,
    channels: &[String],
) -> RedisResult<BoxStream<'static, PubSubMessage>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut conn = cluster_builder(nodes, credentials)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()?
        .get_async_connection()
        .await?;
    for channel in channels {
        conn.subscribe(channel).await?;
    }
    let stream = futures::stream::unfold((rx, conn), |(mut rx, conn)| async move {
        loop {
            let push = rx.recv().await?;
            if let Some(msg) = push_message(push) {
                return Some((msg, (rx, conn)));
            }
        }
    });
    Ok(stream.boxed())
}

/// A pub/sub message from a RESP3 push (`message` or `smessage`), if it is one.
fn push_message(push: redis::PushInfo) -> Option<PubSubMessage> {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return None;
    }
    let mut data = push.data.into_iter();
    let channel: String = redis::from_redis_value(data.next()?).ok()?;
    let payload: String = redis::from_redis_value(data.next()?).ok()?;
    Some(PubSubMessage { channel, payload })
}
