//! The fake Telegram Bot API driven by the real teloxide 0.17 client.

use std::{
    io::Cursor,
    time::{Duration, Instant},
};

use genq_testkit::{FakeTelegram, SentKind};
use serde_json::{Value, json};
use teloxide::{
    ApiError, RequestError,
    net::Download,
    prelude::*,
    types::{
        ChatAction, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageEntityKind,
        MessageId, Update, UpdateKind,
    },
};

const TOKEN: &str = "123456:TEST-token";
/// A private chat and its user (in Telegram their ids are equal).
const CHAT: i64 = 42;

/// A fake server and a bot pointed at it.
struct Setup {
    fake: FakeTelegram,
    bot: Bot,
}

impl Setup {
    async fn new() -> Self {
        let fake = FakeTelegram::start(TOKEN).await;
        let bot = bot_for(&fake, TOKEN);
        Self { fake, bot }
    }

    /// `getUpdates` with `offset` and a 1 s long poll.
    async fn updates(&self, offset: i32) -> Vec<Update> {
        self.bot
            .get_updates()
            .offset(offset)
            .timeout(1)
            .await
            .expect("getUpdates")
    }
}

fn bot_for(fake: &FakeTelegram, token: &str) -> Bot {
    Bot::new(token).set_api_url(fake.api_url().parse().expect("api url"))
}

/// A PNG of `width` × `height`.
fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

fn keyboard(data: &str) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Press", data)]])
}

/// The description of a Bot API error teloxide does not name.
fn unknown_api_error(result: Result<impl std::fmt::Debug, RequestError>) -> String {
    match result {
        Err(RequestError::Api(ApiError::Unknown(description))) => description,
        other => panic!("expected an unnamed API error, got {other:?}"),
    }
}

#[tokio::test]
async fn get_me_and_the_start_up_calls() {
    let s = Setup::new().await;
    let me = s.bot.get_me().await.expect("getMe");
    assert_eq!(me.id.0, 123_456);
    assert!(me.is_bot);
    assert_eq!(me.username(), s.fake.bot_username());
    assert!(!me.has_main_web_app);

    let info = s.bot.get_webhook_info().await.expect("getWebhookInfo");
    assert!(info.url.is_none());
    s.bot.delete_webhook().await.expect("deleteWebhook");

    // teloxide sends `GetMe`; names match in any case
    assert_eq!(s.fake.calls("getMe"), 1);
    assert_eq!(s.fake.calls("GETWEBHOOKINFO"), 1);
    assert_eq!(s.fake.calls("deleteWebhook"), 1);
}

#[tokio::test]
async fn a_wrong_token_and_an_unknown_method_are_refused() {
    let s = Setup::new().await;
    let wrong = bot_for(&s.fake, "999:WRONG");
    let err = wrong.get_me().await.expect_err("wrong token");
    assert!(
        matches!(err, RequestError::Api(ApiError::InvalidToken)),
        "{err:?}"
    );

    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/bot{TOKEN}/noSuchMethod", s.fake.api_url()))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"})
    );
    assert_eq!(s.fake.calls("getMe"), 1);
    assert_eq!(s.fake.calls("noSuchMethod"), 1);
}

