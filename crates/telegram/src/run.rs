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
use teloxide::{
    adaptors::{Throttle, throttle::Settings},
    payloads::SetWebhookSetters,
    prelude::*,
    types::BotCommand,
    update_listeners::webhooks,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    BotError,
    app::{BotApp, Offers, Transcriber},
    delivery::Deliver,
    events::route_events,
    handlers::schema,
    i18n::{Lang, t},
    metrics::BotMetrics,
    send::TgBot,
    status::run_status_loop,
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

/// A teloxide bot for `token`, at `api_url` when given, behind teloxide's throttle
/// (per-chat and global limits; 429s are returned, not retried inside it).
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
    Ok(Throttle::spawn_with_settings(
        bot,
        Settings::default().no_retry(),
    ))
}

async fn register_commands(bot: &TgBot) {
    for lang in [Lang::En, Lang::Ru] {
        let commands: Vec<BotCommand> = ["start", "new", "balance", "cancel", "help"]
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
    Ok(Arc::new(BotApp::new(
        bot,
        store,
        queue.clone(),
        opts.config.bot.clone(),
        offers,
        artifacts,
        transcriber,
        metrics,
    )?))
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
    info!(mode = ?app.cfg.mode, delivery_queue = %app.cfg.delivery_queue, "bot started");
    dispatch(&app, opts.webhook_secret.clone(), stop.clone()).await?;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    info!("bot stopped");
    Ok(())
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

/// Receives updates until `stop`: long polling, or a webhook (axum) by config.
async fn dispatch(
    app: &Arc<BotApp>,
    webhook_secret: Option<String>,
    stop: CancellationToken,
) -> Result<(), BotError> {
    let mut dispatcher = Dispatcher::builder(app.bot.clone(), schema())
        .dependencies(dptree::deps![app.clone()])
        .default_handler(|_| async {})
        .error_handler(LoggingErrorHandler::with_custom_text(
            "update handler failed",
        ))
        .build();
    let token = dispatcher.shutdown_token();
    tokio::spawn(async move {
        stop.cancelled().await;
        // the dispatcher may not be running yet: try until it is
        loop {
            match token.shutdown() {
                Ok(done) => {
                    done.await;
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    match app.cfg.mode {
        BotMode::Polling => dispatcher.dispatch().await,
        BotMode::Webhook => serve_webhook(app, dispatcher, webhook_secret).await?,
    }
    Ok(())
}

/// Webhook mode: registers the URL with Telegram (with a secret shared by every
/// replica) and serves updates from axum. Unlike teloxide's `webhooks::axum`, a
/// stopping replica does not delete the webhook the others still serve.
async fn serve_webhook(
    app: &Arc<BotApp>,
    mut dispatcher: Dispatcher<TgBot, BotError, teloxide::dispatching::DefaultKey>,
    secret: Option<String>,
) -> Result<(), BotError> {
    let raw_url = app.cfg.webhook_url.clone().unwrap_or_default();
    let url = url::Url::parse(&raw_url)
        .map_err(|e| BotError::Setup(format!("bot.webhook_url '{raw_url}': {e}")))?;
    let addr: SocketAddr = app.cfg.webhook_addr.parse().map_err(|e| {
        BotError::Setup(format!("bot.webhook_addr '{}': {e}", app.cfg.webhook_addr))
    })?;
    let mut options = webhooks::Options::new(addr, url.clone());
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        if secret.len() > 256
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(BotError::Setup(
                "GENQ_BOT_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
                    .to_owned(),
            ));
        }
        options = options.secret_token(secret);
    } else {
        warn!(
            "no GENQ_BOT_WEBHOOK_SECRET: a secret of this replica's own is used; \
             several replicas need the same one"
        );
    }
    let secret = options.get_or_gen_secret_token().to_owned();
    app.bot
        .set_webhook(url)
        .secret_token(secret)
        .await
        .map_err(|e| BotError::Setup(format!("Telegram refused the webhook: {e}")))?;
    let (listener, stop_flag, router) = webhooks::axum_no_setup(options);
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| BotError::Setup(format!("cannot listen on {addr} for the webhook: {e}")))?;
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(tcp, router)
            .with_graceful_shutdown(stop_flag)
            .await
        {
            error!(error = %e, "webhook server failed");
        }
    });
    info!(%addr, "webhook listening");
    dispatcher
        .dispatch_with_listener(
            listener,
            LoggingErrorHandler::with_custom_text("update listener failed"),
        )
        .await;
    let _ = server.await;
    Ok(())
}
