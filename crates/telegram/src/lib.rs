//! genq's Telegram bot: thin by design. It validates, charges and enqueues (through
//! the store's atomic charge-and-enqueue), acknowledges at once, keeps one status
//! message per job up to date, and delivers results through a `deliver` job on its
//! own queue. Workers do the work.
//!
//! - [`handlers`], `buttons`: the conversations (commands, text, photos, voice;
//!   inline buttons); `cancel`: /cancel and Cancel buttons;
//! - [`dialogs`]: `/dialogs`, the dialog history and reopening one;
//! - [`orders`]: guard rails, charge-and-enqueue, the acknowledgement;
//! - [`estimate`]: the acknowledgement's time estimate;
//! - [`events`] → [`delivery`]: completion events become `deliver` jobs;
//! - [`status`]: the status messages and "typing…";
//! - [`tracking`], [`chat_state`], [`limits`]: what the bot keeps in Redis;
//! - [`i18n`]: the Russian and English message catalogs;
//! - [`intake`]: updates recorded before Telegram is told, handled exactly once;
//! - [`alerts`]: billing errors, cooling provider keys, dead letters → the admins;
//! - [`run`]: the bot process.

mod admin;
pub mod alerts;
pub mod app;
mod buttons;
pub mod callbacks;
mod cancel;
pub mod chat_state;
pub mod delivery;
pub mod dialogs;
mod error;
pub mod estimate;
pub mod events;
pub mod handlers;
pub mod i18n;
pub mod intake;
pub mod limits;
pub mod metrics;
pub mod orders;
pub mod payments;
pub mod run;
pub mod send;
pub mod status;
mod streams;
pub mod tracking;

pub use error::BotError;
pub use run::{BotOptions, TOKEN_ENV, no_token_hint, run_bot, telegram_bot};
