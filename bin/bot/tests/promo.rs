//! The promo video, as a user orders it: the real `bot` and `genq run` processes
//! against the fake Telegram and the fake provider, real Redis and PostgreSQL.
//! Brief → script (approve) → pictures (approve) → clips (approve) → voice-over →
//! one 50-second video; cancels, a gate timing out, bad scripts, a refusal, and
//! `genq run` SIGKILLed mid-stage. Provider calls and ledger rows are counted.

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::{Options, Stack, WAIT, buttons, is_text, text};
use genq_testkit::{FakeTelegram, SentKind, SentMessage, TaskErrorCode, wait_until};

const PRICE: i64 = 50;
const WELCOME: i64 = 100;
const BRIEF: &str = "Glowberry tea: a sparkling iced tea with wild berries for people on the go";

fn promo_config(approval_timeout_secs: u64) -> String {
    // price 50, previews 3 pictures and 2 clips: the defaults
    genq_testkit::promo_toml(approval_timeout_secs)
}

async fn stack(test: &str, approval_timeout_secs: u64) -> Stack {
    Stack::start(
        test,
        Options {
            welcome_credits: WELCOME,
            task_duration: Duration::from_millis(200),
            extra_config: promo_config(approval_timeout_secs),
            ..Options::default()
        },
    )
    .await
}

fn has_button(m: &SentMessage, prefix: &str) -> bool {
    buttons(m).iter().any(|(_, d)| d.starts_with(prefix))
}

/// `/promo`, then the brief as text: the confirmation with Start / Cancel.
async fn brief(s: &Stack, chat: i64, brief: &str) -> SentMessage {
    brief_by(s, chat, |tg| tg.user_sends_text(chat, chat, brief)).await
}

/// `/promo`, then the brief as `send` gives it (text, voice): the confirmation
/// with Start / Cancel.
async fn brief_by(s: &Stack, chat: i64, send: impl FnOnce(&FakeTelegram) -> u32) -> SentMessage {
    let before = s.sent_count(chat);
    s.tg.user_sends_command(chat, chat, "/promo");
    s.wait_sent(chat, before, |m| {
        m.text
            .as_deref()
            .is_some_and(|t| is_text(t, "promo.ask_brief"))
    })
    .await;
    let before = s.sent_count(chat);
    send(&s.tg);
    s.wait_sent(chat, before, |m| has_button(m, "ps:")).await
}

/// Start under the confirmation: the status message (with its Cancel button).
async fn start(s: &Stack, chat: i64, confirm: &SentMessage) -> SentMessage {
    let before = s.tap(chat, confirm, "ps:");
    // the status message: with its Cancel button, or already edited past it (a
    // pipeline that ends at once, e.g. on a malformed script, may do so before
    // the test looks)
    s.wait_sent(chat, before, |m| {
        has_button(m, "cx:") || !m.edits.is_empty()
    })
    .await
}

/// `/promo`, the brief, Start: the user and the status message.
async fn ordered(s: &Stack, chat: i64) -> (genq_store::User, SentMessage) {
    let confirm = brief(s, chat, BRIEF).await;
    let user = s.user(chat).await;
    let status = start(s, chat, &confirm).await;
    (user, status)
}

/// The next gate's question (the message with an Approve button) after `after`.
async fn gate(s: &Stack, chat: i64, after: usize) -> SentMessage {
    s.wait_sent(chat, after, |m| has_button(m, "pa:")).await
}

/// Taps Approve under `question`; the tap's answer.
async fn approve(s: &Stack, chat: i64, question: &SentMessage) -> String {
    let id = s.tg.user_presses_button(
        chat,
        chat,
        question.message_id,
        &common::button(question, "pa:"),
    );
    tap_answer(s, &id).await
}

async fn tap_answer(s: &Stack, id: &str) -> String {
    wait_until(WAIT, || {
        let found =
            s.tg.callback_answers()
                .into_iter()
                .find(|a| a.callback_query_id == id)
                .map(|a| a.text.unwrap_or_default());
        async move { found }
    })
    .await
    .expect("the tap was never answered")
}

/// The status message's text once it reads as `key`.
async fn status_reads(s: &Stack, chat: i64, status: &SentMessage, key: &str) -> String {
    s.wait_text(chat, status.message_id, |t| is_text(t, key))
        .await
}

/// Provider calls so far: (chat, images, video submits, speech).
fn calls(s: &Stack) -> (usize, usize, usize, usize) {
    (
        s.provider.calls("chat"),
        s.provider.calls("images"),
        s.provider.submits(),
        s.provider.calls("speech"),
    )
}

