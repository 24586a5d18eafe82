//! The Telegram bot under load: how soon a user is acknowledged (the product promise
//! is "within one second") and answered. Everything runs in this process, as in
//! production but on one host: the fake Telegram Bot API, the fake provider, the bot
//! (`genq_telegram::run_bot`, long polling through its durable intake), a worker for
//! the `text` and `img` queues, the outbox relay and the settler, on Redis (a key
//! prefix of the run's own) and PostgreSQL (a schema of the run's own).
//!
//! The fake Telegram does not time what it receives, so the bench polls what the bot
//! sent to each waiting chat (`FakeTelegram::sent`) every millisecond or two; each
//! latency runs from just before the user's update is queued at the fake to the poll
//! that first sees the answer.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use genq_metrics::WorkerMetrics;
use genq_redis::{RedisConfig, RedisQueue};
use genq_relay::{Relay, Settler};
use genq_runtime::{WorkerRuntime, WorkerSettings};
use genq_telegram::BotOptions;
use genq_testkit::{
    CallbackAnswer, FakeProvider, FakeTelegram, SentKind, SentMessage, providers_toml,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store_side::BenchSchema;

const TOKEN: &str = "123456:BENCH-TOKEN";
/// Telegram ids (= private chat ids) of the steady-load users, then the burst's.
const STEADY_CHATS: i64 = 7_100_000;
const BURST_CHATS: i64 = 7_200_000;
const BURST_429_CHATS: i64 = 7_300_000;
/// The share of sends and edits the fake answers 429 in the second burst.
pub const SHARE_429: f64 = 0.05;
/// Credits every user starts with: far more than the run spends.
const WELCOME_CREDITS: i64 = 1_000;
/// The queues the in-process worker serves (replies; upscales).
const WORKER_QUEUES: [&str; 2] = ["text", "img"];
const WORKER_CONCURRENCY: usize = 200;
/// How often the bench looks at what the bot sent.
const POLL: Duration = Duration::from_millis(1);
/// Telegram counts messages per second (overall and per chat).
const THROTTLE_WINDOW: Duration = Duration::from_secs(1);
/// The side of the photo users send (the upscale doubles it).
const PHOTO: (u32, u32) = (320, 240);

/// How big the run is.
pub struct BotSizes {
    /// Users of the steady load, one text message each.
    pub users: usize,
    /// Over how long their messages are spread, evenly.
    pub spread: Duration,
    /// Users tapping Upscale x2 at the same instant.
    pub burst: usize,
    /// How long the fake provider's upscale tasks take.
    pub task: Duration,
}

/// Latencies of one scenario, each sorted.
pub struct Latencies {
    /// Button tapped → its answer, "taken into work" (taps only).
    pub tap: Vec<Duration>,
    /// Update queued → acknowledgement.
    pub ack: Vec<Duration>,
    /// Update queued → the answer itself (the reply, the photo).
    pub done: Vec<Duration>,
}

pub struct BotFigures {
    pub steady: Latencies,
    /// Messages per second the steady load actually sent.
    pub steady_rate: f64,
    /// Steady-load users who also got a status message (the `text` queue had a
    /// backlog when they were acknowledged): teloxide's 1 message/s per chat then
    /// holds their reply back until a second after it.
    pub steady_status_messages: usize,
    pub burst: Latencies,
    /// Telegram messages the bot sent during the burst (status messages and results;
    /// not chat actions, edits or callback answers).
    pub burst_messages: usize,
    /// The same burst (other users) while the fake answers [`SHARE_429`] of the
    /// sends and edits with 429 (retry after 1 s).
    pub burst_429: Latencies,
    /// 429s the fake answered during that burst.
    pub refused_429: usize,
    /// The time estimates the burst's users were shown against their actual waits.
    pub burst_estimates: EstimateFit,
    pub burst_429_estimates: EstimateFit,
}

/// How close the acknowledgements' time estimates came to the actual waits (tap →
/// the photo): each user's estimate is read back from what the bot sent (the tap's
/// answer, else the status message as first sent) in the English catalog's words.
pub struct EstimateFit {
    /// Users shown an estimate, of all.
    pub shown: usize,
    pub users: usize,
    /// Median of estimate / actual wait.
    pub median_ratio: f64,
    /// Share with estimate / actual within [0.5, 2].
    pub within_2x: f64,
    /// Median estimate and median actual wait.
    pub median_estimate: Duration,
    pub median_actual: Duration,
}

impl EstimateFit {
    fn of(probes: &[Probe]) -> Self {
        let pairs: Vec<(Duration, Duration)> = probes
            .iter()
            .filter_map(|p| Some((p.estimate?, p.done?)))
            .collect();
        let mut ratios: Vec<f64> = pairs
            .iter()
            .map(|(est, actual)| est.as_secs_f64() / actual.as_secs_f64().max(1e-3))
            .collect();
        ratios.sort_by(f64::total_cmp);
        let within = ratios.iter().filter(|r| (0.5..=2.0).contains(*r)).count();
        let mut est: Vec<Duration> = pairs.iter().map(|p| p.0).collect();
        let mut actual: Vec<Duration> = pairs.iter().map(|p| p.1).collect();
        est.sort();
        actual.sort();
        Self {
            shown: pairs.len(),
            users: probes.len(),
            median_ratio: ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN),
            within_2x: within as f64 / ratios.len().max(1) as f64,
            median_estimate: est.get(est.len() / 2).copied().unwrap_or_default(),
            median_actual: actual.get(actual.len() / 2).copied().unwrap_or_default(),
        }
    }
}