#[tokio::test]
async fn send_message_and_edit_it() {
    let s = Setup::new().await;
    let sent = s
        .bot
        .send_message(ChatId(CHAT), "Generating…")
        .reply_markup(keyboard("cancel"))
        .await
        .expect("sendMessage");
    assert_eq!(sent.text(), Some("Generating…"));
    assert_eq!(sent.chat.id, ChatId(CHAT));
    assert!(sent.reply_markup().is_some());

    let edited = s
        .bot
        .edit_message_text(ChatId(CHAT), sent.id, "Done")
        .await
        .expect("editMessageText");
    assert_eq!(edited.id, sent.id);
    assert_eq!(edited.text(), Some("Done"));
    assert!(
        edited.reply_markup().is_none(),
        "no markup: keyboard removed"
    );

    let same = s.bot.edit_message_text(ChatId(CHAT), sent.id, "Done").await;
    assert!(
        matches!(same, Err(RequestError::Api(ApiError::MessageNotModified))),
        "{same:?}"
    );
    let missing = s
        .bot
        .edit_message_text(ChatId(CHAT), MessageId(999), "x")
        .await;
    assert!(
        matches!(
            missing,
            Err(RequestError::Api(ApiError::MessageToEditNotFound))
        ),
        "{missing:?}"
    );

    let record = &s.fake.sent(CHAT)[0];
    assert_eq!(record.kind, SentKind::Text);
    assert_eq!(record.message_id, sent.id.0);
    assert_eq!(record.text.as_deref(), Some("Done"));
    assert_eq!(record.edits, ["Generating…"]);
    assert!(record.reply_markup.is_none());
    assert_eq!(s.fake.calls("editMessageText"), 3);
}

#[tokio::test]
async fn message_text_limits() {
    let s = Setup::new().await;
    let empty = s.bot.send_message(ChatId(CHAT), " ").await;
    assert!(
        matches!(empty, Err(RequestError::Api(ApiError::MessageTextIsEmpty))),
        "{empty:?}"
    );
    let too_long = s.bot.send_message(ChatId(CHAT), "я".repeat(4097)).await;
    assert!(
        matches!(too_long, Err(RequestError::Api(ApiError::MessageIsTooLong))),
        "{too_long:?}"
    );
    let longest = s.bot.send_message(ChatId(CHAT), "я".repeat(4096)).await;
    assert!(longest.is_ok(), "{longest:?}");

    let first = s.bot.send_message(ChatId(CHAT), "a").await.expect("send");
    let second = s.bot.send_message(ChatId(CHAT), "b").await.expect("send");
    assert_eq!(second.id.0, first.id.0 + 1, "ids grow per chat");
    let elsewhere = s.bot.send_message(ChatId(7), "c").await.expect("send");
    assert_eq!(elsewhere.id.0, 1);

    let bad_data = s
        .bot
        .send_message(ChatId(CHAT), "x")
        .reply_markup(keyboard(&"d".repeat(65)))
        .await;
    assert!(
        matches!(
            bad_data,
            Err(RequestError::Api(ApiError::ButtonDataInvalid))
        ),
        "{bad_data:?}"
    );
}

#[tokio::test]
async fn send_photo_uploads_multipart_within_the_limit() {
    let s = Setup::new().await;
    let bytes = png(64, 48);
    let sent = s
        .bot
        .send_photo(
            ChatId(CHAT),
            InputFile::memory(bytes.clone()).file_name("cat.png"),
        )
        .caption("A cat")
        .await
        .expect("sendPhoto");
    assert_eq!(sent.caption(), Some("A cat"));
    let sizes = sent.photo().expect("photo");
    let largest = sizes.last().expect("a size");
    assert_eq!((largest.width, largest.height), (64, 48));
    assert_eq!(largest.file.size as usize, bytes.len());

    let record = &s.fake.sent(CHAT)[0];
    assert_eq!(record.kind, SentKind::Photo);
    assert_eq!(record.text.as_deref(), Some("A cat"));
    assert_eq!(record.file_len, Some(bytes.len()));
    let file_id = record.file_id.as_deref().expect("file id");
    assert_eq!(s.fake.file(file_id), Some(bytes.clone()));
    let request = &s.fake.requests("sendPhoto")[0];
    assert!(
        request["photo"]
            .as_str()
            .is_some_and(|p| p.starts_with("attach://")),
        "{request}"
    );

    let too_big = s
        .bot
        .send_photo(
            ChatId(CHAT),
            InputFile::memory(vec![0u8; 10 * 1024 * 1024 + 1]),
        )
        .await;
    assert_eq!(
        unknown_api_error(too_big),
        "Bad Request: PHOTO_SAVE_FILE_INVALID"
    );
    let long_caption = s
        .bot
        .send_photo(ChatId(CHAT), InputFile::memory(bytes))
        .caption("c".repeat(1025))
        .await;
    assert_eq!(
        unknown_api_error(long_caption),
        "Bad Request: message caption is too long"
    );
    assert_eq!(s.fake.sent(CHAT).len(), 1);
}