/// ffprobe's duration and stream types of an MP4.
fn probe(path: &Path) -> (f64, Vec<String>) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut duration = 0.0;
    let mut streams = Vec::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("duration=") {
            duration = d.trim().parse().unwrap_or(0.0);
        }
        if let Some(t) = line.strip_prefix("codec_type=") {
            streams.push(t.trim().to_owned());
        }
    }
    streams.sort();
    (duration, streams)
}

/// Files left in the artifact store (the scratch directory included).
fn files_left(s: &Stack) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&s.dir.join("artifacts"), &mut out);
    out
}

/// The user's promo pipeline (its job id).
async fn status_job(s: &Stack, user_id: i64) -> String {
    sqlx::query_scalar("SELECT id FROM jobs WHERE user_id = $1 AND job_type = 'promo'")
        .bind(user_id)
        .fetch_one(s.store.pool())
        .await
        .expect("the promo job")
}

/// Pictures the pipeline has recorded as drawn.
async fn pictures_done(s: &Stack, id: &str) -> usize {
    let view = genq_pipeline::PipelineClient::new(s.queue.clone())
        .view(id)
        .await
        .expect("view")
        .expect("the pipeline");
    view.stages
        .iter()
        .find(|st| st.name == "images")
        .map_or(0, |st| st.done)
}

/// Waits until nothing changes for a moment, then says how many provider calls
/// there were: a check that nothing more is asked for.
async fn settled_calls(s: &Stack) -> (usize, usize, usize, usize) {
    let mut last = calls(s);
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = calls(s);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn a_brief_becomes_a_50_second_video_approved_at_every_step() {
    let s = stack("promo_happy", 600).await;
    let chat = 7101;
    let user = {
        let confirm = brief(&s, chat, BRIEF).await;
        let confirm_text = confirm.text.clone().unwrap_or_default();
        assert!(confirm_text.contains(BRIEF), "{confirm_text}");
        assert!(confirm_text.contains(&PRICE.to_string()));
        let user = s.user(chat).await;
        let status = start(&s, chat, &confirm).await;
        (user, status, confirm)
    };
    let (user, status, confirm) = user;

    // the script: 10 segments, 3 intro / 4 main / 3 outro, quoting the brief
    let script = gate(&s, chat, 0).await;
    let script_text = script.text.clone().unwrap_or_default();
    let count = |part: &str| {
        let word = text(&format!("promo.part.{part}"), &[]);
        script_text
            .lines()
            .filter(|l| l.contains(&format!(". {word},")))
            .count()
    };
    assert_eq!(
        (count("intro"), count("main"), count("outro")),
        (3, 4, 3),
        "{script_text}"
    );
    assert!(script_text.contains("Glowberry"), "{script_text}");
    status_reads(&s, chat, &status, "promo.status.gate").await;

    // a double tap moves the pipeline once
    let first = s.tg.user_presses_button(
        chat,
        chat,
        script.message_id,
        &common::button(&script, "pa:"),
    );
    let second = s.tg.user_presses_button(
        chat,
        chat,
        script.message_id,
        &common::button(&script, "pa:"),
    );
    let mut answers = vec![tap_answer(&s, &first).await, tap_answer(&s, &second).await];
    answers.sort();
    let mut expected = vec![
        text("promo.approved", &[]),
        text("promo.already_decided", &[]),
    ];
    expected.sort();
    assert_eq!(answers, expected);

    // pictures: an album of 3, then the question
    let after_script = s.sent_count(chat);
    let images = gate(&s, chat, after_script).await;
    let photos =
        s.tg.sent(chat)
            .into_iter()
            .skip(after_script)
            .filter(|m| m.kind == SentKind::Photo)
            .count();
    assert_eq!(photos, 3, "an album of the first 3 pictures");
    assert_eq!(s.provider.calls("images"), 10);

    // a tap on the script's gate, closed now, is answered and changes nothing (the
    // message as first sent: a user's client may still show its buttons)
    let stale = approve(&s, chat, &script).await;
    assert_eq!(stale, text("promo.already_decided", &[]));
    assert_eq!(
        s.provider.submits(),
        0,
        "no clip before the pictures are approved"
    );

    assert_eq!(
        approve(&s, chat, &images).await,
        text("promo.approved", &[])
    );

    // clips: the first 2, then the question
    let after_images = s.sent_count(chat);
    let clips = gate(&s, chat, after_images).await;
    let previews =
        s.tg.sent(chat)
            .into_iter()
            .skip(after_images)
            .filter(|m| m.kind == SentKind::Video)
            .count();
    assert_eq!(previews, 2);
    assert_eq!(
        s.provider.calls("speech"),
        0,
        "no voice-over before the clips are approved"
    );
    let after_clips = s.sent_count(chat);
    assert_eq!(approve(&s, chat, &clips).await, text("promo.approved", &[]));

    // one video, 50 ± 1 s, one video and one audio stream, under 50 MB
    let video = s
        .wait_sent(chat, after_clips, |m| m.kind == SentKind::Video)
        .await;
    let bytes =
        s.tg.file(video.file_id.as_deref().expect("file id"))
            .expect("the video");
    assert!(bytes.len() < 50 * 1024 * 1024);
    let path = s.dir.join("result.mp4");
    std::fs::write(&path, &bytes).expect("write the video");
    let (duration, streams) = probe(&path);
    assert!((duration - 50.0).abs() <= 1.0, "duration {duration}");
    assert_eq!(streams, vec!["audio".to_owned(), "video".to_owned()]);
    assert!(
        video
            .text
            .as_deref()
            .is_some_and(|c| c.contains("Glowberry")),
        "{video:?}"
    );
    status_reads(&s, chat, &status, "promo.status.done").await;

    // provider calls: 1 script + 10 pictures + 10 animations + 1 speech
    assert_eq!(settled_calls(&s).await, (1, 10, 10, 1));
    // 1 charge, 0 refunds
    assert_eq!(s.ledger(user.id, "charge").await, vec![-PRICE]);
    assert!(s.ledger(user.id, "refund").await.is_empty());
    s.wait_balance(user.id, WELCOME - PRICE).await;
    // exactly one final message
    tokio::time::sleep(Duration::from_secs(2)).await;
    let finals =
        s.tg.sent(chat)
            .into_iter()
            .skip(after_clips)
            .filter(|m| m.kind == SentKind::Video)
            .count();
    assert_eq!(finals, 1);
    // the pipeline's files are gone
    wait_until(WAIT, || {
        let left = files_left(&s);
        async move { left.is_empty().then_some(()) }
    })
    .await
    .unwrap_or_else(|| panic!("files left: {:?}", files_left(&s)));
    // a Start tapped again is charged once
    let again = s.tap(chat, &confirm, "ps:");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.ledger(user.id, "charge").await, vec![-PRICE]);
    let _ = again;
    s.finish().await;
}

