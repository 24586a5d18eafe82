//! The job types genq ships, built from configuration. A new job type is a crate
//! under `jobs/` plus one line in [`build`]; nothing else in the framework changes.
//! The pipeline types are in [`pipelines_for`] (the promo video: [`promo`]).

mod pipelines;
pub mod promo;

pub use pipelines::{PROBE_FLOW_PARALLELISM, pipelines, pipelines_for, probe_flow, probe_gate};
pub use promo::{PROMO, PromoInput, promo};

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use genq_artifacts::{ArtifactStore, LocalArtifacts};
use genq_config::{Config, JobSettings, Protocol, ProviderKind};
use genq_core::{Job, Registry, RegistryError};
use genq_jobkit::{MediaDeps, RunSettings, retry_policy};
use genq_media::ImageLimits;
use genq_metrics::ProviderMetrics;
use genq_providers::{
    KeyPool, OpenAiClient, ProviderConfig, ProviderError, ProviderErrorKind, TaskClient, Vendor,
    VendorOptions,
    webhooks::{WebhookOptions, WebhookVerifier},
};

use genq_job_assemble_video::AssembleVideo;
use genq_job_cleanup::{Cleanup, CleanupCounters};
use genq_job_face_swap::FaceSwap;
use genq_job_generate_image::{GenerateImage, ImageProvider};
use genq_job_generate_image_prompt::GenerateImagePrompt;
use genq_job_generate_reply::GenerateReply;
use genq_job_generate_video::GenerateVideo;
use genq_job_probe::ProbeJob;
use genq_job_upscale::{Upscale, Upscaler};
use genq_job_voice_over::VoiceOver;
use genq_job_write_script::WriteScript;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    #[error("metrics: {0}")]
    Metrics(#[from] genq_metrics::MetricsError),
    #[error("metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("artifacts: {0}")]
    Artifacts(#[from] genq_artifacts::ArtifactError),
    #[error("pipelines: {0}")]
    Pipeline(#[from] genq_pipeline::PipelineError),
}

/// What the job types are built with.
pub struct CatalogDeps<'a> {
    /// genq's shared Redis connection and key prefix (key cool-downs live there).
    pub redis: genq_redis::RedisConn,
    pub prefix: String,
    /// Where provider and cleanup metrics are registered.
    pub metrics: &'a prometheus::Registry,
}

/// One client per configured provider, of its protocol.
struct Clients {
    openai: BTreeMap<String, OpenAiClient>,
    queue: BTreeMap<String, TaskClient>,
}

fn key_pool(
    name: &str,
    p: &genq_config::ProviderSection,
    deps: &CatalogDeps<'_>,
    metrics: &ProviderMetrics,
) -> Result<KeyPool, CatalogError> {
    Ok(KeyPool::new(
        name,
        &p.keys,
        deps.redis.clone(),
        &deps.prefix,
        metrics.clone(),
    )?
    .with_cool_down_settings(genq_providers::CoolDowns {
        rate_limited: Duration::from_secs(p.rate_limit_cooldown_secs),
        max_hinted: Duration::from_secs(p.max_hinted_cooldown_secs),
        billing: Duration::from_secs(p.billing_cooldown_secs),
    })
    .with_limits(key_limits(&p.limits)))
}

/// A provider's configured limits per key, as the key pool enforces them.
fn key_limits(l: &genq_config::ProviderLimits) -> genq_providers::KeyLimits {
    let defaults = genq_providers::KeyLimits::default();
    let adaptive = l.adaptive.then(|| {
        let d = genq_providers::Adaptive::default();
        let ceiling = l.max_in_flight.unwrap_or(d.ceiling);
        genq_providers::Adaptive {
            start: l
                .adaptive_start
                .or(l.max_in_flight)
                .unwrap_or(d.start)
                .min(ceiling),
            ceiling,
            increase_after: l.adaptive_increase_after.unwrap_or(d.increase_after),
            decrease: l.adaptive_decrease.unwrap_or(d.decrease),
            decrease_guard: d.decrease_guard,
        }
    });
    genq_providers::KeyLimits {
        max_in_flight: l.max_in_flight,
        requests_per_minute: l.requests_per_minute,
        tokens_per_minute: l.tokens_per_minute,
        adaptive,
        slot_lease: l
            .slot_lease_secs
            .map_or(defaults.slot_lease, Duration::from_secs),
        defer: l.defer_ms.map_or(defaults.defer, Duration::from_millis),
    }
}

/// Every configured provider's key pool (the admin shows their cool-downs).
pub fn key_pools(cfg: &Config, deps: &CatalogDeps<'_>) -> Result<Vec<KeyPool>, CatalogError> {
    let metrics = ProviderMetrics::new(deps.metrics)?;
    cfg.providers
        .iter()
        .map(|(name, p)| key_pool(name, p, deps, &metrics))
        .collect()
}

fn clients(cfg: &Config, deps: &CatalogDeps<'_>) -> Result<Clients, CatalogError> {
    let metrics = ProviderMetrics::new(deps.metrics)?;
    let mut out = Clients {
        openai: BTreeMap::new(),
        queue: BTreeMap::new(),
    };
    for (name, p) in &cfg.providers {
        let keys = key_pool(name, p, deps, &metrics)?;
        let pc = ProviderConfig {
            name: name.clone(),
            base_url: p.base_url.clone(),
            keys: p.keys.clone(),
            timeout: Duration::from_secs(p.timeout_secs),
        };
        match p.protocol() {
            Protocol::Openai => {
                out.openai
                    .insert(name.clone(), OpenAiClient::new(&pc, keys, metrics.clone())?);
            }
            Protocol::Queue => {
                let options = vendor_options(name, p)?;
                out.queue.insert(
                    name.clone(),
                    TaskClient::for_vendor(&pc, options, keys, metrics.clone())?,
                );
            }
        }
    }
    Ok(out)
}

/// The vendor a queue-style provider speaks and its settings (a ComfyUI
/// workflow file is read here; a problem names the setting).
fn vendor_options(
    name: &str,
    p: &genq_config::ProviderSection,
) -> Result<VendorOptions, CatalogError> {
    let vendor = match p.kind() {
        ProviderKind::Openai | ProviderKind::GenqTask => Vendor::GenqTask,
        ProviderKind::Fal => Vendor::Fal,
        ProviderKind::Replicate => Vendor::Replicate,
        ProviderKind::Runway => Vendor::Runway,
        ProviderKind::Kie => Vendor::Kie,
        ProviderKind::Comfyui => Vendor::ComfyUi,
    };
    let setting = |what: &str, message: String| {
        ProviderError::new(
            ProviderErrorKind::BadInput,
            format!("providers.{name}.{what}: {message}"),
        )
    };
    let mut options = VendorOptions::new(vendor);
    options.webhook = webhook_options(p);
    if let Some(secs) = p.wait_in_slot_secs {
        options.wait_in_slot = Duration::from_secs(secs);
    }
    if let Some(secs) = p.max_task_wait_secs {
        options.max_task_wait = Duration::from_secs(secs);
    }
    options.api_version = p.api_version.clone();
    options.upload_url = p.upload_url.clone();
    options.params = match serde_json::to_value(&p.params) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => serde_json::Map::new(),
        Err(e) => return Err(setting("params", e.to_string()).into()),
    };
    if let Some(path) = &p.workflow {
        let text = std::fs::read_to_string(path)
            .map_err(|e| setting("workflow", format!("cannot read {}: {e}", path.display())))?;
        let workflow: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            setting(
                "workflow",
                format!(
                    "{} is not JSON (save the workflow in API format): {e}",
                    path.display()
                ),
            )
        })?;
        options.workflow = Some(workflow);
    }
    Ok(options)
}

