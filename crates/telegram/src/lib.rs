//! genq's Telegram bot: thin by design. It validates, charges and enqueues (through
//! the store's atomic charge-and-enqueue), acknowledges at once, keeps one status
//! message per job up to date, and delivers results through a `deliver` job on its
//! own queue. Workers do the work.
//!
//! - [`conversation`]: where each update goes; the handlers of messages, commands
//!   and buttons; `/dialogs`; who is asking; what a chat is in the middle of;
//! - [`orders`]: guard rails, charge-and-enqueue, the acknowledgement and its time
//!   estimate; cancelling a job;
//! - [`delivery`]: what the bot tracks, the status messages, completion events →
//!   `deliver` jobs → the result in the chat;
//! - [`transport`]: sends to Telegram; updates recorded before Telegram is told,
//!   handled exactly once;
//! - [`promo`]: the promo video: brief, approvals, the status line, the ending;
//! - [`payments`]: credits bought with Telegram Stars; `admin`: `/admin`;
//! - [`alerts`]: billing errors, cooling provider keys, dead letters → the admins;
//! - [`app`]: what every part shares; [`i18n`]: the Russian and English message
//!   catalogs; [`metrics`]: the bot's own metrics;
//! - [`run`]: the bot process.

mod admin;
pub mod alerts;
pub mod app;
pub mod conversation;
pub mod delivery;
mod error;
pub mod i18n;
pub mod metrics;
pub mod orders;
pub mod payments;
pub mod promo;
pub mod run;
mod streams;
pub mod transport;

// the paths other crates use since before the folders
pub use conversation::chat_state;
pub use orders::{estimate, limits};

pub use error::BotError;
pub use run::{BotOptions, TOKEN_ENV, no_token_hint, run_bot, telegram_bot};
