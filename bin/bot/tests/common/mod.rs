//! A whole genq for a conversation test: the real `bot` process and a real worker
//! (`genq run --no-admin`: workers, relay, settler) against the fake Telegram Bot
//! API, the fake provider, real Redis (a key prefix of the test's own) and real
//! PostgreSQL (a schema of the test's own).
#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

use genq_redis::{RedisConfig, RedisQueue};
use genq_store::{Store, StoreConfig, User};
use genq_testkit::{
    ChildProcess, FakeProvider, FakeTelegram, SentKind, SentMessage, TestSchema, cleanup_prefix,
    free_port, providers_toml, redis_url, unique_prefix, wait_until,
};
use serde_json::Value;

pub const TOKEN: &str = "123456:TEST-TOKEN";
/// The webhook secret every bot of a test shares.
pub const WEBHOOK_SECRET: &str = "shared-secret_42";
/// How long a test waits for something the bot should do.
pub const WAIT: Duration = Duration::from_secs(30);

/// Settings a test may change.
pub struct Options {
    pub welcome_credits: i64,
    pub per_minute: u32,
    pub per_hour: u32,
    pub max_concurrent: u32,
    pub admin_ids: Vec<i64>,
    /// How long the fake provider's queue-style tasks take.
    pub task_duration: Duration,
    /// More lines for the `[bot]` section.
    pub extra_bot: String,
    /// A Redis of the test's own (one it stops or restarts); the shared one if `None`.
    pub redis_url: Option<String>,
    /// More sections for the configuration (e.g. `[promo]`).
    pub extra_config: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            welcome_credits: 100,
            per_minute: 30,
            per_hour: 200,
            max_concurrent: 10,
            admin_ids: vec![],
            task_duration: Duration::from_millis(300),
            extra_bot: String::new(),
            redis_url: None,
            extra_config: String::new(),
        }
    }
}

pub struct Stack {
    pub tg: FakeTelegram,
    pub provider: FakeProvider,
    pub prefix: String,
    pub store: Store,
    pub queue: RedisQueue,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub redis_url: String,
    schema: Option<TestSchema>,
    schema_name: String,
    db_url: String,
    pub bot: Option<ChildProcess>,
    pub worker: Option<ChildProcess>,
}

