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

use std::time::Duration;

use crate::app::Offer;

pub use genq_catalog::promo::{APPROVE, PROMO};

/// The promo video as the bot offers it (`[promo]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoOffer {
    /// Job type `promo` on queue `pipelines`, at the configured price.
    pub offer: Offer,
    /// Pictures shown at the pictures' approval (an album).
    pub image_previews: usize,
    /// Clips shown at the clips' approval.
    pub video_previews: usize,
    /// How long an approval waits.
    pub approval_timeout: Duration,
}