#[tokio::test]
async fn send_media_group_records_each_picture_as_a_message() {
    use teloxide::types::{InputMedia, InputMediaPhoto};
    let s = Setup::new().await;
    let album: Vec<InputMedia> = (0..3)
        .map(|i| {
            let mut p = InputMediaPhoto::new(
                InputFile::memory(png(32 + i, 24)).file_name(format!("{i}.png")),
            );
            if i == 0 {
                p = p.caption("Three pictures");
            }
            InputMedia::Photo(p)
        })
        .collect();
    let sent = s
        .bot
        .send_media_group(ChatId(CHAT), album)
        .await
        .expect("sendMediaGroup");
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].caption(), Some("Three pictures"));
    let widths: Vec<u32> = sent
        .iter()
        .map(|m| m.photo().expect("photo").last().expect("a size").width)
        .collect();
    assert_eq!(widths, vec![32, 33, 34]);
    let records = s.fake.sent(CHAT);
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.kind == SentKind::Photo));

    let one = vec![InputMedia::Photo(InputMediaPhoto::new(InputFile::memory(
        png(8, 8),
    )))];
    let refused = s.bot.send_media_group(ChatId(CHAT), one).await;
    assert!(
        unknown_api_error(refused).contains("media group"),
        "an album of one is refused"
    );
    assert_eq!(s.fake.sent(CHAT).len(), 3);
}

#[tokio::test]
async fn video_and_document_uploads() {
    let s = Setup::new().await;
    let video = s
        .bot
        .send_video(
            ChatId(CHAT),
            InputFile::memory(vec![1u8; 1000]).file_name("v.mp4"),
        )
        .width(640)
        .height(360)
        .duration(5)
        .await
        .expect("sendVideo");
    let v = video.video().expect("video");
    assert_eq!((v.width, v.height, v.duration.seconds()), (640, 360, 5));
    let doc = s
        .bot
        .send_document(
            ChatId(CHAT),
            InputFile::memory(vec![2u8; 10]).file_name("r.txt"),
        )
        .await
        .expect("sendDocument");
    assert_eq!(
        doc.document().and_then(|d| d.file_name.as_deref()),
        Some("r.txt")
    );
    let kinds: Vec<_> = s.fake.sent(CHAT).iter().map(|m| m.kind).collect();
    assert_eq!(kinds, [SentKind::Video, SentKind::Document]);
}

#[tokio::test]
async fn a_scripted_429_surfaces_as_retry_after() {
    let s = Setup::new().await;
    s.fake.rate_limit_next(1, 3);
    let limited = s.bot.send_message(ChatId(CHAT), "hi").await;
    match limited {
        Err(RequestError::RetryAfter(secs)) => assert_eq!(secs.seconds(), 3),
        other => panic!("expected RetryAfter, got {other:?}"),
    }
    s.bot
        .send_message(ChatId(CHAT), "hi")
        .await
        .expect("the next one passes");
    assert_eq!(s.fake.calls("sendMessage"), 2);
    assert_eq!(s.fake.sent(CHAT).len(), 1);
}

