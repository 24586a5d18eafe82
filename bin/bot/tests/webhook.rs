//! Webhook mode (by config): the bot registers its URL with Telegram and serves
//! updates posted to it from axum, checking Telegram's secret token.

mod common;

use common::{Options, Stack, WAIT, text};
use genq_testkit::{SentKind, free_port, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_webhook_mode_updates_posted_to_the_bot_are_answered() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/telegram");
    let opts = Options {
        extra_bot: format!(
            "mode = \"webhook\"\nwebhook_url = \"{url}\"\nwebhook_addr = \"127.0.0.1:{port}\"\n"
        ),
        ..Options::default()
    };
    let stack = Stack::start("bot_webhook", opts).await;
    let registered = wait_until(WAIT, || {
        let r = stack.tg.requests("setWebhook");
        async move { r.last().cloned() }
    })
    .await
    .expect("the bot registered its webhook");
    assert_eq!(registered["url"], url);
    let secret = registered["secret_token"]
        .as_str()
        .expect("a secret token")
        .to_owned();
    assert_eq!(
        secret,
        common::WEBHOOK_SECRET,
        "the configured, shared secret"
    );
    assert_eq!(
        stack.tg.calls("getUpdates"),
        0,
        "no long polling in webhook mode"
    );

    let chat = 3001;
    let update = json!({
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": { "id": chat, "type": "private", "first_name": "Web" },
            "from": { "id": chat, "is_bot": false, "first_name": "Web", "language_code": "en" },
            "text": "/balance",
            "entities": [{ "type": "bot_command", "offset": 0, "length": 8 }]
        }
    });
    let http = reqwest::Client::new();
    let forged = http.post(&url).json(&update).send().await.unwrap();
    assert!(
        forged.status().is_client_error(),
        "an update without the secret token is refused: {}",
        forged.status()
    );
    let sent = wait_until(WAIT, || {
        let http = http.clone();
        let (url, secret, update) = (url.clone(), secret.clone(), update.clone());
        async move {
            let r = http
                .post(&url)
                .header("X-Telegram-Bot-Api-Secret-Token", secret)
                .json(&update)
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    assert!(sent.is_some(), "the webhook accepted the update");
    let answer = stack.wait_sent(chat, 0, |m| m.kind == SentKind::Text).await;
    let answer = answer.text.unwrap_or_default();
    assert!(
        answer.starts_with(&format!(
            "{}\n\n{}\n",
            text("balance", &[("credits", &100)]),
            text("ledger.title", &[])
        )),
        "the balance, then its history: {answer}"
    );

    // a second replica behind the same webhook secret
    let port2 = free_port();
    let url2 = format!("http://127.0.0.1:{port2}/telegram");
    let config2 = stack.dir.join("genq-replica.toml");
    let replica_config = std::fs::read_to_string(&stack.config)
        .expect("config")
        .replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{port2}"));
    std::fs::write(&config2, replica_config).expect("replica config");
    let replica = stack
        .spawn_bot(&[("GENQ_CONFIG", config2.display().to_string())])
        .await;
    let post = |url: String, update: serde_json::Value| {
        let (http, secret) = (http.clone(), secret.clone());
        async move {
            http.post(&url)
                .header("X-Telegram-Bot-Api-Secret-Token", secret)
                .json(&update)
                .send()
                .await
                .expect("the webhook answers")
                .status()
        }
    };
    // Telegram sends the update again, to either replica: handled once
    for target in [url.clone(), url2.clone(), url2.clone()] {
        let status = post(target, update.clone()).await;
        assert!(
            status.is_success(),
            "a repeated update is accepted: {status}"
        );
    }
    // a new update to the second replica is handled there
    let mut second = update.clone();
    second["update_id"] = json!(2);
    second["message"]["message_id"] = json!(2);
    assert!(post(url2.clone(), second).await.is_success());
    let answers = wait_until(WAIT, || {
        let n = stack
            .tg
            .sent(chat)
            .iter()
            .filter(|m| m.kind == SentKind::Text)
            .count();
        async move { (n >= 2).then_some(n) }
    })
    .await;
    assert_eq!(answers, Some(2));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let balances = stack
        .tg
        .sent(chat)
        .iter()
        .filter(|m| m.kind == SentKind::Text)
        .count();
    assert_eq!(balances, 2, "one answer per update, whatever was repeated");
    drop(replica);
    // a replica that stops leaves the webhook to the others
    let mut stack = stack;
    if let Some(bot) = stack.bot.take() {
        assert!(bot.sigterm());
        let mut bot = bot;
        assert!(
            bot.wait_exit(WAIT).await.is_some(),
            "the bot stops on SIGTERM"
        );
    }
    assert_eq!(stack.tg.calls("deleteWebhook"), 0);
    stack.finish().await;
}
