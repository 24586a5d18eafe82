//! From a job's acknowledgement to its result in the chat: what the bot tracks
//! ([`tracking`]), the status messages ([`status`], [`status_message`]), the
//! completion events that trigger delivery ([`events`]) and the `deliver` job
//! itself ([`deliver`]).

pub mod deliver;
pub mod events;
pub mod status;
pub mod status_message;
pub mod tracking;
