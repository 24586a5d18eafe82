//! A job's status message: the Cancel button under it while the job runs, and how
//! it ends once the job is closed ([`Final`]).

use teloxide::{
    RequestError,
    payloads::EditMessageReplyMarkupSetters,
    prelude::{ChatId, Requester as _},
    types::{InlineKeyboardMarkup, MessageId},
};
use tracing::{debug, warn};

use crate::{
    app::BotApp,
    conversation::{
        callbacks::Action,
        keyboards::{keyboard, row},
    },
    delivery::tracking::Final,
    i18n::{Lang, t},
    transport::send::{edit, with_retry},
};

/// The Cancel button under a status message.
pub fn cancel_button(lang: Lang, job_id: &str) -> InlineKeyboardMarkup {
    keyboard(vec![row(vec![(
        t(lang, "button.cancel_job", &[]),
        Action::CancelJob(job_id.to_owned()),
    )])])
}

/// Makes status message `msg` in `chat` end as `fin` (a short 429 is waited out).
pub(crate) async fn apply_final(
    app: &BotApp,
    chat: i64,
    msg: i32,
    fin: &Final,
) -> Result<(), RequestError> {
    let mut fin = fin.clone();
    // a forward leads to the image job's own close, at most a few steps deep
    for _ in 0..4 {
        match fin {
            Final::Edit(text) => {
                return with_retry(|| edit(&app.bot, chat, msg, &text, None)).await;
            }
            Final::Delete => {
                let deleted = with_retry(|| {
                    app.bot
                        .delete_message(ChatId(chat), MessageId(msg))
                        .into_future()
                })
                .await;
                return match deleted {
                    Err(RequestError::Api(e)) => {
                        // gone already, or too old to delete: at least no live button
                        debug!(chat, msg, error = %e, "status message not deleted; clearing it");
                        let cleared = app
                            .bot
                            .edit_message_reply_markup(ChatId(chat), MessageId(msg))
                            .reply_markup(InlineKeyboardMarkup::new(Vec::<Vec<_>>::new()))
                            .await;
                        match cleared {
                            Err(RequestError::Api(_)) | Ok(_) => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    other => other.map(|_| ()),
                };
            }
            Final::Forward(child) => match app.tracker.save_status(&child, msg).await {
                Ok(Some(next)) => fin = next,
                Ok(None) => return Ok(()),
                Err(e) => {
                    warn!(job_id = %child, error = %e, "status message not handed over");
                    return Ok(());
                }
            },
        }
    }
    Ok(())
}
