//! Talking to Telegram: sends and their limits ([`send`]), and the durable intake
//! of updates ([`intake`]).

pub mod intake;
pub mod send;