/// A provider's webhook settings, when it has a callback URL.
fn webhook_options(p: &genq_config::ProviderSection) -> Option<WebhookOptions> {
    Some(WebhookOptions {
        url: p.webhook_url.clone()?,
        secret: p.webhook_secret.clone(),
        jwks_url: p.webhook_jwks_url.clone(),
        fallback_poll: Duration::from_secs(p.webhook_fallback_poll_secs.unwrap_or(30)),
    })
}

/// The webhook checks of every provider with a callback URL (the admin serves
/// `/webhooks/<provider>` with them).
pub fn webhook_verifiers(cfg: &Config) -> Result<Vec<WebhookVerifier>, CatalogError> {
    let mut out = Vec::new();
    for (name, p) in &cfg.providers {
        let Some(options) = webhook_options(p) else {
            continue;
        };
        let vendor = vendor_options(name, p)?.vendor;
        out.push(WebhookVerifier::new(name, vendor, options)?);
    }
    Ok(out)
}

/// The client of the OpenAI-compatible provider that serves `job`'s chat (the bot
/// transcribes voice messages with it); `None` when that job type has none.
pub fn chat_client(
    cfg: &Config,
    deps: &CatalogDeps<'_>,
    job: &JobSettings,
) -> Result<Option<OpenAiClient>, CatalogError> {
    let Some(name) = &job.provider else {
        return Ok(None);
    };
    Ok(clients(cfg, deps)?.openai.remove(name))
}

