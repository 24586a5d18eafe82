//! genq's configuration: one TOML file (`--config`, `GENQ_CONFIG`), environment
//! overrides for secrets, checked at start-up with errors that name the setting.
//! `config/genq.example.toml` documents every setting.
//!
//! Overrides: `GENQ_PROVIDER_<NAME>_KEYS` (comma-separated) and
//! `GENQ_PROVIDER_<NAME>_BASE_URL`, `<NAME>` upper-cased (`llm` → `GENQ_PROVIDER_LLM_KEYS`).

use std::{collections::BTreeMap, path::PathBuf, str::FromStr};

use serde::Deserialize;

/// A setting is wrong: the message names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{setting}: {problem}")]
    Invalid { setting: String, problem: String },
}

fn invalid(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.into(),
        problem: problem.into(),
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub artifacts: ArtifactsConfig,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSection>,
    #[serde(default)]
    pub jobs: JobsSection,
    #[serde(default)]
    pub bot: BotConfig,
    /// The promo-video pipeline (`[promo]`); off unless `enabled`.
    #[serde(default)]
    pub promo: PromoSettings,
}

/// The promo-video pipeline (`[promo]`): brief → script → approve → images →
/// approve → clips → approve → voice-over → assembled video.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoSettings {
    /// Whether the `promo` pipeline type (and its job types) is offered.
    #[serde(default)]
    pub enabled: bool,
    /// Credits a promo video costs (charged once for the whole pipeline).
    #[serde(default = "default_promo_price")]
    pub price: i64,
    /// Segments of the script's intro, main part and outro.
    #[serde(default = "default_promo_intro")]
    pub intro: u32,
    #[serde(default = "default_promo_main")]
    pub main: u32,
    #[serde(default = "default_promo_outro")]
    pub outro: u32,
    /// Seconds each segment (one image, one clip) lasts.
    #[serde(default = "default_promo_segment_secs")]
    pub segment_secs: u32,
    /// Images generated at once.
    #[serde(default = "default_promo_parallelism")]
    pub image_parallelism: usize,
    /// Clips animated at once.
    #[serde(default = "default_promo_parallelism")]
    pub clip_parallelism: usize,
    /// How long each approval waits for the user.
    #[serde(default = "default_promo_approval_timeout")]
    pub approval_timeout_secs: u64,
    /// The OpenAI-protocol provider writing the script.
    #[serde(default)]
    pub script_provider: Option<String>,
    #[serde(default = "default_promo_script_model")]
    pub script_model: String,
    /// The OpenAI-protocol provider speaking the voice-over.
    #[serde(default)]
    pub speech_provider: Option<String>,
    #[serde(default = "default_promo_speech_model")]
    pub speech_model: String,
    /// The voice-over's voice.
    #[serde(default = "default_promo_voice")]
    pub voice: String,
    /// Size of each segment's image, `WIDTHxHEIGHT` (each side 64-4096).
    #[serde(default = "default_promo_image_size")]
    pub image_size: String,
    /// Images the bot shows for approval (the rest are counted).
    #[serde(default = "default_promo_image_previews")]
    pub image_previews: u32,
    /// Clips the bot shows for approval.
    #[serde(default = "default_promo_video_previews")]
    pub video_previews: u32,
    /// Queue of the promo's own job types (write_script, voice_over,
    /// assemble_video); default: each type's own (`text`, `text`, `video`).
    #[serde(default)]
    pub queue: Option<String>,
}

/// The most segments one part of a promo may have.
pub const PROMO_MAX_PART_SEGMENTS: u32 = 30;
/// The longest promo video, in seconds.
pub const PROMO_MAX_TOTAL_SECS: u32 = 600;
/// The longest approval wait, in seconds (4 h).
pub const PROMO_MAX_APPROVAL_SECS: u64 = 4 * 3600;

fn default_promo_price() -> i64 {
    50
}
fn default_promo_intro() -> u32 {
    3
}
fn default_promo_main() -> u32 {
    4
}
fn default_promo_outro() -> u32 {
    3
}
fn default_promo_segment_secs() -> u32 {
    5
}
fn default_promo_parallelism() -> usize {
    3
}
fn default_promo_approval_timeout() -> u64 {
    600
}
fn default_promo_script_model() -> String {
    "gpt-4o-mini".to_owned()
}
fn default_promo_speech_model() -> String {
    "tts-1".to_owned()
}
fn default_promo_voice() -> String {
    "alloy".to_owned()
}
fn default_promo_image_size() -> String {
    "1024x1792".to_owned()
}
fn default_promo_image_previews() -> u32 {
    3
}
fn default_promo_video_previews() -> u32 {
    2
}

impl Default for PromoSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            price: default_promo_price(),
            intro: default_promo_intro(),
            main: default_promo_main(),
            outro: default_promo_outro(),
            segment_secs: default_promo_segment_secs(),
            image_parallelism: default_promo_parallelism(),
            clip_parallelism: default_promo_parallelism(),
            approval_timeout_secs: default_promo_approval_timeout(),
            script_provider: None,
            script_model: default_promo_script_model(),
            speech_provider: None,
            speech_model: default_promo_speech_model(),
            voice: default_promo_voice(),
            image_size: default_promo_image_size(),
            image_previews: default_promo_image_previews(),
            video_previews: default_promo_video_previews(),
            queue: None,
        }
    }
}

impl PromoSettings {
    /// Segments in all.
    pub fn segments(&self) -> u32 {
        self.intro + self.main + self.outro
    }

    /// The video's length in seconds.
    pub fn total_secs(&self) -> u32 {
        self.segments() * self.segment_secs
    }

    /// `image_size` as (width, height), if it is `WIDTHxHEIGHT` with sides 64-4096.
    pub fn image_dimensions(&self) -> Option<(u32, u32)> {
        let (w, h) = self.image_size.split_once('x')?;
        let (w, h): (u32, u32) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
        let ok = |side: u32| (64..=4096).contains(&side);
        (ok(w) && ok(h)).then_some((w, h))
    }