impl Stack {
    /// Starts everything and waits until the bot and the worker are up.
    pub async fn start(test: &str, opts: Options) -> Stack {
        let tg = FakeTelegram::start(TOKEN).await;
        let provider = FakeProvider::start().await;
        provider.set_task_duration(opts.task_duration);
        let prefix = unique_prefix(test);
        let dir = std::env::temp_dir().join(&prefix);
        let artifacts = dir.join("artifacts");
        std::fs::create_dir_all(&artifacts).expect("temp dir");
        let config = dir.join("genq.toml");
        std::fs::write(
            &config,
            config_text(&provider.base_url(), &artifacts, &opts),
        )
        .expect("write config");
        let schema = TestSchema::create(test).await.expect("test schema");
        let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
            .await
            .expect("store");
        let redis_url = opts.redis_url.clone().unwrap_or_else(redis_url);
        let queue = RedisQueue::connect(RedisConfig::with_url(&redis_url).prefix(&prefix))
            .await
            .expect("redis");
        let mut stack = Stack {
            tg,
            provider,
            prefix,
            store,
            queue,
            dir,
            config,
            redis_url,
            schema_name: schema.name.clone(),
            db_url: schema.url.clone(),
            schema: Some(schema),
            bot: None,
            worker: None,
        };
        stack.start_worker().await;
        stack.start_bot().await;
        stack
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GENQ_REDIS_URL", self.redis_url.clone()),
            ("GENQ_PREFIX", self.prefix.clone()),
            ("GENQ_DATABASE_URL", self.db_url.clone()),
            ("GENQ_DATABASE_SCHEMA", self.schema_name.clone()),
            ("GENQ_DATABASE_MAX_CONNECTIONS", "5".to_owned()),
            ("GENQ_CONFIG", self.config.display().to_string()),
            ("GENQ_LEASE_SECS", "3".to_owned()),
            ("GENQ_HEARTBEAT_MS", "500".to_owned()),
            ("GENQ_RECONCILE_SECS", "2".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
    }

    /// Starts the `bot` process (the previous one, if any, must be gone).
    pub async fn start_bot(&mut self) {
        self.start_bot_with(&[]).await;
    }

    /// Starts the `bot` process with more environment (a failpoint, say).
    pub async fn start_bot_with(&mut self, extra: &[(&'static str, String)]) {
        let bot = self.spawn_bot(extra).await;
        self.bot = Some(bot);
    }

    /// Starts another `bot` process (a replica) and waits until it is up.
    pub async fn spawn_bot(&self, extra: &[(&'static str, String)]) -> ChildProcess {
        let mut env = self.env();
        env.extend(extra.iter().cloned());
        env.push(("GENQ_BOT_TOKEN", TOKEN.to_owned()));
        env.push(("GENQ_BOT_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()));
        env.push(("GENQ_BOT_API_URL", self.tg.api_url()));
        env.push((
            "GENQ_BOT_METRICS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        ));
        let bot = ChildProcess::spawn(env!("CARGO_BIN_EXE_bot"), &[], &env).expect("spawn bot");
        assert!(
            bot.wait_for_output("bot started", WAIT).await,
            "the bot did not start"
        );
        bot
    }

    /// SIGKILLs the bot: no chance to clean up.
    pub fn kill_bot(&mut self) {
        if let Some(mut bot) = self.bot.take() {
            bot.sigkill();
        }
    }

    /// Starts `genq run --no-admin` (workers, relay, settler).
    pub async fn start_worker(&mut self) {
        let mut env = self.env();
        env.push(("GENQ_BOT_TOKEN", String::new()));
        env.push(("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())));
        env.push((
            "GENQ_BOT_METRICS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        ));
        let worker = ChildProcess::spawn(&sibling_binary("genq"), &["run", "--no-admin"], &env)
            .expect("spawn genq run");
        assert!(
            worker.wait_for_output("worker started", WAIT).await,
            "the worker did not start"
        );
        self.worker = Some(worker);
    }

    /// SIGKILLs the worker (and with it the relay and the settler).
    pub fn kill_worker(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.sigkill();
        }
    }

    /// What the dead bot committed for the photo menu's button `data` (`up2:<token>`):
    /// the job and its charge under the button's idempotency key, nothing else.
    pub async fn charge_like_a_dead_bot(&self, chat: i64, user_id: i64, menu_id: i32, data: &str) {
        let token = data.trim_start_matches("up2:");
        let mut conn = self.queue.connection();
        let stash: String =
            redis::AsyncCommands::get(&mut conn, format!("{}:bot:tok:{token}", self.prefix))
                .await
                .expect("the photo behind the menu");
        let image = serde_json::from_str::<Value>(&stash).expect("stash")["image"].clone();
        self.store
            .charge_and_enqueue(&genq_store::PaidJob {
                user_id,
                job_type: "upscale".to_owned(),
                queue: "img".to_owned(),
                payload: serde_json::json!({ "image": image, "factor": 2 }),
                price: 2,
                idempotency_key: Some(format!("up2:{chat}:{menu_id}")),
            })
            .await
            .expect("charge");
    }

    /// The store's record of Telegram user `tg_id` (once the bot has seen them).
    pub async fn user(&self, tg_id: i64) -> User {
        wait_until(WAIT, || async {
            self.store.user_by_telegram_id(tg_id).await.ok().flatten()
        })
        .await
        .expect("the bot never recorded the user")
    }

    /// Waits for a message to `chat` that `pred` accepts, sent after the first
    /// `after` messages.
    pub async fn wait_sent(
        &self,
        chat: i64,
        after: usize,
        pred: impl Fn(&SentMessage) -> bool,
    ) -> SentMessage {
        wait_until(WAIT, || {
            let found = self.tg.sent(chat).into_iter().skip(after).find(|m| pred(m));
            async move { found }
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "nothing expected arrived in chat {chat}; sent: {:#?}",
                self.tg.sent(chat)
            )
        })
    }

    /// The user taps the button of `message` whose data starts with `prefix`; how
    /// many entries the chat had before (for [`Stack::wait_sent`]).
    pub fn tap(&self, chat: i64, message: &SentMessage, prefix: &str) -> usize {
        let before = self.sent_count(chat);
        self.tg
            .user_presses_button(chat, chat, message.message_id, &button(message, prefix));
        before
    }

    /// The user sends `text`; the reply ("Echo: <text>" from the fake provider), which
    /// carries the "Draw the scene" button.
    pub async fn chat(&self, chat: i64, text: &str) -> SentMessage {
        let before = self.sent_count(chat);
        self.tg.user_sends_text(chat, chat, text);
        let expected = format!("Echo: {text}");
        self.wait_sent(chat, before, |m| {
            m.kind == SentKind::Text && m.text.as_deref() == Some(expected.as_str())
        })
        .await
    }

    /// The text of the first message after `before` that reads as the catalog's
    /// `key`: the job's status message (edited), or, when the job ended before its
    /// status message was recorded, a message of its own (the status message is
    /// then deleted).
    pub async fn wait_said(&self, chat: i64, before: usize, key: &str) -> String {
        self.wait_sent(chat, before, |m| {
            m.text.as_deref().is_some_and(|t| is_text(t, key))
        })
        .await
        .text
        .unwrap_or_default()
    }

    /// The first text message sent to `chat` after `before`.
    pub async fn next_text(&self, chat: i64, before: usize) -> SentMessage {
        self.wait_sent(chat, before, |m| m.kind == SentKind::Text)
            .await
    }

    /// The first photo or document (a result) sent to `chat` after `before`.
    pub async fn next_result(&self, chat: i64, before: usize) -> SentMessage {
        self.wait_sent(chat, before, |m| {
            matches!(m.kind, SentKind::Photo | SentKind::Document)
        })
        .await
    }

    /// Photo menu → Animate → a ready-made style (`ugc` or `ad`): the count menu.
    pub async fn video_count_menu(
        &self,
        chat: i64,
        menu: &SentMessage,
        style: &str,
    ) -> SentMessage {
        let before = self.tap(chat, menu, "an:");
        let styles = self
            .wait_sent(chat, before, |m| !buttons(m).is_empty())
            .await;
        let before = self.sent_count(chat);
        let data = button(&styles, "st:");
        let token = data.split(':').nth(1).unwrap_or_default();
        self.tg.user_presses_button(
            chat,
            chat,
            styles.message_id,
            &format!("st:{token}:{style}"),
        );
        self.wait_sent(chat, before, |m| {
            buttons(m).iter().any(|(_, d)| d.starts_with("n:"))
        })
        .await
    }

    /// How many messages (and actions) were sent to `chat` so far.
    pub fn sent_count(&self, chat: i64) -> usize {
        self.tg.sent(chat).len()
    }

    /// The latest state of message `id` in `chat`.
    pub fn message(&self, chat: i64, id: i32) -> Option<SentMessage> {
        self.tg
            .sent(chat)
            .into_iter()
            .find(|m| m.message_id == id && m.kind != SentKind::Action)
    }

    /// Waits until message `id` reads something `pred` accepts (edits included).
    pub async fn wait_text(&self, chat: i64, id: i32, pred: impl Fn(&str) -> bool) -> String {
        wait_until(WAIT, || {
            let text = self
                .message(chat, id)
                .and_then(|m| m.text)
                .filter(|t| pred(t));
            async move { text }
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "message {id} never read as expected: {:#?}",
                self.message(chat, id)
            )
        })
    }

    /// The user's balance once it equals `expected` (the settler refunds asynchronously).
    pub async fn wait_balance(&self, user_id: i64, expected: i64) -> i64 {
        let got = wait_until(WAIT, || async {
            let b = self.store.balance(user_id).await.ok()?;
            (b == expected).then_some(b)
        })
        .await;
        let now = self.store.balance(user_id).await.unwrap_or(-1);
        assert_eq!(got, Some(expected), "balance is {now}, expected {expected}");
        let sum = self.store.ledger_sum(user_id).await.expect("ledger sum");
        assert_eq!(sum, expected, "the ledger and the balance disagree");
        expected
    }

    /// The user picks the first persona after /start; the ids of the messages sent.
    pub async fn start_dialog(&self, chat: i64) {
        let before = self.sent_count(chat);
        self.tg.user_sends_command(chat, chat, "/start");
        let menu = self
            .wait_sent(chat, before, |m| {
                buttons(m).iter().any(|(_, d)| d.starts_with("persona:"))
            })
            .await;
        let (_, data) = buttons(&menu)[0].clone();
        let before = self.sent_count(chat);
        self.tg
            .user_presses_button(chat, chat, menu.message_id, &data);
        self.wait_sent(chat, before, |m| m.kind == SentKind::Text)
            .await;
    }

    /// The user sends a photo; the menu message under it.
    pub async fn send_photo(&self, chat: i64) -> SentMessage {
        let before = self.sent_count(chat);
        self.tg.user_sends_photo(chat, chat, png(64, 48), 64, 48);
        self.wait_sent(chat, before, |m| {
            buttons(m).iter().any(|(_, d)| d.starts_with("up2:"))
        })
        .await
    }

    /// Number of jobs of `job_type` the user has in the store.
    pub async fn jobs_of(&self, user_id: i64, job_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE user_id = $1 AND job_type = $2")
            .bind(user_id)
            .bind(job_type)
            .fetch_one(self.store.pool())
            .await
            .expect("count jobs")
    }

    /// Ledger entries of a kind for the user.
    pub async fn ledger(&self, user_id: i64, kind: &str) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT amount FROM credit_ledger WHERE user_id = $1 AND kind = $2 ORDER BY id",
        )
        .bind(user_id)
        .bind(kind)
        .fetch_all(self.store.pool())
        .await
        .expect("ledger")
    }

    /// Stops the processes and removes the test's data.
    pub async fn finish(mut self) {
        self.kill_bot();
        if let Some(mut w) = self.worker.take() {
            w.sigkill();
        }
        cleanup_prefix(&self.redis_url, &self.prefix).await;
        if let Some(schema) = self.schema.take() {
            schema.drop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Another binary of the workspace, built next to `bot` (`cargo test --workspace`
/// builds them all).
fn sibling_binary(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_bot")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace` (or `cargo build -p genq-cli` first)",
        path.display()
    );
    path.display().to_string()
}

/// The inline buttons of a message: (text, callback data).
pub fn buttons(m: &SentMessage) -> Vec<(String, String)> {
    let Some(Value::Array(rows)) = m
        .reply_markup
        .as_ref()
        .and_then(|r| r.get("inline_keyboard"))
    else {
        return vec![];
    };
    rows.iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|b| {
            Some((
                b.get("text")?.as_str()?.to_owned(),
                b.get("callback_data")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The data of the button whose data starts with `prefix`.
pub fn button(m: &SentMessage, prefix: &str) -> String {
    buttons(m)
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d.starts_with(prefix))
        .unwrap_or_else(|| panic!("no button {prefix}… in {m:#?}"))
}

/// A small PNG.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

fn config_text(base: &str, artifacts: &std::path::Path, o: &Options) -> String {
    let jobs = format!(
        r#"
[providers.painter]
protocol = "openai"
base_url = "{base}/v1"
keys = ["painter-key"]

[jobs.generate_reply]
provider = "llm"
price = 1
backoff_base_ms = 200

[jobs.generate_image_prompt]
provider = "llm"
price = 0

[jobs.generate_image]
provider = "painter"
price = 3

[jobs.generate_video]
provider = "media"
poll_interval_ms = 100
backoff_base_ms = 200
price = 10

[jobs.face_swap]
provider = "media"
poll_interval_ms = 100
price = 3

[jobs.upscale]
provider = "media"
poll_interval_ms = 100
price = 2

[bot]
welcome_credits = {welcome}
admin_ids = [{admins}]
requests_per_minute = {per_minute}
requests_per_hour = {per_hour}
max_concurrent_jobs = {max_concurrent}
status_edit_secs = 1
{extra_bot}
"#,
        welcome = o.welcome_credits,
        admins = o
            .admin_ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        per_minute = o.per_minute,
        per_hour = o.per_hour,
        max_concurrent = o.max_concurrent,
        extra_bot = o.extra_bot,
    );
    providers_toml(base, artifacts) + &jobs + &o.extra_config
}

/// The English catalog's text for `key` with `args`.
pub fn text(key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
    genq_telegram::i18n::t(genq_telegram::i18n::Lang::En, key, args)
}

/// True when `message` is the English catalog's `key` with its placeholders filled
/// in (whatever they were filled with).
pub fn is_text(message: &str, key: &str) -> bool {
    let template = text(key, &[]);
    let mut parts = Vec::new();
    let mut rest = template.as_str();
    while let Some(open) = rest.find('{') {
        parts.push(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => rest = &rest[open + close + 1..],
            None => break,
        }
    }
    parts.push(rest);
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        let part = if i == 0 { part.trim_end() } else { part.trim() };
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            if !message.starts_with(part) {
                return false;
            }
            pos = part.len();
            continue;
        }
        match message[pos..].find(part) {
            Some(p) => pos += p + part.len(),
            None => return false,
        }
    }
    true
}