fn poll(s: &JobSettings) -> Duration {
    Duration::from_millis(s.poll_interval_ms.unwrap_or(2000))
}

/// The run settings of a job type: its configured timeout (else `default`) and retries.
fn run(s: &JobSettings, default: Duration) -> RunSettings {
    RunSettings::new(
        s.timeout_secs.map_or(default, Duration::from_secs),
        retry_policy(s.max_attempts, s.backoff_base_ms.map(Duration::from_millis)),
    )
}

fn model(s: &JobSettings, default: &str) -> String {
    s.model.clone().unwrap_or_else(|| default.to_owned())
}

fn route<J: Job>(r: &mut Registry, s: &JobSettings) -> Result<(), RegistryError> {
    if let Some(q) = &s.queue {
        r.route(J::NAME, q)?;
    }
    Ok(())
}

/// Every job type the configuration enables (validated by `Config::load`), plus the
/// probe. Job types that need a provider are registered only when one is configured.
pub fn build(cfg: &Config, deps: &CatalogDeps<'_>) -> Result<Registry, CatalogError> {
    let clients = clients(cfg, deps)?;
    let artifacts: Arc<dyn ArtifactStore> = Arc::new(LocalArtifacts::new(&cfg.artifacts.dir)?);
    let media = MediaDeps {
        artifacts: artifacts.clone(),
        limits: ImageLimits {
            max_input_bytes: (cfg.artifacts.max_input_mb * 1024 * 1024) as usize,
            ..ImageLimits::default()
        },
    };
    let jobs = &cfg.jobs;
    let mut r = Registry::new();
    r.register(ProbeJob::new())?;

    let s = &jobs.generate_reply;
    if let Some(client) = s.provider.as_ref().and_then(|p| clients.openai.get(p)) {
        r.register(GenerateReply::new(
            client.clone(),
            model(s, "gpt-4o-mini"),
            run(s, Duration::from_secs(60)),
        ))?;
        route::<GenerateReply>(&mut r, s)?;
    }
    let s = &jobs.generate_image_prompt;
    if let Some(client) = s.provider.as_ref().and_then(|p| clients.openai.get(p)) {
        r.register(GenerateImagePrompt::new(
            client.clone(),
            model(s, "gpt-4o-mini"),
            run(s, Duration::from_secs(60)),
        ))?;
        route::<GenerateImagePrompt>(&mut r, s)?;
    }
    let s = &jobs.generate_image;
    let image_provider = s.provider.as_ref().and_then(|p| {
        clients
            .openai
            .get(p)
            .map(|c| ImageProvider::OpenAi(c.clone()))
            .or_else(|| {
                clients.queue.get(p).map(|c| ImageProvider::Queue {
                    client: c.clone(),
                    poll_interval: poll(s),
                })
            })
    });
    if let Some(provider) = image_provider {
        r.register(GenerateImage::new(
            provider,
            model(s, "gpt-image-1"),
            media.clone(),
            run(s, Duration::from_secs(180)),
        ))?;
        route::<GenerateImage>(&mut r, s)?;
    }
    let s = &jobs.generate_video;
    if let Some(client) = s.provider.as_ref().and_then(|p| clients.queue.get(p)) {
        r.register(GenerateVideo::new(
            client.clone(),
            model(s, "video-1"),
            media.clone(),
            poll(s),
            run(s, Duration::from_secs(900)),
        ))?;
        route::<GenerateVideo>(&mut r, s)?;
    }
    let s = &jobs.face_swap;
    if let Some(client) = s.provider.as_ref().and_then(|p| clients.queue.get(p)) {
        r.register(FaceSwap::new(
            client.clone(),
            model(s, "faceswap-1"),
            media.clone(),
            poll(s),
            run(s, Duration::from_secs(300)),
        ))?;
        route::<FaceSwap>(&mut r, s)?;
    }
    let s = &jobs.upscale;
    let upscaler = match s.provider.as_ref().and_then(|p| clients.queue.get(p)) {
        Some(client) => Upscaler::Provider {
            client: client.clone(),
            model: model(s, "upscale-1"),
            poll_interval: poll(s),
        },
        None => Upscaler::Local,
    };
    r.register(Upscale::new(
        upscaler,
        media.clone(),
        run(s, Duration::from_secs(300)),
    ))?;
    route::<Upscale>(&mut r, s)?;

    if cfg.promo.enabled {
        register_promo_jobs(&mut r, cfg, &clients, &media)?;
    }

    let c = &jobs.cleanup;
    let counters = CleanupCounters {
        files: prometheus::IntCounter::new(
            "genq_cleanup_freed_files_total",
            "Artifact files deleted by cleanup",
        )?,
        bytes: prometheus::IntCounter::new(
            "genq_cleanup_freed_bytes_total",
            "Artifact bytes deleted by cleanup",
        )?,
    };
    deps.metrics.register(Box::new(counters.files.clone()))?;
    deps.metrics.register(Box::new(counters.bytes.clone()))?;
    r.register(Cleanup::new(
        artifacts,
        Duration::from_secs(c.max_age_hours * 3600),
        counters,
    ))?;
    if let Some(q) = &c.queue {
        r.route(<Cleanup as Job>::NAME, q)?;
    }
    Ok(r)
}

