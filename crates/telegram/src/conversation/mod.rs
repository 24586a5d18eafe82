//! The conversations: where each update goes ([`schema`]), the handlers of
//! messages and commands ([`handlers`]) and of button taps (`buttons`), the dialog
//! history ([`dialogs`]), who is asking ([`requester`]), what a chat is in the
//! middle of ([`chat_state`]), and what a button asks for ([`callbacks`],
//! [`keyboards`]). Handlers validate, charge and enqueue (see [`crate::orders`]);
//! workers do the work.

use teloxide::{dispatching::UpdateHandler, prelude::*};

use crate::BotError;

mod buttons;
pub mod callbacks;
pub mod chat_state;
pub mod dialogs;
pub mod handlers;
pub mod keyboards;
pub mod requester;

/// The update handler tree.
pub fn schema() -> UpdateHandler<BotError> {
    dptree::entry()
        .branch(Update::filter_message().endpoint(handlers::on_message))
        .branch(Update::filter_callback_query().endpoint(buttons::on_callback))
        .branch(Update::filter_pre_checkout_query().endpoint(crate::payments::on_pre_checkout))
}