    /// Checks the section (only when enabled: a disabled one is ignored).
    fn validate(&self, cfg: &Config) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        self.validate_numbers()?;
        for (setting, provider) in [
            ("promo.script_provider", &self.script_provider),
            ("promo.speech_provider", &self.speech_provider),
        ] {
            cfg.check_openai_provider(setting, provider.as_deref())?;
        }
        for (setting, value) in [
            ("promo.script_model", &self.script_model),
            ("promo.speech_model", &self.speech_model),
            ("promo.voice", &self.voice),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(setting, "must not be empty"));
            }
        }
        if self.image_dimensions().is_none() {
            return Err(invalid(
                "promo.image_size",
                format!(
                    "'{}' must be WIDTHxHEIGHT with each side 64-4096",
                    self.image_size
                ),
            ));
        }
        for (job, settings) in [
            ("generate_image", &cfg.jobs.generate_image),
            ("generate_video", &cfg.jobs.generate_video),
        ] {
            if settings.provider.is_none() {
                return Err(invalid(
                    format!("jobs.{job}.provider"),
                    "is required when promo.enabled = true (the promo pipeline runs it)",
                ));
            }
        }
        if let Some(q) = &self.queue {
            genq_core::validate_queue_name(q).map_err(|e| invalid("promo.queue", e.to_string()))?;
            if q == "pipelines" {
                return Err(invalid(
                    "promo.queue",
                    "'pipelines' is reserved for the pipelines themselves",
                ));
            }
        }
        Ok(())
    }

    fn validate_numbers(&self) -> Result<(), ConfigError> {
        if self.price < 0 {
            return Err(invalid(
                "promo.price",
                format!("must not be negative, got {}", self.price),
            ));
        }
        for (setting, n) in [
            ("promo.intro", self.intro),
            ("promo.main", self.main),
            ("promo.outro", self.outro),
        ] {
            if n > PROMO_MAX_PART_SEGMENTS {
                return Err(invalid(
                    setting,
                    format!("{n} segments: at most {PROMO_MAX_PART_SEGMENTS}"),
                ));
            }
        }
        if self.segments() == 0 {
            return Err(invalid(
                "promo.main",
                "the script needs at least one segment (promo.intro + promo.main + promo.outro is 0)",
            ));
        }
        if !(1..=30).contains(&self.segment_secs) {
            return Err(invalid(
                "promo.segment_secs",
                format!("must be 1-30 (a clip's length), got {}", self.segment_secs),
            ));
        }
        if self.total_secs() > PROMO_MAX_TOTAL_SECS {
            return Err(invalid(
                "promo.segment_secs",
                format!(
                    "{} segments of {} s make {} s: the video may be at most {PROMO_MAX_TOTAL_SECS} s",
                    self.segments(),
                    self.segment_secs,
                    self.total_secs()
                ),
            ));
        }
        for (setting, n) in [
            ("promo.image_parallelism", self.image_parallelism),
            ("promo.clip_parallelism", self.clip_parallelism),
        ] {
            if !(1..=100).contains(&n) {
                return Err(invalid(setting, format!("must be 1-100, got {n}")));
            }
        }
        if !(1..=PROMO_MAX_APPROVAL_SECS).contains(&self.approval_timeout_secs) {
            return Err(invalid(
                "promo.approval_timeout_secs",
                format!(
                    "must be 1-{PROMO_MAX_APPROVAL_SECS} (4 h), got {}",
                    self.approval_timeout_secs
                ),
            ));
        }
        for (setting, n) in [
            ("promo.image_previews", self.image_previews),
            ("promo.video_previews", self.video_previews),
        ] {
            if n > 10 {
                return Err(invalid(setting, format!("must be 0-10, got {n}")));
            }
        }
        Ok(())
    }
}

/// The Telegram bot (`[bot]`). The token is never in the file: `GENQ_BOT_TOKEN`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    /// Credits a new user gets on first contact.
    #[serde(default = "default_welcome_credits")]
    pub welcome_credits: i64,
    /// Telegram user ids allowed to use `/admin`.
    #[serde(default)]
    pub admin_ids: Vec<i64>,
    /// Paid requests a user may make per minute.
    #[serde(default = "default_per_minute")]
    pub requests_per_minute: u32,
    /// Paid requests a user may make per hour.
    #[serde(default = "default_per_hour")]
    pub requests_per_hour: u32,
    /// Jobs of one user queued or running at once.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_jobs: u32,
    /// Longest text message accepted, in characters.
    #[serde(default = "default_max_text_chars")]
    pub max_text_chars: usize,
    /// Dialog messages sent with each reply request.
    #[serde(default = "default_history")]
    pub history_messages: i64,
    /// The queue delivery jobs run on (served by the bot process).
    #[serde(default = "default_delivery_queue")]
    pub delivery_queue: String,
    /// Delivery jobs the bot runs at once.
    #[serde(default = "default_delivery_concurrency")]
    pub delivery_concurrency: usize,
    /// Seconds between edits of one status message.
    #[serde(default = "default_status_edit_secs")]
    pub status_edit_secs: u64,
    /// A job charged this many seconds ago that no bot tracks (its bot died before
    /// tracking it) is taken up; the sweep for them runs as often.
    #[serde(default = "default_orphan_secs")]
    pub orphan_sweep_secs: u64,
    /// Seconds between the checks behind the admins' alerts in Telegram (billing
    /// errors, every key of a provider cooling down, dead letters growing).
    #[serde(default = "default_alert_interval_secs")]
    pub alert_interval_secs: u64,
    /// Dead letters one queue gains within 30 alert rounds that make an alert.
    #[serde(default = "default_alert_dead_letters")]
    pub alert_dead_letters: u64,
    /// Model voice messages are transcribed with (by generate_reply's provider).
    #[serde(default = "default_transcription_model")]
    pub transcription_model: String,
    /// Credit packages sold for Telegram Stars (`[[bot.packages]]`); none: no `/buy`.
    #[serde(default = "default_packages")]
    pub packages: Vec<CreditPackage>,
    /// `polling` (default) or `webhook`.
    #[serde(default)]
    pub mode: BotMode,
    /// Webhook mode: the public HTTPS URL Telegram posts updates to.
    pub webhook_url: Option<String>,
    /// Webhook mode: where the bot's axum server listens.
    #[serde(default = "default_webhook_addr")]
    pub webhook_addr: String,
    /// Who users can write to when something is unavailable (an `@handle` or an
    /// http(s) URL, at most [`SUPPORT_CONTACT_MAX_CHARS`]): named in the billing,
    /// "provider unavailable" and "could not deliver" messages. None: not named.
    #[serde(default)]
    pub support_contact: Option<String>,
}

/// The longest `bot.support_contact`.
pub const SUPPORT_CONTACT_MAX_CHARS: usize = 64;

/// `bot.support_contact` is an `@handle` (a Telegram username: 5-32 characters of
/// letters, digits and `_`) or an http(s) URL without spaces, at most
/// [`SUPPORT_CONTACT_MAX_CHARS`] characters.
fn validate_support_contact(contact: &str) -> Result<(), ConfigError> {
    let setting = "bot.support_contact";
    let chars = contact.chars().count();
    if chars == 0 || chars > SUPPORT_CONTACT_MAX_CHARS {
        return Err(invalid(
            setting,
            format!("must be 1-{SUPPORT_CONTACT_MAX_CHARS} characters, got {chars}"),
        ));
    }
    if let Some(handle) = contact.strip_prefix('@') {
        let ok = (5..=32).contains(&handle.len())
            && handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(invalid(
                setting,
                format!("'{contact}' is not a Telegram @handle (5-32 letters, digits or _)"),
            ));
        }
        return Ok(());
    }
    let rest = contact
        .strip_prefix("https://")
        .or_else(|| contact.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !contact.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(invalid(
            setting,
            format!("'{contact}' must be an @handle or an http(s) URL"),
        )),
    }
}

