//! The bot process: Telegram updates (long polling, or a webhook served by axum),
//! the delivery worker on its own queue, the delivery router and the status loop.
//! Used by the `bot` binary and by the all-in-one `genq run` when a token is set.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use genq_artifacts::{ArtifactStore, LocalArtifacts};
use genq_config::{BotMode, Config};
use genq_core::Registry;
use genq_metrics::WorkerMetrics;
use genq_redis::RedisQueue;
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_store::Store;
use teloxide::{payloads::SetWebhookSetters, prelude::*, types::BotCommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    BotError,
    alerts::Alerts,
    app::{BotApp, Offers, Transcriber},
    delivery::{deliver::Deliver, events::route_events, status::run_status_loop},
    i18n::{Lang, t},
    metrics::BotMetrics,
    transport::{intake::Intake, send::TgBot},
};

/// The environment variable holding the bot token.
pub const TOKEN_ENV: &str = "GENQ_BOT_TOKEN";

/// How to run the bot.
pub struct BotOptions {
    pub config: Config,
    /// `GENQ_ROUTES`: job type → queue overrides.
    pub routes: Option<String>,
    pub token: String,
    /// The Bot API's URL (a local Bot API server, or a fake one in tests).
    pub api_url: Option<String>,
    /// Where the bot's `/metrics` and `/healthz` listen (none: not served).
    pub metrics_addr: Option<SocketAddr>,
    /// Webhook mode: the secret Telegram sends with every update
    /// (`GENQ_BOT_WEBHOOK_SECRET`); the same on every replica. Generated when absent.
    pub webhook_secret: Option<String>,
}

/// What to tell an operator who started the service without a token.
pub fn no_token_hint() -> String {
    format!(
        "no Telegram bot token: set {TOKEN_ENV}=123456:ABC… (from @BotFather) to serve the bot; \
         the workers, relay, settler and admin run without it"
    )
}

/// A teloxide bot for `token`, at `api_url` when given. No throttle adaptor: its
/// queue froze every chat on one chat's 429; the bot paces itself instead
/// (acknowledgements first, edits capped and coalesced, deliveries rescheduled).
pub fn telegram_bot(token: &str, api_url: Option<&str>) -> Result<TgBot, BotError> {
    if token.trim().is_empty() || !token.contains(':') {
        return Err(BotError::Setup(format!(
            "{TOKEN_ENV} does not look like a bot token (expected 123456:ABC…)"
        )));
    }
    let mut bot = Bot::new(token.trim());
    if let Some(url) = api_url.filter(|u| !u.trim().is_empty()) {
        let parsed = url::Url::parse(url)
            .map_err(|e| BotError::Setup(format!("bot API URL '{url}': {e}")))?;
        bot = bot.set_api_url(parsed);
    }
    Ok(bot)
}

async fn register_commands(bot: &TgBot) {
    for lang in [Lang::En, Lang::Ru] {
        let commands: Vec<BotCommand> = [
            "start", "new", "dialogs", "balance", "buy", "cancel", "help",
        ]
        .into_iter()
        .map(|c| BotCommand::new(c, t(lang, &format!("commands.{c}"), &[])))
        .collect();
        let mut req = bot.set_my_commands(commands);
        if lang != Lang::En {
            req = req.language_code(lang.code());
        }
        if let Err(e) = req.await {
            warn!(error = %e, "bot commands not registered");
        }
    }
}

/// Builds the bot's parts and checks the token with Telegram (`getMe`).
async fn build_app(
    opts: &BotOptions,
    queue: &RedisQueue,
    store: Store,
    prom: &prometheus::Registry,
) -> Result<Arc<BotApp>, BotError> {
    let bot = telegram_bot(&opts.token, opts.api_url.as_deref())?;
    let me = bot.get_me().await.map_err(|e| {
        BotError::Setup(format!(
            "Telegram did not accept the bot token ({TOKEN_ENV}): {e}"
        ))
    })?;
    info!(username = %me.username(), "Telegram bot identified");
    let build = genq_catalog::registry_builder(opts.config.clone(), opts.routes.clone());
    let registry = build(queue, &prometheus::Registry::new()).map_err(BotError::Setup)?;
    let offers = Offers::from_config(&opts.config, &registry);
    let deps = genq_catalog::CatalogDeps {
        redis: queue.connection(),
        prefix: queue.config().prefix.clone(),
        metrics: prom,
    };
    let transcriber =
        genq_catalog::chat_client(&opts.config, &deps, &opts.config.jobs.generate_reply)
            .map_err(|e| BotError::Setup(e.to_string()))?
            .map(|client| Transcriber {
                client,
                model: opts.config.bot.transcription_model.clone(),
            });
    let artifacts: Arc<dyn ArtifactStore> =
        Arc::new(LocalArtifacts::new(&opts.config.artifacts.dir)?);
    let metrics = BotMetrics::new(prom).map_err(|e| BotError::Setup(e.to_string()))?;
    metrics.prime_payments(opts.config.bot.packages.iter().map(|p| p.id.as_str()));
    let mut app = BotApp::new(
        bot,
        store,
        queue.clone(),
        opts.config.bot.clone(),
        offers,
        artifacts,
        transcriber,
        metrics,
    )?;
    // the time estimates' run time of a job type without history: from its timeout
    app.estimator
        .set_default_runs(registry.job_types().into_iter().filter_map(|job_type| {
            let timeout = registry.get(job_type).ok()?.timeout();
            Some((job_type.to_owned(), timeout))
        }));
    Ok(Arc::new(app))
}