/// The promo pipeline's own job types (write_script, voice_over, assemble_video),
/// routed to `promo.queue` when set.
fn register_promo_jobs(
    r: &mut Registry,
    cfg: &Config,
    clients: &Clients,
    media: &MediaDeps,
) -> Result<(), CatalogError> {
    let p = &cfg.promo;
    let default_run = |timeout_secs: u64| {
        RunSettings::new(Duration::from_secs(timeout_secs), retry_policy(None, None))
    };
    if let Some(client) = p
        .script_provider
        .as_ref()
        .and_then(|n| clients.openai.get(n))
    {
        r.register(WriteScript::new(
            client.clone(),
            p.script_model.clone(),
            default_run(120),
        ))?;
    }
    if let Some(client) = p
        .speech_provider
        .as_ref()
        .and_then(|n| clients.openai.get(n))
    {
        r.register(VoiceOver::new(
            client.clone(),
            p.speech_model.clone(),
            media.clone(),
            default_run(180),
        ))?;
    }
    r.register(AssembleVideo::new(media.clone(), default_run(900)))?;
    if let Some(q) = &p.queue {
        for name in [
            <WriteScript as Job>::NAME,
            <VoiceOver as Job>::NAME,
            <AssembleVideo as Job>::NAME,
        ] {
            if r.job_types().contains(&name) {
                r.route(name, q)?;
            }
        }
    }
    Ok(())
}

/// The registry builder a worker process runs once Redis is connected: the
/// configured job types, then `routes` (`type=queue,...`) applied.
pub fn registry_builder(cfg: Config, routes: Option<String>) -> genq_runtime::BuildRegistry {
    Box::new(
        move |queue: &genq_redis::RedisQueue, metrics: &prometheus::Registry| {
            let deps = CatalogDeps {
                redis: queue.connection(),
                prefix: queue.config().prefix.clone(),
                metrics,
            };
            let mut r = build(&cfg, &deps).map_err(|e| e.to_string())?;
            if let Some(routes) = routes.as_deref() {
                r.apply_routes(routes).map_err(|e| e.to_string())?;
            }
            Ok(r)
        },
    )
}

/// The periodic jobs: Cleanup on its configured cron schedule.
pub fn schedules(cfg: &Config) -> Result<Vec<genq_runtime::Scheduled>, CatalogError> {
    use std::str::FromStr;
    let schedule = cron::Schedule::from_str(&cfg.jobs.cleanup.schedule).map_err(|e| {
        CatalogError::Registry(RegistryError::InvalidRoute(format!(
            "cleanup schedule '{}': {e}",
            cfg.jobs.cleanup.schedule
        )))
    })?;
    Ok(vec![genq_runtime::Scheduled {
        job_type: <Cleanup as Job>::NAME.to_owned(),
        payload: "{}".to_owned(),
        schedule,
    }])
}