/// The estimate in an acknowledgement's text (English), as a duration.
fn estimate_in(text: &str) -> Option<Duration> {
    genq_telegram::estimate::Eta::find_in(text, genq_telegram::i18n::Lang::En)
        .map(|eta| Duration::from_secs(eta.secs()))
}

/// Runs both scenarios on a fresh stack and tears it down, whatever happened.
pub async fn run(
    redis_url: &str,
    database_url: &str,
    sizes: &BotSizes,
) -> anyhow::Result<BotFigures> {
    let mut stack = Stack::prepare(redis_url, database_url, sizes.task).await?;
    let outcome = match stack.launch().await {
        Ok(()) => scenarios(&stack, sizes).await,
        Err(e) => Err(e),
    };
    stack.finish().await?;
    outcome
}

async fn scenarios(stack: &Stack, sizes: &BotSizes) -> anyhow::Result<BotFigures> {
    eprintln!(
        "[bot] steady: {} users, one text each over {:?}…",
        sizes.users, sizes.spread
    );
    let (steady, steady_rate, steady_status_messages) =
        steady(stack, sizes.users, sizes.spread).await?;
    eprintln!(
        "[bot] burst: {} users send a photo, then all tap Upscale x2 at once…",
        sizes.burst
    );
    let (burst_figures, burst_messages, burst_estimates) =
        burst(stack, sizes.burst, BURST_CHATS).await?;
    eprintln!(
        "[bot] burst again, {} other users, {:.0}% of sends answered 429…",
        sizes.burst,
        SHARE_429 * 100.0
    );
    stack.tg.rate_limit_share(SHARE_429, 1);
    let refused_before = stack.tg.answered_429();
    let (burst_429, _, burst_429_estimates) = burst(stack, sizes.burst, BURST_429_CHATS).await?;
    let refused_429 = stack.tg.answered_429() - refused_before;
    stack.tg.rate_limit_share(0.0, 1);
    Ok(BotFigures {
        steady,
        steady_rate,
        steady_status_messages,
        burst: burst_figures,
        burst_messages,
        burst_429,
        refused_429,
        burst_estimates,
        burst_429_estimates,
    })
}