/// How the bot receives updates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotMode {
    #[default]
    Polling,
    Webhook,
}

fn default_welcome_credits() -> i64 {
    30
}
fn default_per_minute() -> u32 {
    5
}
fn default_per_hour() -> u32 {
    20
}
fn default_max_concurrent() -> u32 {
    5
}
fn default_max_text_chars() -> usize {
    2000
}
fn default_history() -> i64 {
    20
}
fn default_delivery_queue() -> String {
    "delivery".to_owned()
}
fn default_delivery_concurrency() -> usize {
    50
}
fn default_status_edit_secs() -> u64 {
    3
}
fn default_orphan_secs() -> u64 {
    30
}
fn default_alert_interval_secs() -> u64 {
    10
}
fn default_alert_dead_letters() -> u64 {
    5
}
fn default_transcription_model() -> String {
    "whisper-1".to_owned()
}
/// A package of credits sold for Telegram Stars (currency `XTR`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditPackage {
    /// Stable id (in invoices' payloads and the ledger): 1-16 of a-z, 0-9, `_`, `-`.
    pub id: String,
    /// Credits granted.
    pub credits: i64,
    /// Price in Telegram Stars.
    pub stars: u32,
    /// What the button and the invoice say, in English.
    pub label_en: String,
    /// The same in Russian.
    pub label_ru: String,
}

fn default_packages() -> Vec<CreditPackage> {
    [
        ("s", 100, 50, "100 credits", "100 кредитов"),
        ("m", 300, 125, "300 credits", "300 кредитов"),
        ("l", 1000, 350, "1000 credits", "1000 кредитов"),
    ]
    .into_iter()
    .map(|(id, credits, stars, en, ru)| CreditPackage {
        id: id.to_owned(),
        credits,
        stars,
        label_en: en.to_owned(),
        label_ru: ru.to_owned(),
    })
    .collect()
}

fn validate_packages(packages: &[CreditPackage]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, p) in packages.iter().enumerate() {
        let at = |field: &str| format!("bot.packages[{i}].{field}");
        if p.id.is_empty()
            || p.id.len() > 16
            || !p
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                at("id"),
                format!("'{}' must be 1-16 of a-z, 0-9, _ and -", p.id),
            ));
        }
        if !seen.insert(p.id.as_str()) {
            return Err(invalid(at("id"), format!("'{}' is used twice", p.id)));
        }
        if !(1..=1_000_000).contains(&p.credits) {
            return Err(invalid(at("credits"), "must be 1-1000000"));
        }
        if !(1..=100_000).contains(&p.stars) {
            return Err(invalid(at("stars"), "must be 1-100000 Stars"));
        }
        for (field, label) in [("label_en", &p.label_en), ("label_ru", &p.label_ru)] {
            if label.trim().is_empty() || label.chars().count() > 32 {
                return Err(invalid(at(field), "must be 1-32 characters"));
            }
        }
    }
    Ok(())
}

fn default_webhook_addr() -> String {
    "0.0.0.0:8443".to_owned()
}

impl Default for BotConfig {
    fn default() -> Self {
        Self {
            welcome_credits: default_welcome_credits(),
            admin_ids: Vec::new(),
            requests_per_minute: default_per_minute(),
            requests_per_hour: default_per_hour(),
            max_concurrent_jobs: default_max_concurrent(),
            max_text_chars: default_max_text_chars(),
            history_messages: default_history(),
            delivery_queue: default_delivery_queue(),
            delivery_concurrency: default_delivery_concurrency(),
            status_edit_secs: default_status_edit_secs(),
            orphan_sweep_secs: default_orphan_secs(),
            alert_interval_secs: default_alert_interval_secs(),
            alert_dead_letters: default_alert_dead_letters(),
            transcription_model: default_transcription_model(),
            packages: default_packages(),
            mode: BotMode::default(),
            webhook_url: None,
            webhook_addr: default_webhook_addr(),
            support_contact: None,
        }
    }
}

impl BotConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.welcome_credits < 0 {
            return Err(invalid("bot.welcome_credits", "must not be negative"));
        }
        for (name, v) in [
            ("bot.requests_per_minute", self.requests_per_minute),
            ("bot.requests_per_hour", self.requests_per_hour),
            ("bot.max_concurrent_jobs", self.max_concurrent_jobs),
        ] {
            if v == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if self.requests_per_hour < self.requests_per_minute {
            return Err(invalid(
                "bot.requests_per_hour",
                "must be at least bot.requests_per_minute",
            ));
        }
        if !(1..=4000).contains(&self.max_text_chars) {
            return Err(invalid("bot.max_text_chars", "must be 1-4000"));
        }
        if !(1..=200).contains(&self.history_messages) {
            return Err(invalid("bot.history_messages", "must be 1-200"));
        }
        genq_core::validate_queue_name(&self.delivery_queue)
            .map_err(|e| invalid("bot.delivery_queue", e.to_string()))?;
        if !(1..=3600).contains(&self.orphan_sweep_secs) {
            return Err(invalid("bot.orphan_sweep_secs", "must be 1-3600"));
        }
        if !(1..=3600).contains(&self.alert_interval_secs) {
            return Err(invalid("bot.alert_interval_secs", "must be 1-3600"));
        }
        if self.alert_dead_letters == 0 {
            return Err(invalid("bot.alert_dead_letters", "must be at least 1"));
        }
        validate_packages(&self.packages)?;
        if let Some(contact) = &self.support_contact {
            validate_support_contact(contact)?;
        }
        if self.delivery_concurrency == 0 {
            return Err(invalid("bot.delivery_concurrency", "must be at least 1"));
        }
        if self.mode == BotMode::Webhook {
            match &self.webhook_url {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => {}
                Some(u) => {
                    return Err(invalid(
                        "bot.webhook_url",
                        format!("'{u}' must be an http(s) URL"),
                    ));
                }
                None => {
                    return Err(invalid(
                        "bot.webhook_url",
                        "is required when bot.mode = \"webhook\"",
                    ));
                }
            }
        }
        if self.webhook_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "bot.webhook_addr",
                format!(
                    "'{}' is not an address like 0.0.0.0:8443",
                    self.webhook_addr
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// Where artifacts are kept.
    #[serde(default = "default_artifacts_dir")]
    pub dir: PathBuf,
    /// Largest input file a job accepts, in MB.
    #[serde(default = "default_max_input_mb")]
    pub max_input_mb: u64,
}

fn default_artifacts_dir() -> PathBuf {
    PathBuf::from("data/artifacts")
}

fn default_max_input_mb() -> u64 {
    20
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        Self {
            dir: default_artifacts_dir(),
            max_input_mb: default_max_input_mb(),
        }
    }
}