#[tokio::test]
async fn cancel_at_each_gate_refunds_once_and_asks_for_nothing_more() {
    let s = stack("promo_cancel", 600).await;
    for (n, gates_to_pass) in [0usize, 1, 2].into_iter().enumerate() {
        let chat = 7200 + n as i64;
        let (user, status) = ordered(&s, chat).await;
        let mut after = 0;
        let mut question = gate(&s, chat, after).await;
        for _ in 0..gates_to_pass {
            after = s.sent_count(chat);
            assert_eq!(
                approve(&s, chat, &question).await,
                text("promo.approved", &[])
            );
            question = gate(&s, chat, after).await;
        }
        let at_cancel = calls(&s);
        s.tap(chat, &question, "cx:");
        let said = status_reads(&s, chat, &status, "promo.end.cancelled").await;
        assert!(said.contains(&PRICE.to_string()), "{said}");
        s.wait_balance(user.id, WELCOME).await;
        assert_eq!(
            s.ledger(user.id, "refund").await,
            vec![PRICE],
            "refunded once"
        );
        assert_eq!(
            settled_calls(&s).await,
            at_cancel,
            "nothing asked for after the cancel (gate {n})"
        );
    }
    s.finish().await;
}

#[tokio::test]
async fn an_approval_left_unanswered_cancels_and_refunds() {
    let s = stack("promo_timeout", 3).await;
    let chat = 7301;
    let (user, status) = ordered(&s, chat).await;
    let question = gate(&s, chat, 0).await;
    let said = status_reads(&s, chat, &status, "promo.end.timed_out").await;
    assert!(said.contains(&PRICE.to_string()));
    s.wait_balance(user.id, WELCOME).await;
    assert_eq!(s.ledger(user.id, "refund").await, vec![PRICE]);
    assert_eq!(s.provider.calls("images"), 0, "no picture drawn");
    // Approve after the end is answered politely and changes nothing
    assert_eq!(
        approve(&s, chat, &question).await,
        text("promo.already_ended", &[])
    );
    assert_eq!(settled_calls(&s).await.1, 0);
    s.finish().await;
}

