//! The promo video (`/promo`): a brief (text or voice) becomes a 50-second
//! advertising video through the `promo` pipeline (`crates/catalog/src/promo.rs`):
//! script → approve → pictures → approve → clips → approve → voice-over → video.
//!
//! - [`flow`]: `/promo`, the brief, its confirmation, Start (the one charge);
//! - [`gates`]: each approval offered once, Approve taps, the status line;
//! - [`finish`]: the ending texts by stage and class, the files deleted at the end;
//! - [`text`]: every line the promo video says, as pure functions.

pub(crate) mod finish;
pub(crate) mod flow;
pub(crate) mod gates;
pub mod text;

pub use genq_catalog::promo::{APPROVE, PROMO};