/// Starts the delivery worker: the `deliver` job type on the bot's own queue.
async fn start_delivery(
    app: &Arc<BotApp>,
    queue: &RedisQueue,
    prom: &prometheus::Registry,
) -> Result<WorkerRuntime, BotError> {
    let mut registry = Registry::new();
    let delivery_queue = app.cfg.delivery_queue.clone();
    registry
        .register(Deliver::new(app.clone()))
        .and_then(|r| r.route(Deliver::NAME, &delivery_queue))
        .map_err(|e| BotError::Setup(e.to_string()))?;
    let metrics = WorkerMetrics::new(prom).map_err(|e| BotError::Setup(e.to_string()))?;
    let mut settings = WorkerSettings::new(vec![delivery_queue]);
    settings.concurrency = app.cfg.delivery_concurrency;
    settings.grace = Duration::from_secs(10);
    WorkerRuntime::start(Arc::new(registry), queue.clone(), metrics, settings)
        .await
        .map_err(|e| BotError::Setup(format!("delivery worker: {e}")))
}

/// Runs the bot until `stop`: updates, delivery, status messages, `/metrics`.
pub async fn run_bot(
    opts: BotOptions,
    queue: RedisQueue,
    store: Store,
    stop: CancellationToken,
) -> Result<(), BotError> {
    let prom = prometheus::Registry::new();
    let app = build_app(&opts, &queue, store, &prom).await?;
    register_commands(&app.bot).await;
    let delivery = start_delivery(&app, &queue, &prom).await?;
    let mut tasks = Vec::new();
    let delivery_stop = stop.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = delivery.run(delivery_stop.cancelled_owned()).await {
            error!(error = %e, "delivery worker stopped with an error");
        }
    }));
    tasks.push(tokio::spawn(keep_routing(app.clone(), stop.clone())));
    tasks.push(tokio::spawn(run_status_loop(app.clone(), stop.clone())));
    tasks.push(tokio::spawn(
        admin_alerts(&app, &opts.config, &queue, &prom)?.run(stop.clone()),
    ));
    tasks.push(tokio::spawn(crate::payments::run_refunds(
        app.clone(),
        stop.clone(),
    )));
    if let Some(addr) = opts.metrics_addr {
        let metrics_stop = stop.clone();
        let server =
            genq_runtime::http::serve(
                addr,
                prom.clone(),
                async move { metrics_stop.cancelled().await },
            )
            .await
            .map_err(|e| BotError::Setup(format!("cannot listen on {addr} for metrics: {e}")))?;
        tasks.push(tokio::spawn(async move {
            let _ = server.await;
        }));
    }
    app.estimator.warm(&app.offers.queues()).await;
    info!(mode = ?app.cfg.mode, delivery_queue = %app.cfg.delivery_queue, "bot started");
    dispatch(&app, opts.webhook_secret.clone(), stop.clone()).await?;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    info!("bot stopped");
    Ok(())
}

/// The admin-alert loop, watching the keys of every configured provider.
fn admin_alerts(
    app: &Arc<BotApp>,
    config: &Config,
    queue: &RedisQueue,
    prom: &prometheus::Registry,
) -> Result<Alerts, BotError> {
    let deps = genq_catalog::CatalogDeps {
        redis: queue.connection(),
        prefix: queue.config().prefix.clone(),
        // the pools only read cool-downs; their provider metrics are the clients'
        metrics: &prometheus::Registry::new(),
    };
    let pools =
        genq_catalog::key_pools(config, &deps).map_err(|e| BotError::Setup(e.to_string()))?;
    Alerts::new(app.clone(), pools, prom)
}

