//! The all-in-one `genq run` and the Telegram bot: with a token it serves the bot
//! in the same process; without one it says how to set one and runs the rest.

use std::time::Duration;

use genq_testkit::{
    ChildProcess, FakeProvider, FakeTelegram, SentKind, TestSchema, cleanup_prefix, free_port,
    http_get, providers_toml, redis_url, unique_prefix,
};

const TOKEN: &str = "4242:ALL-IN-ONE";
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    schema: TestSchema,
    prefix: String,
    dir: std::path::PathBuf,
    admin: String,
}

impl Env {
    async fn new(test: &str, provider: &FakeProvider) -> Self {
        let prefix = unique_prefix(test);
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(dir.join("artifacts")).expect("temp dir");
        let config = providers_toml(&provider.base_url(), &dir.join("artifacts"))
            + "\n[jobs.generate_reply]\nprovider = \"llm\"\nprice = 1\n";
        std::fs::write(dir.join("genq.toml"), config).expect("config");
        Self {
            schema: TestSchema::create(test).await.expect("schema"),
            prefix,
            dir,
            admin: format!("127.0.0.1:{}", free_port()),
        }
    }

    fn run(&self, token: &str, api_url: &str) -> ChildProcess {
        let env = [
            ("GENQ_REDIS_URL", redis_url()),
            ("GENQ_PREFIX", self.prefix.clone()),
            ("GENQ_DATABASE_URL", self.schema.url.clone()),
            ("GENQ_DATABASE_SCHEMA", self.schema.name.clone()),
            (
                "GENQ_CONFIG",
                self.dir.join("genq.toml").display().to_string(),
            ),
            ("GENQ_METRICS_ADDR", format!("127.0.0.1:{}", free_port())),
            (
                "GENQ_BOT_METRICS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            ),
            ("GENQ_ADMIN_ADDR", self.admin.clone()),
            ("GENQ_BOT_TOKEN", token.to_owned()),
            ("GENQ_BOT_API_URL", api_url.to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        ChildProcess::spawn(env!("CARGO_BIN_EXE_genq"), &["run"], &env).expect("spawn genq run")
    }

    async fn finish(self) {
        cleanup_prefix(&redis_url(), &self.prefix).await;
        self.schema.drop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_genq_run_serves_the_telegram_bot() {
    let provider = FakeProvider::start().await;
    let tg = FakeTelegram::start(TOKEN).await;
    let env = Env::new("allinone_bot", &provider).await;
    let genq = env.run(TOKEN, &tg.api_url());
    assert!(genq.wait_for_output("bot started", WAIT).await);
    assert!(genq.wait_for_output("worker started", WAIT).await);

    let chat = 31;
    tg.user_sends_command(chat, chat, "/start");
    let menu = tg
        .wait_for_sent(chat, |m| m.reply_markup.is_some(), WAIT)
        .await
        .expect("the greeting with the personas");
    let persona = menu.reply_markup.as_ref().and_then(|r| {
        r["inline_keyboard"][0][0]["callback_data"]
            .as_str()
            .map(str::to_owned)
    });
    tg.user_presses_button(
        chat,
        chat,
        menu.message_id,
        &persona.expect("a persona button"),
    );
    tg.user_sends_text(chat, chat, "are you there?");
    let reply = tg
        .wait_for_sent(
            chat,
            |m| m.kind == SentKind::Text && m.text.as_deref() == Some("Echo: are you there?"),
            WAIT,
        )
        .await;
    assert!(reply.is_some(), "the reply arrived: {:#?}", tg.sent(chat));
    assert!(
        http_get(&env.admin, "/healthz").is_some(),
        "the admin runs too"
    );
    drop(genq);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_genq_run_says_how_to_set_one_and_runs_the_rest() {
    let provider = FakeProvider::start().await;
    let env = Env::new("allinone_nobot", &provider).await;
    let genq = env.run("", "");
    assert!(genq.wait_for_output("set GENQ_BOT_TOKEN=", WAIT).await);
    assert!(genq.wait_for_output("worker started", WAIT).await);
    let healthy =
        genq_testkit::wait_until(WAIT, || async { http_get(&env.admin, "/healthz") }).await;
    assert!(healthy.is_some(), "the admin runs without the bot");
    drop(genq);
    env.finish().await;
}