/// Which protocol a provider speaks (docs/PROVIDER-PROTOCOLS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Openai,
    Queue,
}

/// Which API a provider speaks (`kind`; docs/PROVIDER-PROTOCOLS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI-compatible (chat, images, transcription, speech).
    Openai,
    /// genq's own task protocol (what `protocol = "queue"` means).
    GenqTask,
    Fal,
    Replicate,
    Runway,
    Kie,
    Comfyui,
}

impl ProviderKind {
    /// The protocol family: OpenAI-compatible or queue-style tasks.
    pub fn protocol(self) -> Protocol {
        match self {
            ProviderKind::Openai => Protocol::Openai,
            _ => Protocol::Queue,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::GenqTask => "genq-task",
            ProviderKind::Fal => "fal",
            ProviderKind::Replicate => "replicate",
            ProviderKind::Runway => "runway",
            ProviderKind::Kie => "kie",
            ProviderKind::Comfyui => "comfyui",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// `openai` or `queue` (genq's task protocol); `kind` says the same and more.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// The API spoken: `openai`, `genq-task`, `fal`, `replicate`, `runway`, `kie`, `comfyui`.
    #[serde(default)]
    pub kind: Option<ProviderKind>,
    pub base_url: String,
    /// Runway: the `X-Runway-Version` header (default `2024-11-06`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// ComfyUI: the workflow file (API format JSON) with `"{{prompt}}"`-style placeholders.
    #[serde(default)]
    pub workflow: Option<PathBuf>,
    /// KIE: its file upload service (default `https://kieai.redpandaai.co`).
    #[serde(default)]
    pub upload_url: Option<String>,
    /// Vendors: fields merged into every request's model input (e.g. `aspect_ratio`).
    #[serde(default)]
    pub params: toml::Table,
    /// fal, Replicate, KIE: the callback URL the vendor posts a finished task to,
    /// served by genq's admin: `https://<public host>/webhooks/<provider name>`.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Replicate: the webhook signing secret (`whsec_…`, from `GET
    /// /v1/webhooks/default/secret`); KIE: the webhook HMAC key (kie.ai/settings).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// fal: where its webhook public keys are (default fal's JWKS).
    #[serde(default)]
    pub webhook_jwks_url: Option<String>,
    /// With a webhook: how often a parked job still polls its task (default 30).
    #[serde(default)]
    pub webhook_fallback_poll_secs: Option<u64>,
    /// Queue-style: how long a run polls its task holding its worker slot before it
    /// parks the job (no slot held while the vendor works; default 5, 0 = at once).
    #[serde(default)]
    pub wait_in_slot_secs: Option<u64>,
    /// Queue-style: the longest a task is waited on from its submit (default 3600);
    /// then it is cancelled at the vendor and the job times out.
    #[serde(default)]
    pub max_task_wait_secs: Option<u64>,
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default = "default_provider_timeout")]
    pub timeout_secs: u64,
    /// How long a key answered 429 *without* a wait hint is skipped (every host);
    /// with one (`Retry-After`, `retry-after-ms`, `x-ratelimit-reset-*`) the hint
    /// is followed, up to `max_hinted_cooldown_secs`.
    #[serde(default = "default_rate_limit_cooldown")]
    pub rate_limit_cooldown_secs: u64,
    /// The longest cool-down a vendor's rate-limit hint is followed for.
    #[serde(default = "default_max_hinted_cooldown")]
    pub max_hinted_cooldown_secs: u64,
    /// How long a key with a billing or quota-exhausted error is skipped (every host).
    #[serde(default = "default_billing_cooldown")]
    pub billing_cooldown_secs: u64,
    /// Limits per API key, shared by every host (see `ProviderLimits`).
    #[serde(flatten)]
    pub limits: ProviderLimits,
}

/// A provider's limits per API key, enforced in Redis for every host together.
/// All off by default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ProviderLimits {
    /// Calls (OpenAI protocol) or tasks (queue protocol, submit → end) at once per
    /// key. With `adaptive`, the most the adaptive limit grows to.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// Requests (calls, task submits) per minute per key.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// LLM tokens per minute per key (openai protocol): estimated from the request,
    /// corrected from the answer's usage.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Find the in-flight limit by AIMD: halve it on a 429, add one after
    /// `adaptive_increase_after` successes.
    #[serde(default)]
    pub adaptive: bool,
    /// Where the adaptive limit starts (default `max_in_flight`, else 4).
    #[serde(default)]
    pub adaptive_start: Option<u32>,
    /// Successes (while a key is full) before the adaptive limit grows by one (default 10).
    #[serde(default)]
    pub adaptive_increase_after: Option<u32>,
    /// The factor the adaptive limit is multiplied by on a 429 (0 < f < 1, default 0.5).
    #[serde(default)]
    pub adaptive_decrease: Option<f64>,
    /// A held slot whose holder stopped renewing it is free after this (default 120).
    #[serde(default)]
    pub slot_lease_secs: Option<u64>,
    /// A job finding every slot taken is deferred about this long (default 1000).
    #[serde(default)]
    pub defer_ms: Option<u64>,
}

impl ProviderLimits {
    /// True when any limit is set.
    pub fn is_on(&self) -> bool {
        self.max_in_flight.is_some()
            || self.requests_per_minute.is_some()
            || self.tokens_per_minute.is_some()
            || self.adaptive
    }

    fn validate(&self, at: &str, protocol: Protocol) -> Result<(), ConfigError> {
        let at_least_one = |name: &str, v: Option<u64>| match v {
            Some(0) => Err(invalid(format!("{at}.{name}"), "must be at least 1")),
            _ => Ok(()),
        };
        at_least_one("max_in_flight", self.max_in_flight.map(u64::from))?;
        at_least_one(
            "requests_per_minute",
            self.requests_per_minute.map(u64::from),
        )?;
        at_least_one("tokens_per_minute", self.tokens_per_minute)?;
        at_least_one("adaptive_start", self.adaptive_start.map(u64::from))?;
        at_least_one(
            "adaptive_increase_after",
            self.adaptive_increase_after.map(u64::from),
        )?;
        at_least_one("slot_lease_secs", self.slot_lease_secs)?;
        if self.tokens_per_minute.is_some() && protocol != Protocol::Openai {
            return Err(invalid(
                format!("{at}.tokens_per_minute"),
                "only for openai-protocol providers (LLM tokens)",
            ));
        }
        if let Some(f) = self.adaptive_decrease
            && !(f > 0.0 && f < 1.0)
        {
            return Err(invalid(
                format!("{at}.adaptive_decrease"),
                format!("must be between 0 and 1 (exclusive), got {f}"),
            ));
        }
        if let Some(ms) = self.defer_ms
            && !(10..=600_000).contains(&ms)
        {
            return Err(invalid(
                format!("{at}.defer_ms"),
                format!("must be 10-600000, got {ms}"),
            ));
        }
        if let (Some(start), Some(max)) = (self.adaptive_start, self.max_in_flight)
            && start > max
        {
            return Err(invalid(
                format!("{at}.adaptive_start"),
                format!("{start} is above max_in_flight ({max})"),
            ));
        }
        if !self.adaptive
            && (self.adaptive_start.is_some()
                || self.adaptive_increase_after.is_some()
                || self.adaptive_decrease.is_some())
        {
            return Err(invalid(
                format!("{at}.adaptive"),
                "adaptive_* settings are given but adaptive = false",
            ));
        }
        Ok(())
    }
}

