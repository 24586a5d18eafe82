//! Dialog history: `/dialogs` lists the user's dialogs (newest first, with titles),
//! each earlier one with a Reopen button; a tap makes it the active dialog again, so
//! the next message continues it with its history.

use genq_store::{DialogSummary, StoreError};

use crate::{
    BotError,
    app::BotApp,
    conversation::{
        callbacks::Action,
        keyboards::{keyboard, row},
        requester::Requester,
    },
    i18n::{Lang, t},
    transport::send::trim_chars,
};

/// How many dialogs `/dialogs` shows.
pub const DIALOGS_SHOWN: i64 = 10;

/// The longest title (characters) taken from a dialog's first message.
pub const TITLE_CHARS: usize = 40;

/// A dialog's title: the user's first message in it (whitespace folded, cut to
/// [`TITLE_CHARS`]), or, before they wrote anything, the persona's name and the
/// day it began.
pub fn title(lang: Lang, dialog: &DialogSummary) -> String {
    let first = dialog
        .first_user_message
        .as_deref()
        .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|m| !m.is_empty());
    match first {
        Some(text) => trim_chars(&text, TITLE_CHARS),
        None => t(
            lang,
            "dialogs.untitled",
            &[
                ("persona", &dialog.persona_name),
                ("date", &dialog.created_at.format("%Y-%m-%d")),
            ],
        ),
    }
}

/// `/dialogs`: the list, with a Reopen button under each earlier dialog.
pub(crate) async fn list(app: &BotApp, who: &Requester) -> Result<(), BotError> {
    let lang = who.lang;
    let dialogs = app
        .store
        .dialog_summaries(who.user_id, DIALOGS_SHOWN)
        .await?;
    if dialogs.is_empty() {
        app.say_to(who, &t(lang, "dialogs.none", &[]), None).await?;
        return Ok(());
    }
    let mut text = t(lang, "dialogs.header", &[]);
    let mut rows = Vec::new();
    for (i, dialog) in dialogs.iter().enumerate() {
        let n = i + 1;
        let title = title(lang, dialog);
        let line = if dialog.is_active {
            "dialogs.line_current"
        } else {
            "dialogs.line"
        };
        text.push('\n');
        text.push_str(&t(lang, line, &[("n", &n), ("title", &title)]));
        if !dialog.is_active {
            rows.push(row(vec![(
                t(lang, "button.reopen", &[("n", &n), ("title", &title)]),
                Action::Reopen(dialog.id),
            )]));
        }
    }
    let markup = (!rows.is_empty()).then(|| keyboard(rows));
    app.say_to(who, &text, markup).await?;
    Ok(())
}

/// A Reopen button: the dialog becomes the active one (the user's own only); the
/// answer to the tap when there is nothing to reopen.
pub(crate) async fn reopen(
    app: &BotApp,
    who: &Requester,
    dialog_id: i64,
) -> Result<Option<String>, BotError> {
    let lang = who.lang;
    match app.store.reopen_dialog(who.user_id, dialog_id).await {
        Ok(_) => {}
        Err(StoreError::UnknownDialog(_)) => return Ok(Some(t(lang, "err.stale_button", &[]))),
        Err(e) => return Err(e.into()),
    }
    // whatever the chat was in the middle of (a face swap, a video prompt) ends here
    app.states.clear(who.chat_id).await?;
    let Some(dialog) = app.store.dialog_summary(who.user_id, dialog_id).await? else {
        return Ok(Some(t(lang, "err.stale_button", &[])));
    };
    let text = t(
        lang,
        "dialogs.reopened",
        &[
            ("persona", &dialog.persona_name),
            ("title", &title(lang, &dialog)),
        ],
    );
    app.say_to(who, &text, None).await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn summary(first: Option<&str>) -> DialogSummary {
        DialogSummary {
            id: 1,
            persona_id: 2,
            persona_name: "Anna".to_owned(),
            is_active: false,
            created_at: chrono::Utc
                .with_ymd_and_hms(2025, 3, 9, 23, 59, 0)
                .single()
                .unwrap_or_default(),
            first_user_message: first.map(str::to_owned),
            messages: 0,
        }
    }

    #[test]
    fn a_title_is_the_first_message_cut_or_the_persona_and_the_day() {
        assert_eq!(
            title(Lang::En, &summary(Some("  Tell me\nabout   ships "))),
            "Tell me about ships"
        );
        let long = title(Lang::En, &summary(Some(&"я".repeat(100))));
        assert_eq!(long.chars().count(), TITLE_CHARS);
        assert!(long.ends_with('…'));
        assert_eq!(title(Lang::En, &summary(None)), "Anna, 2025-03-09");
        assert_eq!(title(Lang::Ru, &summary(Some(" \n "))), "Anna, 2025-03-09");
    }
}