#[tokio::test]
async fn a_voice_brief_is_transcribed_and_used() {
    let s = stack("promo_voice", 600).await;
    let chat = 7401;
    let confirm = brief_by(&s, chat, |tg| {
        tg.user_sends_voice(chat, chat, vec![7u8; 4321], 3)
    })
    .await;
    let heard = "transcribed 4321 bytes";
    assert!(
        confirm.text.as_deref().is_some_and(|t| t.contains(heard)),
        "{confirm:?}"
    );
    assert_eq!(s.provider.calls("transcriptions"), 1);
    start(&s, chat, &confirm).await;
    let script = gate(&s, chat, 0).await;
    assert!(
        script.text.as_deref().is_some_and(|t| t.contains(heard)),
        "{script:?}"
    );
    s.finish().await;
}

#[tokio::test]
async fn malformed_scripts_twice_end_with_the_script_message_and_one_refund() {
    let s = stack("promo_bad_json", 600).await;
    s.provider.set_malformed_scripts(2);
    let chat = 7501;
    let (user, status) = ordered(&s, chat).await;
    status_reads(&s, chat, &status, "promo.end.script").await;
    s.wait_balance(user.id, WELCOME).await;
    assert_eq!(s.ledger(user.id, "refund").await, vec![PRICE]);
    assert_eq!(settled_calls(&s).await, (2, 0, 0, 0));
    s.finish().await;
}

#[tokio::test]
async fn an_animation_refused_on_policy_ends_with_one_message_and_one_refund() {
    let s = stack("promo_policy", 600).await;
    let chat = 7601;
    let (user, status) = ordered(&s, chat).await;
    let script = gate(&s, chat, 0).await;
    let after = s.sent_count(chat);
    approve(&s, chat, &script).await;
    let images = gate(&s, chat, after).await;
    s.provider.fail_next_task(TaskErrorCode::ContentPolicy);
    let after = s.sent_count(chat);
    approve(&s, chat, &images).await;
    status_reads(&s, chat, &status, "promo.end.policy").await;
    s.wait_balance(user.id, WELCOME).await;
    assert_eq!(s.ledger(user.id, "refund").await, vec![PRICE]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // exactly one final message: the status message itself; no video, no second text
    let sent = s.tg.sent(chat);
    let endings: Vec<i32> = sent
        .iter()
        .filter(|m| {
            m.text
                .as_deref()
                .is_some_and(|t| is_text(t, "promo.end.policy"))
        })
        .map(|m| m.message_id)
        .collect();
    assert_eq!(endings, vec![status.message_id]);
    let videos = sent
        .iter()
        .skip(after)
        .filter(|m| m.kind == SentKind::Video)
        .count();
    assert_eq!(videos, 0, "no clip previews, no video");
    s.finish().await;
}

#[tokio::test]
async fn genq_killed_during_pictures_and_clips_finishes_paying_each_clip_once() {
    let mut s = Stack::start(
        "promo_kill",
        Options {
            welcome_credits: WELCOME,
            task_duration: Duration::from_millis(1500),
            extra_config: promo_config(600),
            ..Options::default()
        },
    )
    .await;
    s.provider.set_latency(Duration::from_millis(400));
    let chat = 7701;
    let (user, status) = ordered(&s, chat).await;
    let script = gate(&s, chat, 0).await;
    let after = s.sent_count(chat);
    approve(&s, chat, &script).await;

    // killed while pictures are drawn
    wait_until(WAIT, || {
        let n = s.provider.calls("images");
        async move { (n >= 4).then_some(()) }
    })
    .await
    .expect("pictures under way");
    s.kill_worker();
    let asked_at_kill = s.provider.calls("images");
    let done_at_kill = pictures_done(&s, &status_job(&s, user.id).await).await;
    let in_flight = asked_at_kill - done_at_kill;
    s.start_worker().await;
    let images = gate(&s, chat, after).await;
    let pictures = s.provider.calls("images");
    assert!(
        (10..=10 + in_flight).contains(&pictures),
        "{pictures} picture calls: only the {in_flight} in flight at the kill may repeat"
    );

    // killed while clips are animated
    let after = s.sent_count(chat);
    approve(&s, chat, &images).await;
    wait_until(WAIT, || {
        let n = s.provider.submits();
        async move { (n >= 4).then_some(()) }
    })
    .await
    .expect("clips under way");
    s.kill_worker();
    s.start_worker().await;
    let clips = gate(&s, chat, after).await;
    let after = s.sent_count(chat);
    approve(&s, chat, &clips).await;
    s.wait_sent(chat, after, |m| m.kind == SentKind::Video)
        .await;
    status_reads(&s, chat, &status, "promo.status.done").await;
    assert_eq!(
        s.provider.submits(),
        10,
        "each animation task submitted once"
    );
    assert_eq!(s.ledger(user.id, "charge").await, vec![-PRICE]);
    assert!(s.ledger(user.id, "refund").await.is_empty());
    s.finish().await;
}
