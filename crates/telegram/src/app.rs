//! What every part of the bot shares: Telegram, the store, Redis, the offers and
//! their prices, the guard rails.

use std::{sync::Arc, time::Duration};

use genq_artifacts::ArtifactStore;
use genq_config::{BotConfig, Config};
use genq_core::Registry;
use genq_providers::OpenAiClient;
use genq_redis::RedisQueue;
use genq_store::Store;

use crate::{
    BotError,
    conversation::chat_state::ChatStates,
    delivery::tracking::Tracker,
    metrics::BotMetrics,
    orders::{
        estimate::Estimator,
        limits::{JobSlots, RateLimits, UserLimiter},
    },
    transport::send::{ChatCooling, TgBot},
};

/// How long a chat's conversation state and stashed button values live.
pub const STATE_TTL: Duration = Duration::from_secs(24 * 3600);

/// A job type the bot offers: where it goes and what it costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub job_type: &'static str,
    pub queue: String,
    pub price: i64,
}

/// Everything the bot can sell, from the configuration (a job type without a
/// provider is not offered).
#[derive(Debug, Clone, Default)]
pub struct Offers {
    pub reply: Option<Offer>,
    /// GenerateImagePrompt, priced for the picture it leads to.
    pub picture: Option<Offer>,
    /// Where the GenerateImage follow-up of a picture runs.
    pub picture_image_queue: Option<String>,
    pub upscale: Option<Offer>,
    pub face_swap: Option<Offer>,
    pub video: Option<Offer>,
    /// The promo-video pipeline (`[promo]`), when enabled and its jobs are configured.
    pub promo: Option<PromoOffer>,
}

impl Offers {
    /// The offers `registry` (the configured job types) allows, priced by `cfg`.
    pub fn from_config(cfg: &Config, registry: &Registry) -> Self {
        let jobs = &cfg.jobs;
        let offer = |job_type: &'static str, price: i64| {
            registry.queue_of(job_type).ok().map(|q| Offer {
                job_type,
                queue: q.to_owned(),
                price,
            })
        };
        let image_queue = registry.queue_of("generate_image").ok().map(str::to_owned);
        Self {
            reply: offer("generate_reply", jobs.generate_reply.price),
            picture: image_queue.as_ref().and_then(|_| {
                offer(
                    "generate_image_prompt",
                    jobs.generate_image_prompt.price + jobs.generate_image.price,
                )
            }),
            picture_image_queue: image_queue,
            upscale: offer("upscale", jobs.upscale.price),
            face_swap: offer("face_swap", jobs.face_swap.price),
            video: offer("generate_video", jobs.generate_video.price),
            promo: promo_offer(cfg, registry),
        }
    }

    /// Every queue an offered job runs on (the event router follows them).
    pub fn queues(&self) -> Vec<String> {
        let mut qs: Vec<String> = [
            &self.reply,
            &self.picture,
            &self.upscale,
            &self.face_swap,
            &self.video,
            &self.promo.as_ref().map(|p| p.offer.clone()),
        ]
        .into_iter()
        .flatten()
        .map(|o| o.queue.clone())
        .chain(self.picture_image_queue.clone())
        .collect();
        qs.sort();
        qs.dedup();
        qs
    }

    fn price(o: &Option<Offer>) -> i64 {
        o.as_ref().map(|o| o.price).unwrap_or(0)
    }

    pub fn reply_price(&self) -> i64 {
        Self::price(&self.reply)
    }
    pub fn picture_price(&self) -> i64 {
        Self::price(&self.picture)
    }
    pub fn upscale_price(&self) -> i64 {
        Self::price(&self.upscale)
    }
    pub fn face_swap_price(&self) -> i64 {
        Self::price(&self.face_swap)
    }
    pub fn video_price(&self) -> i64 {
        Self::price(&self.video)
    }
    pub fn promo_price(&self) -> Option<i64> {
        self.promo.as_ref().map(|p| p.offer.price)
    }
}

/// The promo video as the bot offers it (`[promo]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoOffer {
    /// Job type `promo` on queue `pipelines`, at the configured price.
    pub offer: Offer,
    /// Pictures shown at the pictures' approval (an album).
    pub image_previews: usize,
    /// Clips shown at the clips' approval.
    pub video_previews: usize,
    /// How long an approval waits.
    pub approval_timeout: Duration,
}

/// The promo video, when `[promo]` is enabled and its own job types are registered
/// (they are, with the providers its validation asks for).
fn promo_offer(cfg: &Config, registry: &Registry) -> Option<PromoOffer> {
    let p = &cfg.promo;
    if !p.enabled || registry.queue_of("write_script").is_err() {
        return None;
    }
    Some(PromoOffer {
        offer: Offer {
            job_type: genq_catalog::PROMO,
            queue: genq_pipeline::PIPELINES_QUEUE.to_owned(),
            price: p.price,
        },
        image_previews: p.image_previews as usize,
        video_previews: p.video_previews as usize,
        approval_timeout: Duration::from_secs(p.approval_timeout_secs),
    })
}

/// Voice messages become text through an OpenAI-compatible transcription API.
#[derive(Clone)]
pub struct Transcriber {
    pub client: OpenAiClient,
    pub model: String,
}

/// The bot's shared parts (cheap to clone behind an `Arc`).
pub struct BotApp {
    pub bot: TgBot,
    pub store: Store,
    pub queue: RedisQueue,
    pub cfg: BotConfig,
    pub offers: Offers,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub limiter: UserLimiter,
    pub slots: JobSlots,
    pub states: ChatStates,
    pub tracker: Tracker,
    pub transcriber: Option<Transcriber>,
    pub metrics: BotMetrics,
    /// Chats Telegram asked this replica to slow down for.
    pub cooling: ChatCooling,
    /// This replica's id (the status loop's lease, the intake's claims).
    pub instance: String,
    /// The acknowledgement's time estimates (queue figures cached per queue).
    pub estimator: Estimator,
    /// Pipelines (the promo video): view, signal.
    pub pipelines: genq_pipeline::PipelineClient,
}

impl BotApp {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bot: TgBot,
        store: Store,
        queue: RedisQueue,
        cfg: BotConfig,
        offers: Offers,
        artifacts: Arc<dyn ArtifactStore>,
        transcriber: Option<Transcriber>,
        metrics: BotMetrics,
    ) -> Result<Self, BotError> {
        let conn = queue.connection();
        let prefix = queue.config().prefix.clone();
        let limits = RateLimits {
            per_minute: cfg.requests_per_minute,
            per_hour: cfg.requests_per_hour,
        };
        Ok(Self {
            limiter: UserLimiter::new(conn.clone(), &prefix, limits),
            slots: JobSlots::new(conn.clone(), &prefix, cfg.max_concurrent_jobs),
            states: ChatStates::new(conn.clone(), &prefix, STATE_TTL),
            tracker: Tracker::new(conn, &prefix, store.clone()),
            estimator: Estimator::new(queue.clone(), &cfg.delivery_queue),
            pipelines: genq_pipeline::PipelineClient::new(queue.clone()),
            bot,
            store,
            queue,
            cfg,
            offers,
            artifacts,
            transcriber,
            metrics,
            cooling: ChatCooling::default(),
            instance: format!("bot-{}", ulid::Ulid::new()),
        })
    }

    /// genq's key prefix (the bot's keys are under `<prefix>:bot:`).
    pub fn prefix(&self) -> &str {
        &self.queue.config().prefix
    }
}
