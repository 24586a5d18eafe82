//! Inline keyboards: rows of buttons, each a label and the [`Action`] its callback
//! data carries; and the Upscale row, which both the photo menu and every
//! delivered picture show.

use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::{
    conversation::callbacks::Action,
    i18n::{Lang, t},
};

/// One row of buttons.
pub fn row(buttons: Vec<(String, Action)>) -> Vec<InlineKeyboardButton> {
    buttons
        .into_iter()
        .map(|(text, action)| InlineKeyboardButton::callback(text, action.data()))
        .collect()
}

pub fn keyboard(rows: Vec<Vec<InlineKeyboardButton>>) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(rows)
}

/// The Upscale ×2 / ×4 buttons for the photo stashed under `token` (the photo menu,
/// and under every generated picture).
pub(crate) fn upscale_row(
    lang: Lang,
    price: i64,
    token: &str,
) -> Vec<teloxide::types::InlineKeyboardButton> {
    row([2, 4]
        .into_iter()
        .map(|factor| {
            let key = if factor == 2 {
                "button.upscale2"
            } else {
                "button.upscale4"
            };
            (
                t(lang, key, &[("price", &price)]),
                Action::Upscale {
                    token: token.to_owned(),
                    factor,
                },
            )
        })
        .collect())
}