/// Runs the delivery router until `stop`, starting it again after an error (Redis
/// away at start-up, say) with back-off.
async fn keep_routing(app: Arc<BotApp>, stop: CancellationToken) {
    let mut delay = Duration::from_millis(500);
    while !stop.is_cancelled() {
        match route_events(app.clone(), app.offers.queues(), stop.clone()).await {
            Ok(()) => return,
            Err(e) => error!(error = %e, retry_in = ?delay, "delivery router stopped; restarting"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Receives updates until `stop` through the durable intake: long polling, or a
/// webhook (axum) by config.
async fn dispatch(
    app: &Arc<BotApp>,
    webhook_secret: Option<String>,
    stop: CancellationToken,
) -> Result<(), BotError> {
    let intake = Intake::new(app.clone());
    let upkeep = tokio::spawn(intake.clone().run_upkeep(stop.clone()));
    let result = match app.cfg.mode {
        BotMode::Polling => intake.clone().run_polling(stop.clone()).await,
        BotMode::Webhook => serve_webhook(app, &intake, webhook_secret, stop.clone()).await,
    };
    stop.cancel();
    intake.drain(Duration::from_secs(10)).await;
    let _ = upkeep.await;
    result
}

/// The webhook's secret: the operator's (the same on every replica) or one of this
/// replica's own.
fn webhook_secret(secret: Option<String>) -> Result<String, BotError> {
    match secret.filter(|s| !s.is_empty()) {
        Some(secret)
            if secret.len() > 256
                || !secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Err(BotError::Setup(
                "GENQ_BOT_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
                    .to_owned(),
            ))
        }
        Some(secret) => Ok(secret),
        None => {
            warn!(
                "no GENQ_BOT_WEBHOOK_SECRET: a secret of this replica's own is used; \
                 several replicas need the same one"
            );
            Ok(format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new()))
        }
    }
}

/// What the webhook route shares.
#[derive(Clone)]
struct Webhook {
    intake: Arc<Intake>,
    secret: Arc<str>,
}

/// Webhook mode: registers the URL with Telegram (with a secret shared by every
/// replica) and serves updates from axum. An update is answered 200 only once it
/// is recorded (else 500, and Telegram sends it again). A stopping replica does not
/// delete the webhook the others still serve.
async fn serve_webhook(
    app: &Arc<BotApp>,
    intake: &Arc<Intake>,
    secret: Option<String>,
    stop: CancellationToken,
) -> Result<(), BotError> {
    let raw_url = app.cfg.webhook_url.clone().unwrap_or_default();
    let url = url::Url::parse(&raw_url)
        .map_err(|e| BotError::Setup(format!("bot.webhook_url '{raw_url}': {e}")))?;
    let addr: SocketAddr = app.cfg.webhook_addr.parse().map_err(|e| {
        BotError::Setup(format!("bot.webhook_addr '{}': {e}", app.cfg.webhook_addr))
    })?;
    let secret = webhook_secret(secret)?;
    app.bot
        .set_webhook(url.clone())
        .secret_token(secret.clone())
        .await
        .map_err(|e| BotError::Setup(format!("Telegram refused the webhook: {e}")))?;
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let router = axum::Router::new()
        .route(path, axum::routing::post(on_webhook))
        .with_state(Webhook {
            intake: intake.clone(),
            secret: secret.into(),
        });
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| BotError::Setup(format!("cannot listen on {addr} for the webhook: {e}")))?;
    info!(%addr, path, "webhook listening");
    axum::serve(tcp, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|e| BotError::Setup(format!("webhook server failed: {e}")))
}

/// One update from Telegram: checked, recorded, then answered.
async fn on_webhook(
    axum::extract::State(hook): axum::extract::State<Webhook>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(given, hook.secret.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            "wrong or missing X-Telegram-Bot-Api-Secret-Token".to_owned(),
        );
    }
    let update: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            );
        }
    };
    let Some(id) = update.get("update_id").and_then(serde_json::Value::as_i64) else {
        return (
            StatusCode::BAD_REQUEST,
            "the update has no numeric update_id".to_owned(),
        );
    };
    match hook.intake.accept(vec![(id, update)]).await {
        Ok(()) => (StatusCode::OK, String::new()),
        Err(e) => {
            warn!(update_id = id, error = %e, "update not recorded; Telegram will send it again");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the update could not be recorded".to_owned(),
            )
        }
    }
}