#[tokio::test]
async fn get_updates_hands_out_text_and_callback_queries() {
    let s = Setup::new().await;
    let text_id = s.fake.user_sends_text(CHAT, CHAT, "hello");
    let bot_msg = s
        .bot
        .send_message(ChatId(CHAT), "Pick")
        .reply_markup(keyboard("yes"))
        .await
        .expect("send");
    let query_id = s.fake.user_presses_button(CHAT, CHAT, bot_msg.id.0, "yes");

    let updates = s.updates(0).await;
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].id.0, text_id);
    let UpdateKind::Message(msg) = &updates[0].kind else {
        panic!("expected a message: {:?}", updates[0].kind);
    };
    assert_eq!(msg.text(), Some("hello"));
    assert_eq!(msg.from.as_ref().map(|u| u.id.0), Some(CHAT as u64));
    assert!(msg.id.0 < bot_msg.id.0, "one id sequence per chat");
    let UpdateKind::CallbackQuery(query) = &updates[1].kind else {
        panic!("expected a callback query: {:?}", updates[1].kind);
    };
    assert_eq!(query.id.0, query_id);
    assert_eq!(query.data.as_deref(), Some("yes"));
    let pressed = query.regular_message().expect("the bot's message");
    assert_eq!(pressed.id, bot_msg.id);
    assert_eq!(pressed.text(), Some("Pick"));

    // an offset acknowledges what came before it
    let next = i32::try_from(updates[1].id.0 + 1).expect("offset");
    assert_eq!(s.fake.pending_updates(), 2);
    let started = Instant::now();
    assert!(s.updates(next).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900), "long poll");
    assert_eq!(s.fake.pending_updates(), 0);

    s.bot
        .answer_callback_query(query.id.clone())
        .text("Noted")
        .await
        .expect("answerCallbackQuery");
    let answers = s.fake.callback_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].callback_query_id, query_id);
    assert_eq!(answers[0].text.as_deref(), Some("Noted"));
    let too_long = s
        .bot
        .answer_callback_query(query.id.clone())
        .text("x".repeat(201))
        .await;
    assert!(too_long.is_err());
}