impl ProviderSection {
    /// The API spoken: `kind`, else what `protocol` means (validated: one is set).
    pub fn kind(&self) -> ProviderKind {
        match (self.kind, self.protocol) {
            (Some(k), _) => k,
            (None, Some(Protocol::Openai)) => ProviderKind::Openai,
            (None, _) => ProviderKind::GenqTask,
        }
    }

    /// The protocol family (OpenAI-compatible or queue-style).
    pub fn protocol(&self) -> Protocol {
        self.kind().protocol()
    }

    /// Checks `kind`/`protocol` and the vendor settings of `providers.<name>`.
    fn validate_kind(&self, at: &str) -> Result<(), ConfigError> {
        let kind = match (self.kind, self.protocol) {
            (None, None) => {
                return Err(invalid(
                    format!("{at}.kind"),
                    "is required: one of openai, genq-task, fal, replicate, runway, kie, comfyui (or protocol = \"openai\" | \"queue\")",
                ));
            }
            (Some(k), Some(p)) if k.protocol() != p => {
                return Err(invalid(
                    format!("{at}.protocol"),
                    format!(
                        "is {p:?} but kind = \"{}\" speaks {:?}: drop one",
                        k.as_str(),
                        k.protocol()
                    ),
                ));
            }
            _ => self.kind(),
        };
        let only = |setting: &str, set: bool, wanted: ProviderKind| {
            if set && kind != wanted {
                Err(invalid(
                    format!("{at}.{setting}"),
                    format!(
                        "applies to kind = \"{}\" only (this provider is \"{}\")",
                        wanted.as_str(),
                        kind.as_str()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        only(
            "api_version",
            self.api_version.is_some(),
            ProviderKind::Runway,
        )?;
        only("workflow", self.workflow.is_some(), ProviderKind::Comfyui)?;
        only("upload_url", self.upload_url.is_some(), ProviderKind::Kie)?;
        if !self.params.is_empty() && matches!(kind, ProviderKind::Openai | ProviderKind::GenqTask)
        {
            return Err(invalid(
                format!("{at}.params"),
                format!(
                    "applies to vendor kinds only (this provider is \"{}\")",
                    kind.as_str()
                ),
            ));
        }
        self.validate_webhook(at, kind)?;
        if kind == ProviderKind::Comfyui && self.workflow.is_none() {
            return Err(invalid(
                format!("{at}.workflow"),
                "is required for kind = \"comfyui\" (a workflow saved in API format)",
            ));
        }
        if let Some(url) = &self.upload_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                format!("{at}.upload_url"),
                format!("'{url}' must start with http:// or https://"),
            ));
        }
        if self
            .api_version
            .as_deref()
            .is_some_and(|v| v.trim().is_empty())
        {
            return Err(invalid(format!("{at}.api_version"), "must not be empty"));
        }
        Ok(())
    }
}

impl ProviderSection {
    /// Checks the webhook and waiting settings of `providers.<name>`.
    fn validate_webhook(&self, at: &str, kind: ProviderKind) -> Result<(), ConfigError> {
        let hooks = matches!(
            kind,
            ProviderKind::Fal | ProviderKind::Replicate | ProviderKind::Kie
        );
        let given = [
            ("webhook_url", self.webhook_url.is_some()),
            ("webhook_secret", self.webhook_secret.is_some()),
            ("webhook_jwks_url", self.webhook_jwks_url.is_some()),
            (
                "webhook_fallback_poll_secs",
                self.webhook_fallback_poll_secs.is_some(),
            ),
        ];
        for (setting, set) in given {
            if set && !hooks {
                return Err(invalid(
                    format!("{at}.{setting}"),
                    format!(
                        "applies to kind = \"fal\", \"replicate\" or \"kie\" only (\"{}\" sends no webhooks: it is polled)",
                        kind.as_str()
                    ),
                ));
            }
            if set && setting != "webhook_url" && self.webhook_url.is_none() {
                return Err(invalid(
                    format!("{at}.{setting}"),
                    "is set but webhook_url is not: set the callback URL too",
                ));
            }
        }
        for (setting, url) in [
            ("webhook_url", &self.webhook_url),
            ("webhook_jwks_url", &self.webhook_jwks_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(invalid(
                    format!("{at}.{setting}"),
                    format!("'{url}' must start with http:// or https://"),
                ));
            }
        }
        if self.webhook_jwks_url.is_some() && kind != ProviderKind::Fal {
            return Err(invalid(
                format!("{at}.webhook_jwks_url"),
                "applies to kind = \"fal\" only",
            ));
        }
        if self.webhook_url.is_some() {
            match kind {
                ProviderKind::Fal if self.webhook_secret.is_some() => {
                    return Err(invalid(
                        format!("{at}.webhook_secret"),
                        "fal signs webhooks with its own public keys (webhook_jwks_url): drop the secret",
                    ));
                }
                ProviderKind::Replicate | ProviderKind::Kie
                    if self
                        .webhook_secret
                        .as_deref()
                        .is_none_or(|s| s.trim().is_empty()) =>
                {
                    return Err(invalid(
                        format!("{at}.webhook_secret"),
                        "is required with webhook_url: unsigned webhooks are refused (Replicate: the whsec_… secret; KIE: the webhook HMAC key)",
                    ));
                }
                ProviderKind::Replicate
                    if !self
                        .webhook_secret
                        .as_deref()
                        .is_some_and(is_standard_webhooks_secret) =>
                {
                    return Err(invalid(
                        format!("{at}.webhook_secret"),
                        "must be Replicate's signing secret: whsec_ followed by base64 (GET /v1/webhooks/default/secret)",
                    ));
                }
                _ => {}
            }
        }
        if self.webhook_fallback_poll_secs == Some(0) {
            return Err(invalid(
                format!("{at}.webhook_fallback_poll_secs"),
                "must be at least 1",
            ));
        }
        if kind.protocol() == Protocol::Openai {
            for (setting, set) in [
                ("wait_in_slot_secs", self.wait_in_slot_secs.is_some()),
                ("max_task_wait_secs", self.max_task_wait_secs.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        format!("{at}.{setting}"),
                        "applies to queue-style providers only (an OpenAI call is not a task)",
                    ));
                }
            }
        }
        if self.max_task_wait_secs == Some(0) {
            return Err(invalid(
                format!("{at}.max_task_wait_secs"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `whsec_<base64>`, as Standard Webhooks signing secrets are written.
fn is_standard_webhooks_secret(secret: &str) -> bool {
    use base64::Engine;
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .is_some_and(|key| !key.is_empty())
}

fn default_provider_timeout() -> u64 {
    60
}

fn default_rate_limit_cooldown() -> u64 {
    60
}

fn default_max_hinted_cooldown() -> u64 {
    3600
}

fn default_billing_cooldown() -> u64 {
    24 * 3600
}

/// Settings every job type has (all optional: the job type's defaults apply).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    pub queue: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub timeout_secs: Option<u64>,
    /// Credits a user pays (the bot charges it).
    #[serde(default)]
    pub price: i64,
    /// Runs in all for transient failures and timeouts.
    pub max_attempts: Option<u32>,
    /// First retry delay for transient failures and timeouts (doubles each run); default 10 000.
    pub backoff_base_ms: Option<u64>,
    /// Queue-style jobs: how often the provider task is polled.
    pub poll_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupSettings {
    pub queue: Option<String>,
    /// Cron expression with seconds (`sec min hour day month weekday`), UTC.
    #[serde(default = "default_cleanup_schedule")]
    pub schedule: String,
    /// Artifacts older than this are deleted.
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u64,
}

fn default_cleanup_schedule() -> String {
    "0 0 * * * *".to_owned()
}

fn default_max_age_hours() -> u64 {
    24
}

impl Default for CleanupSettings {
    fn default() -> Self {
        Self {
            queue: None,
            schedule: default_cleanup_schedule(),
            max_age_hours: default_max_age_hours(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSection {
    #[serde(default)]
    pub generate_reply: JobSettings,
    #[serde(default)]
    pub generate_image_prompt: JobSettings,
    #[serde(default)]
    pub generate_image: JobSettings,
    #[serde(default)]
    pub generate_video: JobSettings,
    #[serde(default)]
    pub face_swap: JobSettings,
    #[serde(default)]
    pub upscale: JobSettings,
    #[serde(default)]
    pub cleanup: CleanupSettings,
}

/// Which protocols a job type can use, and whether it needs a provider at all.
struct Needs {
    name: &'static str,
    protocols: &'static [Protocol],
}

impl JobsSection {
    fn provider_jobs(&self) -> [(&JobSettings, Needs); 6] {
        use Protocol::*;
        [
            (
                &self.generate_reply,
                Needs {
                    name: "generate_reply",
                    protocols: &[Openai],
                },
            ),
            (
                &self.generate_image_prompt,
                Needs {
                    name: "generate_image_prompt",
                    protocols: &[Openai],
                },
            ),
            (
                &self.generate_image,
                Needs {
                    name: "generate_image",
                    protocols: &[Openai, Queue],
                },
            ),
            (
                &self.generate_video,
                Needs {
                    name: "generate_video",
                    protocols: &[Queue],
                },
            ),
            (
                &self.face_swap,
                Needs {
                    name: "face_swap",
                    protocols: &[Queue],
                },
            ),
            (
                &self.upscale,
                Needs {
                    name: "upscale",
                    protocols: &[Queue],
                },
            ),
        ]
    }
}

impl Config {
    /// Reads `path` (or starts from defaults), applies environment overrides, validates.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string())?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok());
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies `GENQ_PROVIDER_<NAME>_KEYS` / `_BASE_URL` overrides.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        for (name, p) in self.providers.iter_mut() {
            let var = name.to_uppercase().replace('-', "_");
            if let Some(keys) = get(&format!("GENQ_PROVIDER_{var}_KEYS")) {
                p.keys = keys
                    .split(',')
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect();
            }
            if let Some(url) = get(&format!("GENQ_PROVIDER_{var}_BASE_URL")) {
                p.base_url = url;
            }
        }
    }

    /// Checks every setting; the first problem found is named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, p) in &self.providers {
            let at = format!("providers.{name}");
            p.validate_kind(&at)?;
            if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
                return Err(invalid(
                    format!("{at}.base_url"),
                    format!("'{}' must start with http:// or https://", p.base_url),
                ));
            }
            if p.keys.is_empty() || p.keys.iter().any(|k| k.trim().is_empty()) {
                let var = name.to_uppercase().replace('-', "_");
                return Err(invalid(
                    format!("{at}.keys"),
                    format!("no API keys (set them in the file or GENQ_PROVIDER_{var}_KEYS)"),
                ));
            }
            if p.timeout_secs == 0 {
                return Err(invalid(format!("{at}.timeout_secs"), "must be at least 1"));
            }
            if p.rate_limit_cooldown_secs == 0 {
                return Err(invalid(
                    format!("{at}.rate_limit_cooldown_secs"),
                    "must be at least 1",
                ));
            }
            p.limits.validate(&at, p.protocol())?;
        }
        let known = self
            .providers
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        for (settings, needs) in self.jobs.provider_jobs() {
            let at = format!("jobs.{}", needs.name);
            self.validate_common(&at, settings)?;
            // without a provider the job type is not offered (the worker logs which are)
            if let Some(p) = &settings.provider {
                let provider = self.providers.get(p).ok_or_else(|| {
                    invalid(
                        format!("{at}.provider"),
                        format!("no provider named '{p}' (configured: {known})"),
                    )
                })?;
                if !needs.protocols.contains(&provider.protocol()) {
                    return Err(invalid(
                        format!("{at}.provider"),
                        format!(
                            "provider '{p}' speaks {:?}, but {} needs {:?}",
                            provider.protocol(),
                            needs.name,
                            needs.protocols
                        ),
                    ));
                }
            }
        }
        let cleanup = &self.jobs.cleanup;
        cron::Schedule::from_str(&cleanup.schedule).map_err(|e| {
            invalid(
                "jobs.cleanup.schedule",
                format!("'{}' is not a cron expression: {e}", cleanup.schedule),
            )
        })?;
        if let Some(q) = &cleanup.queue {
            genq_core::validate_queue_name(q)
                .map_err(|e| invalid("jobs.cleanup.queue", e.to_string()))?;
        }
        if self.artifacts.max_input_mb == 0 {
            return Err(invalid("artifacts.max_input_mb", "must be at least 1"));
        }
        self.promo.validate(self)?;
        self.bot.validate()
    }

    /// `provider` (setting `setting`) is set and names an OpenAI-protocol provider.
    fn check_openai_provider(
        &self,
        setting: &str,
        provider: Option<&str>,
    ) -> Result<(), ConfigError> {
        let Some(name) = provider else {
            return Err(invalid(
                setting,
                "is required when promo.enabled = true (an openai-protocol provider)",
            ));
        };
        match self.providers.get(name) {
            None => {
                let known = self
                    .providers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(invalid(
                    setting,
                    format!("no provider named '{name}' (configured: {known})"),
                ))
            }
            Some(p) if p.protocol() != Protocol::Openai => Err(invalid(
                setting,
                format!(
                    "provider '{name}' speaks {:?}: must be an openai-protocol provider",
                    p.protocol()
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    fn validate_common(&self, at: &str, s: &JobSettings) -> Result<(), ConfigError> {
        if let Some(q) = &s.queue {
            genq_core::validate_queue_name(q)
                .map_err(|e| invalid(format!("{at}.queue"), e.to_string()))?;
        }
        if s.timeout_secs == Some(0) {
            return Err(invalid(format!("{at}.timeout_secs"), "must be at least 1"));
        }
        if s.price < 0 {
            return Err(invalid(
                format!("{at}.price"),
                format!("must not be negative, got {}", s.price),
            ));
        }
        if s.max_attempts == Some(0) {
            return Err(invalid(format!("{at}.max_attempts"), "must be at least 1"));
        }
        if s.backoff_base_ms == Some(0) {
            return Err(invalid(
                format!("{at}.backoff_base_ms"),
                "must be at least 1",
            ));
        }
        if s.poll_interval_ms == Some(0) {
            return Err(invalid(
                format!("{at}.poll_interval_ms"),
                "must be at least 1",
            ));
        }
        if s.provider.is_some() && s.model.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(format!("{at}.model"), "must not be empty"));
        }
        Ok(())
    }

    /// True when the job types that need a provider have one (otherwise only the
    /// probe, cleanup and local upscale can run).
    pub fn has_providers(&self) -> bool {
        !self.providers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config/genq.example.toml");

    #[test]
    fn the_example_file_is_valid() {
        let cfg = Config::parse(EXAMPLE, "genq.example.toml").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.jobs.generate_video.provider.as_deref(), Some("media"));
    }

    #[test]
    fn bad_settings_are_named() {
        let mut cfg = Config::parse(EXAMPLE, "x").unwrap();
        cfg.jobs.generate_video.provider = Some("vid".to_owned());
        let err = cfg.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "jobs.generate_video.provider: no provider named 'vid' (configured: llm, media)"
        );

        let mut cfg = Config::parse(EXAMPLE, "x").unwrap();
        cfg.jobs.generate_reply.provider = Some("media".to_owned());
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .starts_with("jobs.generate_reply.provider: provider 'media' speaks Queue")
        );

        let mut cfg = Config::parse(EXAMPLE, "x").unwrap();
        cfg.jobs.cleanup.schedule = "every hour".to_owned();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .starts_with("jobs.cleanup.schedule: 'every hour' is not a cron expression")
        );

        let err = Config::parse("[jobs.generate_reply]\nprise = 3\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `prise`"), "{err}");
    }

    fn promo(cfg: &mut Config) -> &mut PromoSettings {
        cfg.promo.enabled = true;
        &mut cfg.promo
    }

    fn error_of(cfg: &Config) -> String {
        cfg.validate().unwrap_err().to_string()
    }

    #[test]
    fn the_example_enables_promo_with_the_defaults() {
        let cfg = Config::parse(EXAMPLE, "x").unwrap();
        assert!(cfg.promo.enabled);
        assert_eq!(cfg.promo.segments(), 10);
        assert_eq!(cfg.promo.total_secs(), 50);
        assert_eq!(cfg.promo.script_provider.as_deref(), Some("llm"));
        let off = Config::default();
        assert!(!off.promo.enabled);
        assert_eq!(off.promo.price, 50);
        assert_eq!(off.promo.voice, "alloy");
        assert_eq!(off.promo.image_dimensions(), Some((1024, 1792)));
        off.validate().unwrap();
    }

    #[test]
    fn bad_promo_settings_are_named() {
        let base = Config::parse(EXAMPLE, "x").unwrap();

        let mut cfg = base.clone();
        promo(&mut cfg).script_provider = Some("media".to_owned());
        assert_eq!(
            error_of(&cfg),
            "promo.script_provider: provider 'media' speaks Queue: must be an openai-protocol provider"
        );
        let mut cfg = base.clone();
        promo(&mut cfg).speech_provider = None;
        assert!(error_of(&cfg).starts_with("promo.speech_provider: is required"));
        let mut cfg = base.clone();
        promo(&mut cfg).speech_provider = Some("tts".to_owned());
        assert!(error_of(&cfg).starts_with("promo.speech_provider: no provider named 'tts'"));

        let mut cfg = base.clone();
        cfg.jobs.generate_video.provider = None;
        assert!(error_of(&cfg).starts_with("jobs.generate_video.provider: is required when promo"));
        let mut cfg = base.clone();
        cfg.jobs.generate_image.provider = None;
        assert!(error_of(&cfg).starts_with("jobs.generate_image.provider: is required when promo"));

        let mut cfg = base.clone();
        promo(&mut cfg).main = 31;
        assert_eq!(error_of(&cfg), "promo.main: 31 segments: at most 30");
        let mut cfg = base.clone();
        let p = promo(&mut cfg);
        p.intro = 30;
        p.main = 30;
        p.segment_secs = 10;
        assert!(error_of(&cfg).starts_with("promo.segment_secs: 63 segments of 10 s make 630 s"));
        let mut cfg = base.clone();
        promo(&mut cfg).approval_timeout_secs = 5 * 3600;
        assert!(error_of(&cfg).starts_with("promo.approval_timeout_secs: must be 1-14400"));
        let mut cfg = base.clone();
        promo(&mut cfg).image_size = "big".to_owned();
        assert!(error_of(&cfg).starts_with("promo.image_size: 'big'"));
        let mut cfg = base.clone();
        promo(&mut cfg).image_parallelism = 0;
        assert!(error_of(&cfg).starts_with("promo.image_parallelism: must be 1-100"));
        let mut cfg = base.clone();
        promo(&mut cfg).price = -1;
        assert!(error_of(&cfg).starts_with("promo.price: must not be negative"));
        let mut cfg = base.clone();
        promo(&mut cfg).queue = Some("Bad Queue".to_owned());
        assert!(
            error_of(&cfg).starts_with("promo.queue:"),
            "{}",
            error_of(&cfg)
        );

        // a disabled section is not checked
        let mut cfg = base.clone();
        cfg.promo.enabled = false;
        cfg.promo.main = 99;
        cfg.validate().unwrap();

        let err = Config::parse("[promo]\nenabeld = true\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `enabeld`"), "{err}");
    }

    #[test]
    fn environment_overrides_keys_and_urls() {
        let mut cfg = Config::parse(EXAMPLE, "x").unwrap();
        cfg.apply_env(|k| match k {
            "GENQ_PROVIDER_LLM_KEYS" => Some("a, b,".to_owned()),
            "GENQ_PROVIDER_MEDIA_BASE_URL" => Some("ftp://nope".to_owned()),
            _ => None,
        });
        assert_eq!(cfg.providers["llm"].keys, ["a", "b"]);
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "providers.media.base_url: 'ftp://nope' must start with http:// or https://"
        );
        cfg.providers.get_mut("media").unwrap().keys.clear();
        cfg.providers.get_mut("media").unwrap().base_url = "http://x".to_owned();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("GENQ_PROVIDER_MEDIA_KEYS")
        );
    }

    #[test]
    fn provider_limits_are_read_and_checked() {
        let text = |extra: &str| {
            format!(
                "[providers.llm]\nprotocol = \"openai\"\nbase_url = \"http://x\"\nkeys = [\"k\"]\n{extra}\n"
            )
        };
        let cfg = Config::parse(
            &text("max_in_flight = 10\nrequests_per_minute = 500\ntokens_per_minute = 90000\nadaptive = true\nadaptive_start = 4"),
            "f.toml",
        )
        .unwrap();
        cfg.validate().unwrap();
        let p = &cfg.providers["llm"];
        assert_eq!(p.limits.max_in_flight, Some(10));
        assert_eq!(p.limits.tokens_per_minute, Some(90_000));
        assert!(p.limits.adaptive && p.limits.is_on());
        assert_eq!(p.rate_limit_cooldown_secs, 60);

        let cfg = Config::parse(&text(""), "f.toml").unwrap();
        assert!(!cfg.providers["llm"].limits.is_on());

        // an unknown setting is still refused
        let err = Config::parse(&text("max_in_flite = 3"), "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_in_flite"), "{err}");

        for (extra, named) in [
            (
                "max_in_flight = 0",
                "providers.llm.max_in_flight: must be at least 1",
            ),
            (
                "requests_per_minute = 0",
                "providers.llm.requests_per_minute: must be at least 1",
            ),
            (
                "adaptive = true\nadaptive_decrease = 1.5",
                "providers.llm.adaptive_decrease: must be between 0 and 1",
            ),
            (
                "max_in_flight = 3\nadaptive = true\nadaptive_start = 5",
                "providers.llm.adaptive_start: 5 is above max_in_flight (3)",
            ),
            (
                "adaptive_start = 2",
                "providers.llm.adaptive: adaptive_* settings are given but adaptive = false",
            ),
            ("defer_ms = 1", "providers.llm.defer_ms: must be 10-600000"),
            (
                "rate_limit_cooldown_secs = 0",
                "providers.llm.rate_limit_cooldown_secs: must be at least 1",
            ),
        ] {
            let cfg = Config::parse(&text(extra), "f.toml").unwrap();
            let err = error_of(&cfg);
            assert!(err.starts_with(named), "{extra}: {err}");
        }
        let queue = "[providers.media]\nprotocol = \"queue\"\nbase_url = \"http://x\"\nkeys = [\"k\"]\ntokens_per_minute = 5\n";
        let err = error_of(&Config::parse(queue, "f.toml").unwrap());
        assert!(
            err.starts_with("providers.media.tokens_per_minute: only for openai"),
            "{err}"
        );
    }

    #[test]
    fn provider_kinds_choose_the_vendor_and_name_bad_settings() {
        let parse = |section: &str| {
            Config::parse(
                &format!(
                    "[providers.v]\nbase_url = \"https://queue.fal.run\"\nkeys = [\"k\"]\n{section}"
                ),
                "t",
            )
            .unwrap()
        };
        let cfg = parse("kind = \"fal\"\nparams = { aspect_ratio = \"9:16\" }");
        cfg.validate().unwrap();
        assert_eq!(cfg.providers["v"].kind(), ProviderKind::Fal);
        assert_eq!(cfg.providers["v"].protocol(), Protocol::Queue);
        let cfg = parse("protocol = \"queue\"");
        assert_eq!(cfg.providers["v"].kind(), ProviderKind::GenqTask);
        let cfg = parse("kind = \"openai\"");
        assert_eq!(cfg.providers["v"].protocol(), Protocol::Openai);
        assert!(error_of(&parse("")).starts_with("providers.v.kind: is required"));
        assert!(
            error_of(&parse("kind = \"fal\"\nprotocol = \"openai\""))
                .starts_with("providers.v.protocol: is Openai but kind = \"fal\"")
        );
        assert!(
            error_of(&parse("kind = \"comfyui\"")).starts_with("providers.v.workflow: is required")
        );
        assert!(
            error_of(&parse("kind = \"fal\"\napi_version = \"2024-11-06\""))
                .starts_with("providers.v.api_version: applies to kind = \"runway\" only")
        );
        assert!(
            error_of(&parse("protocol = \"queue\"\nparams = { a = 1 }"))
                .starts_with("providers.v.params: applies to vendor kinds only")
        );
        assert!(
            Config::parse(
                "[providers.v]\nkind = \"midjourney\"\nbase_url = \"https://x\"",
                "t"
            )
            .is_err()
        );
    }

    #[test]
    fn webhook_settings_are_checked() {
        let parse = |extra: &str| {
            Config::parse(
                &format!("[providers.v]\nbase_url = \"https://x\"\nkeys = [\"k\"]\n{extra}"),
                "t",
            )
            .unwrap()
        };
        let hook = "webhook_url = \"https://genq.example.com/webhooks/v\"";
        assert!(
            parse(&format!(
                "kind = \"replicate\"\n{hook}\nwebhook_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\""
            ))
            .validate()
            .is_ok()
        );
        assert!(parse(&format!("kind = \"fal\"\n{hook}")).validate().is_ok());
        assert!(
            error_of(&parse(&format!("kind = \"runway\"\n{hook}"))).starts_with(
                "providers.v.webhook_url: applies to kind = \"fal\", \"replicate\" or \"kie\" only"
            )
        );
        assert!(
            error_of(&parse(&format!("kind = \"kie\"\n{hook}")))
                .starts_with("providers.v.webhook_secret: is required with webhook_url")
        );
        for bad in ["abc", "whsec_abc", "whsec_"] {
            assert!(
                error_of(&parse(&format!(
                    "kind = \"replicate\"\n{hook}\nwebhook_secret = \"{bad}\""
                )))
                .starts_with("providers.v.webhook_secret: must be Replicate's signing secret"),
                "{bad}"
            );
        }
        assert!(
            error_of(&parse("kind = \"kie\"\nwebhook_secret = \"k\""))
                .starts_with("providers.v.webhook_secret: is set but webhook_url is not")
        );
        assert!(
            error_of(&parse("kind = \"fal\"\nwebhook_url = \"ftp://x\""))
                .starts_with("providers.v.webhook_url: 'ftp://x' must start with http")
        );
        assert!(
            error_of(&parse("kind = \"openai\"\nwait_in_slot_secs = 3")).starts_with(
                "providers.v.wait_in_slot_secs: applies to queue-style providers only"
            )
        );
    }
}