/// Everything a user's request goes through, in this process.
struct Stack {
    tg: FakeTelegram,
    /// Kept alive for the run (it stops when dropped).
    _provider: FakeProvider,
    config: genq_config::Config,
    redis_url: String,
    prefix: String,
    schema: Option<BenchSchema>,
    dir: PathBuf,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Stack {
    /// The fakes, the configuration and the database schema; nothing running yet.
    async fn prepare(redis_url: &str, database_url: &str, task: Duration) -> anyhow::Result<Self> {
        let tg = FakeTelegram::start(TOKEN).await;
        let provider = FakeProvider::start().await;
        provider.set_task_duration(task);
        let prefix = genq_testkit::unique_prefix("bench-bot");
        let dir = std::env::temp_dir().join(&prefix);
        let artifacts = dir.join("artifacts");
        std::fs::create_dir_all(&artifacts)
            .with_context(|| format!("creating {}", artifacts.display()))?;
        let config = config(&provider.base_url(), &artifacts)?;
        let schema = BenchSchema::create(database_url, 40).await?;
        Ok(Self {
            tg,
            _provider: provider,
            config,
            redis_url: redis_url.to_owned(),
            prefix,
            schema: Some(schema),
            dir,
            stop: CancellationToken::new(),
            tasks: Vec::new(),
        })
    }

    fn store(&self) -> &genq_store::Store {
        // present from `prepare` until `finish`
        &self.schema.as_ref().expect("the bench schema").store
    }

    /// A Redis connection of its own for each part, as separate processes would have.
    async fn queue(&self) -> anyhow::Result<RedisQueue> {
        RedisQueue::connect(RedisConfig::with_url(&self.redis_url).prefix(&self.prefix))
            .await
            .context("connecting to Redis")
    }

    /// Starts the worker, the relay, the settler and the bot; returns once the bot polls.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let queue = self.queue().await?;
        let prom = prometheus::Registry::new();
        let registry = genq_catalog::registry_builder(self.config.clone(), None)(&queue, &prom)
            .map_err(anyhow::Error::msg)?;
        let mut settings = WorkerSettings::new(WORKER_QUEUES.map(str::to_owned).to_vec());
        settings.concurrency = WORKER_CONCURRENCY;
        settings.grace = Duration::from_secs(5);
        let runtime = WorkerRuntime::start(
            Arc::new(registry),
            queue,
            WorkerMetrics::new(&prom)?,
            settings,
        )
        .await?;
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = runtime.run(stop.cancelled_owned()).await {
                eprintln!("[bot] worker stopped with an error: {e}");
            }
        }));

        let store = self.store().clone();
        let relay = Relay::new(store.clone(), self.queue().await?);
        self.tasks.push(tokio::spawn(relay.run(self.stop.clone())));
        let queues = WORKER_QUEUES.map(str::to_owned).to_vec();
        let settler = Settler::new(store.clone(), self.queue().await?, queues);
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = settler.run(stop).await {
                eprintln!("[bot] settler stopped with an error: {e}");
            }
        }));

        let opts = BotOptions {
            config: self.config.clone(),
            routes: None,
            token: TOKEN.to_owned(),
            api_url: Some(self.tg.api_url()),
            metrics_addr: None,
            webhook_secret: None,
        };
        let queue = self.queue().await?;
        let stop = self.stop.clone();
        let bot = tokio::spawn(async move {
            if let Err(e) = genq_telegram::run_bot(opts, queue, store, stop).await {
                eprintln!("[bot] the bot stopped with an error: {e}");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.tg.calls("getUpdates") == 0 {
            anyhow::ensure!(!bot.is_finished(), "the bot stopped while starting");
            anyhow::ensure!(
                Instant::now() < deadline,
                "the bot did not poll for updates within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.tasks.push(bot);
        Ok(())
    }

    /// Stops everything and removes the run's keys, schema and files.
    async fn finish(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .is_err()
            {
                eprintln!("[bot] a part did not stop within 30 s");
            }
        }
        genq_testkit::cleanup_prefix(&self.redis_url, &self.prefix).await;
        let _ = std::fs::remove_dir_all(&self.dir);
        match self.schema.take() {
            Some(schema) => schema.drop().await,
            None => Ok(()),
        }
    }
}

/// Like the bot tests' configuration: replies from the OpenAI-style provider,
/// upscales from the queue-style one (polled every 100 ms), guard rails far above
/// what one user does here.
fn config(base_url: &str, artifacts: &std::path::Path) -> anyhow::Result<genq_config::Config> {
    let jobs = format!(
        r#"
[jobs.generate_reply]
provider = "llm"
price = 1

[jobs.upscale]
provider = "media"
poll_interval_ms = 100
price = 2

[bot]
welcome_credits = {WELCOME_CREDITS}
requests_per_minute = 1000
requests_per_hour = 10000
max_concurrent_jobs = 1000
"#
    );
    let text = providers_toml(base_url, artifacts) + &jobs;
    let cfg = genq_config::Config::parse(&text, "bench")?;
    cfg.validate()?;
    Ok(cfg)
}

/// What a waiting user expects to see.
enum Expect {
    /// "typing" as the ack, then this reply.
    Reply(String),
    /// A status message with a Cancel button as the ack, then a photo or document.
    Upscaled,
}

/// What one message means to a waiting user.
enum Seen {
    Ack,
    Done,
    /// A text that is neither: the guard rails or an error said no.
    Refused(String),
    Other,
}

impl Expect {
    fn classify(&self, m: &SentMessage) -> Seen {
        let text = m.text.as_deref().unwrap_or_default();
        // a status message keeps its Cancel button until it is edited or deleted
        let status = has_button(m, "cx:") || !m.edits.is_empty() || m.deleted;
        match (self, m.kind) {
            (Expect::Reply(_), SentKind::Action) if text == "typing" => Seen::Ack,
            (Expect::Reply(reply), SentKind::Text) if text == reply => Seen::Done,
            (Expect::Upscaled, SentKind::Text) if status => Seen::Ack,
            (Expect::Upscaled, SentKind::Photo | SentKind::Document) => Seen::Done,
            (_, SentKind::Text) if !status => Seen::Refused(text.to_owned()),
            _ => Seen::Other,
        }
    }
}

fn has_button(m: &SentMessage, prefix: &str) -> bool {
    button(m, prefix).is_some()
}

/// The callback data of the message's first inline button whose data starts with `prefix`.
fn button(m: &SentMessage, prefix: &str) -> Option<String> {
    m.reply_markup
        .as_ref()?
        .get("inline_keyboard")?
        .as_array()?
        .iter()
        .filter_map(|row| row.as_array())
        .flatten()
        .filter_map(|b| b.get("callback_data")?.as_str())
        .find(|d| d.starts_with(prefix))
        .map(str::to_owned)
}

/// One user's request and when its answers were first seen.
struct Probe {
    chat: i64,
    /// Entries in the chat before the request: its answers come after them.
    after: usize,
    expect: Expect,
    queued: Instant,
    /// The callback query of a tap, whose answer is timed.
    callback: Option<String>,
    tap: Option<Duration>,
    ack: Option<Duration>,
    done: Option<Duration>,
    /// The time estimate the user was shown.
    estimate: Option<Duration>,
}

impl Probe {
    /// Queues `send`'s update at the fake and starts the clock just before.
    /// `send` returns the callback query's id for a tap.
    fn start(
        tg: &FakeTelegram,
        chat: i64,
        expect: Expect,
        send: impl FnOnce() -> Option<String>,
    ) -> Self {
        let after = tg.sent(chat).len();
        let queued = Instant::now();
        let callback = send();
        Self {
            chat,
            after,
            expect,
            queued,
            callback,
            tap: None,
            ack: None,
            done: None,
            estimate: None,
        }
    }

    fn answered(&self) -> bool {
        self.ack.is_some() && self.done.is_some() && (self.callback.is_none() || self.tap.is_some())
    }

    /// Times the answer to the tap, once it is there.
    fn poll_tap(&mut self, answers: &[CallbackAnswer]) {
        if self.tap.is_some() {
            return;
        }
        if let Some(id) = &self.callback
            && let Some(answer) = answers.iter().find(|a| &a.callback_query_id == id)
        {
            self.tap = Some(self.queued.elapsed());
            self.estimate = answer.text.as_deref().and_then(estimate_in);
        }
    }

    /// Looks at the chat once.
    fn poll(&mut self, tg: &FakeTelegram) -> anyhow::Result<()> {
        for m in tg.sent(self.chat).iter().skip(self.after) {
            match self.expect.classify(m) {
                Seen::Ack if self.ack.is_none() => {
                    self.ack = Some(self.queued.elapsed());
                    // the status message as first sent (before the status loop's edits)
                    let first = m.edits.first().or(m.text.as_ref());
                    if self.estimate.is_none() {
                        self.estimate = first.and_then(|t| estimate_in(t));
                    }
                }
                Seen::Done if self.done.is_none() => self.done = Some(self.queued.elapsed()),
                Seen::Refused(text) => {
                    anyhow::bail!("chat {} was answered {text:?} instead", self.chat)
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Polls every open probe until all are answered; fails after `timeout`.
async fn wait_answered(
    tg: &FakeTelegram,
    probes: &mut [Probe],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut open = 0;
        let answers = tg.callback_answers();
        for p in probes.iter_mut().filter(|p| !p.answered()) {
            p.poll_tap(&answers);
            p.poll(tg)?;
            open += usize::from(!p.answered());
        }
        if open == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{open} of {} users still waiting after {timeout:?} ({} without an ack)",
            probes.len(),
            probes.iter().filter(|p| p.ack.is_none()).count()
        );
        tokio::time::sleep(POLL).await;
    }
}

fn latencies(probes: &[Probe]) -> Latencies {
    let mut tap: Vec<Duration> = probes.iter().filter_map(|p| p.tap).collect();
    let mut ack: Vec<Duration> = probes.iter().filter_map(|p| p.ack).collect();
    let mut done: Vec<Duration> = probes.iter().filter_map(|p| p.done).collect();
    tap.sort();
    ack.sort();
    done.sort();
    Latencies { tap, ack, done }
}

/// `users` users with a dialog each (set up in the store: returning users) send one
/// text message apiece, evenly spread over `spread`. The ack is "typing".
async fn steady(
    stack: &Stack,
    users: usize,
    spread: Duration,
) -> anyhow::Result<(Latencies, f64, usize)> {
    let store = stack.store();
    let persona = store
        .personas()
        .await?
        .into_iter()
        .next()
        .context("no persona seeded by the migrations")?;
    for i in 0..users {
        let (user, _) = store
            .welcome_user(STEADY_CHATS + i as i64, "en", WELCOME_CREDITS)
            .await?;
        store.new_dialog(user.id, persona.id).await?;
    }
    let tg = &stack.tg;
    let gap = spread.div_f64(users.max(1) as f64);
    let deadline = Instant::now() + spread + Duration::from_secs(120);
    let started = Instant::now();
    let mut probes: Vec<Probe> = Vec::with_capacity(users);
    while probes.len() < users {
        while probes.len() < users && started.elapsed() >= gap.mul_f64(probes.len() as f64) {
            let n = probes.len();
            let chat = STEADY_CHATS + n as i64;
            let text = format!("hello from user {n}");
            let expect = Expect::Reply(format!("Echo: {text}"));
            probes.push(Probe::start(tg, chat, expect, || {
                tg.user_sends_text(chat, chat, &text);
                None
            }));
        }
        for p in probes.iter_mut().filter(|p| !p.answered()) {
            p.poll(tg)?;
        }
        anyhow::ensure!(Instant::now() < deadline, "the steady load fell behind");
        tokio::time::sleep(POLL).await;
    }
    let sending = probes
        .last()
        .zip(probes.first())
        .map(|(last, first)| last.queued - first.queued)
        .unwrap_or_default();
    let rate = (users.saturating_sub(1)) as f64 / sending.as_secs_f64().max(f64::EPSILON);
    wait_answered(
        tg,
        &mut probes,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await?;
    let with_status = probes
        .iter()
        .filter(|p| {
            tg.sent(p.chat)
                .iter()
                .skip(p.after)
                .any(|m| m.kind == SentKind::Text && has_button(m, "cx:"))
        })
        .count();
    Ok((latencies(&probes), rate, with_status))
}

/// A small PNG photo.
fn photo() -> anyhow::Result<Vec<u8>> {
    let (w, h) = PHOTO;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// `n` users send a photo and get the menu (not timed), then all tap Upscale x2 at
/// the same instant. The answer to the tap ("taken into work") is the ack; the
/// status message with its Cancel button follows under Telegram's message limits.
async fn burst(
    stack: &Stack,
    n: usize,
    first_chat: i64,
) -> anyhow::Result<(Latencies, usize, EstimateFit)> {
    let tg = &stack.tg;
    let bytes = photo()?;
    let (w, h) = PHOTO;
    for i in 0..n {
        let chat = first_chat + i as i64;
        tg.user_sends_photo(chat, chat, bytes.clone(), w, h);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut menus: Vec<Option<(i32, String)>> = vec![None; n];
    while menus.iter().any(Option::is_none) {
        for (i, menu) in menus.iter_mut().enumerate().filter(|(_, m)| m.is_none()) {
            *menu = tg
                .sent(first_chat + i as i64)
                .iter()
                .find_map(|m| Some((m.message_id, button(m, "up2:")?)));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {n} photo menus missing after 120 s",
            menus.iter().filter(|m| m.is_none()).count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the menus went out just now: let Telegram's windows (1 s overall, 1 s per
    // chat) pass, so the taps start from a bot that is not sending
    tokio::time::sleep(THROTTLE_WINDOW * 2).await;
    let messages_before = sent_messages(tg);
    let mut probes: Vec<Probe> = menus
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, (menu, data))| {
            let chat = first_chat + i as i64;
            Probe::start(tg, chat, Expect::Upscaled, || {
                Some(tg.user_presses_button(chat, chat, menu, &data))
            })
        })
        .collect();
    wait_answered(tg, &mut probes, Duration::from_secs(180)).await?;
    Ok((
        latencies(&probes),
        sent_messages(tg) - messages_before,
        EstimateFit::of(&probes),
    ))
}

/// Messages the bot has sent so far (every chat; the methods teloxide throttles).
fn sent_messages(tg: &FakeTelegram) -> usize {
    ["sendMessage", "sendPhoto", "sendDocument"]
        .iter()
        .map(|m| tg.calls(m))
        .sum()
}