#[tokio::test]
async fn a_long_poll_wakes_when_a_user_writes() {
    let s = Setup::new().await;
    let poll = {
        let bot = s.bot.clone();
        tokio::spawn(async move { bot.get_updates().timeout(30).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    s.fake.user_sends_command(CHAT, CHAT, "/start ref42");
    let updates = poll.await.expect("join").expect("getUpdates");
    assert!(started.elapsed() < Duration::from_millis(500));
    let UpdateKind::Message(msg) = &updates[0].kind else {
        panic!("expected a message");
    };
    assert_eq!(msg.text(), Some("/start ref42"));
    let entity = &msg.entities().expect("entities")[0];
    assert_eq!(entity.kind, MessageEntityKind::BotCommand);
    assert_eq!((entity.offset, entity.length), (0, 6));
}

#[tokio::test]
async fn get_file_and_download_a_users_photo_and_voice() {
    let s = Setup::new().await;
    let bytes = png(200, 100);
    s.fake.user_sends_photo(CHAT, CHAT, bytes.clone(), 200, 100);
    s.fake.user_sends_voice(CHAT, CHAT, vec![7u8; 321], 4);
    let updates = s.updates(0).await;

    let UpdateKind::Message(msg) = &updates[0].kind else {
        panic!("expected a message");
    };
    let sizes = msg.photo().expect("photo");
    assert_eq!(sizes.len(), 2, "a thumbnail, then the photo");
    assert_eq!((sizes[0].width, sizes[0].height), (90, 45));
    let largest = &sizes[1];
    assert_eq!((largest.width, largest.height), (200, 100));
    let file = s
        .bot
        .get_file(largest.file.id.clone())
        .await
        .expect("getFile");
    assert_eq!(file.meta.size as usize, bytes.len());
    let mut downloaded = Vec::new();
    s.bot
        .download_file(&file.path, &mut downloaded)
        .await
        .expect("download");
    assert_eq!(downloaded, bytes);

    let UpdateKind::Message(msg) = &updates[1].kind else {
        panic!("expected a message");
    };
    let voice = msg.voice().expect("voice");
    assert_eq!(voice.duration.seconds(), 4);
    let file = s
        .bot
        .get_file(voice.file.id.clone())
        .await
        .expect("getFile");
    let mut downloaded = Vec::new();
    s.bot
        .download_file(&file.path, &mut downloaded)
        .await
        .expect("download");
    assert_eq!(downloaded, vec![7u8; 321]);
    assert_eq!(s.fake.calls("download"), 2);
}

#[tokio::test]
async fn chat_actions_and_deletes_are_recorded() {
    let s = Setup::new().await;
    s.bot
        .send_chat_action(ChatId(CHAT), ChatAction::UploadPhoto)
        .await
        .expect("sendChatAction");
    let sent = s.bot.send_message(ChatId(CHAT), "bye").await.expect("send");
    s.bot
        .delete_message(ChatId(CHAT), sent.id)
        .await
        .expect("deleteMessage");
    let again = s.bot.delete_message(ChatId(CHAT), sent.id).await;
    assert!(again.is_err());

    assert_eq!(s.fake.chat_actions(CHAT), ["upload_photo"]);
    let found = s
        .fake
        .wait_for_sent(CHAT, |m| m.deleted, Duration::from_secs(1))
        .await
        .expect("a deleted message");
    assert_eq!(found.text.as_deref(), Some("bye"));
    assert!(
        s.fake
            .wait_for_sent(
                CHAT,
                |m| m.kind == SentKind::Photo,
                Duration::from_millis(50)
            )
            .await
            .is_none()
    );
}

#[tokio::test]
async fn uploads_over_50_mb_are_refused_like_telegram() {
    let s = Setup::new().await;
    let big = s
        .bot
        .send_document(
            ChatId(CHAT),
            InputFile::memory(vec![0u8; 50 * 1024 * 1024 + 1]).file_name("big.bin"),
        )
        .await;
    assert!(
        matches!(big, Err(RequestError::Api(ApiError::RequestEntityTooLarge))),
        "{big:?}"
    );
    assert!(s.fake.sent(CHAT).is_empty());
}

#[tokio::test]
async fn a_file_is_sent_again_by_its_id() {
    let s = Setup::new().await;
    let bytes = png(32, 32);
    let first = s
        .bot
        .send_photo(ChatId(CHAT), InputFile::memory(bytes.clone()))
        .await
        .expect("sendPhoto");
    let file_id = first
        .photo()
        .and_then(|p| p.last())
        .expect("photo")
        .file
        .id
        .clone();
    s.bot
        .send_photo(ChatId(7), InputFile::file_id(file_id.clone()))
        .await
        .expect("sendPhoto by id");
    let again = &s.fake.sent(7)[0];
    assert_eq!(again.file_id.as_deref(), Some(file_id.0.as_str()));
    assert_eq!(again.file_len, Some(bytes.len()));

    let unknown = s
        .bot
        .send_photo(ChatId(7), InputFile::file_id("nope".into()))
        .await;
    assert!(
        matches!(unknown, Err(RequestError::Api(ApiError::WrongFileIdOrUrl))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn a_teloxide_dispatcher_polls_and_replies() {
    let s = Setup::new().await;
    let handler = Update::filter_message().endpoint(|bot: Bot, msg: Message| async move {
        let text = format!("Echo: {}", msg.text().unwrap_or_default());
        bot.send_message(msg.chat.id, text).await?;
        respond(())
    });
    let mut dispatcher = Dispatcher::builder(s.bot.clone(), handler).build();
    let shutdown = dispatcher.shutdown_token();
    let running = tokio::spawn(async move { dispatcher.dispatch().await });

    s.fake.user_sends_text(CHAT, CHAT, "ping");
    let reply = s
        .fake
        .wait_for_sent(CHAT, |m| m.kind == SentKind::Text, Duration::from_secs(10))
        .await
        .expect("the bot replied");
    assert_eq!(reply.text.as_deref(), Some("Echo: ping"));
    assert_eq!(s.fake.calls("getMe"), 1);

    if let Ok(stopped) = shutdown.shutdown() {
        stopped.await;
    }
    running.await.expect("dispatcher task");
    assert_eq!(s.fake.pending_updates(), 0, "the update was acknowledged");
}
