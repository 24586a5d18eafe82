//! Inline buttons' `callback_data` (Telegram allows 1-64 bytes): what each button
//! asks for. Long values (a photo's artifact key) stay in Redis under a short token
//! ([`crate::conversation::chat_state::ChatStates::stash`]); the data carries the token.

use std::fmt;

/// The most bytes of `callback_data`.
pub const CALLBACK_DATA_LIMIT: usize = 64;

/// Which video style a user picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoStyle {
    Ugc,
    Ad,
    Own,
}

impl VideoStyle {
    fn code(self) -> &'static str {
        match self {
            VideoStyle::Ugc => "ugc",
            VideoStyle::Ad => "ad",
            VideoStyle::Own => "own",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ugc" => Some(VideoStyle::Ugc),
            "ad" => Some(VideoStyle::Ad),
            "own" => Some(VideoStyle::Own),
            _ => None,
        }
    }
}

/// What a button asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Talk to this persona (a new dialog).
    Persona(i64),
    /// Draw the scene of this dialog.
    Picture(i64),
    /// Upscale the stashed photo by 2 or 4.
    Upscale { token: String, factor: u32 },
    /// Face swap onto the stashed photo (asks for the face next).
    FaceSwap { token: String },
    /// Animate the stashed photo: show the styles.
    Animate { token: String },
    /// Animate in this style.
    Style { token: String, style: VideoStyle },
    /// Order this many videos of the stashed order.
    Count { token: String, count: u32 },
    /// Cancel this job.
    CancelJob(String),
    /// Make this earlier dialog of the user's the active one (`/dialogs`).
    Reopen(i64),
    /// Show the credit packages (`/buy`).
    BuyMenu,
    /// Buy this credit package: send its invoice.
    Buy(String),
    /// Order a promo video: ask for the brief (`/start`'s entry).
    PromoAsk,
    /// Start the promo video of the stashed brief.
    PromoStart(String),
    /// Drop the stashed brief.
    PromoDrop(String),
    /// Approve the open gate (at stage `stage`) of promo video `id`.
    PromoApprove { id: String, stage: u32 },
}

/// The video counts offered.
pub const VIDEO_COUNTS: [u32; 3] = [1, 3, 5];

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Persona(id) => write!(f, "persona:{id}"),
            Action::Picture(dialog) => write!(f, "pic:{dialog}"),
            Action::Upscale { token, factor } => write!(f, "up{factor}:{token}"),
            Action::FaceSwap { token } => write!(f, "fs:{token}"),
            Action::Animate { token } => write!(f, "an:{token}"),
            Action::Style { token, style } => write!(f, "st:{token}:{}", style.code()),
            Action::Count { token, count } => write!(f, "n:{token}:{count}"),
            Action::CancelJob(id) => write!(f, "cx:{id}"),
            Action::Reopen(dialog) => write!(f, "dlg:{dialog}"),
            Action::BuyMenu => write!(f, "buy:*"),
            Action::Buy(package) => write!(f, "buy:{package}"),
            Action::PromoAsk => write!(f, "pq:*"),
            Action::PromoStart(token) => write!(f, "ps:{token}"),
            Action::PromoDrop(token) => write!(f, "pd:{token}"),
            Action::PromoApprove { id, stage } => write!(f, "pa:{id}:{stage}"),
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A credit package's id as the configuration allows it (1-16 of a-z, 0-9, _, -).
fn is_package_id(s: &str) -> bool {
    (1..=16).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Action {
    /// The button's `callback_data` (at most [`CALLBACK_DATA_LIMIT`] bytes for the
    /// tokens and ids this bot makes; a unit test checks every kind).
    pub fn data(&self) -> String {
        self.to_string()
    }

    /// Reads a button's data; `None` for anything this bot did not make.
    pub fn parse(data: &str) -> Option<Action> {
        if data.is_empty() || data.len() > CALLBACK_DATA_LIMIT {
            return None;
        }
        let (head, rest) = data.split_once(':')?;
        let token = |s: &str| is_token(s).then(|| s.to_owned());
        match head {
            "persona" => rest.parse().ok().map(Action::Persona),
            "pic" => rest.parse().ok().map(Action::Picture),
            "up2" | "up4" => Some(Action::Upscale {
                token: token(rest)?,
                factor: if head == "up2" { 2 } else { 4 },
            }),
            "fs" => Some(Action::FaceSwap {
                token: token(rest)?,
            }),
            "an" => Some(Action::Animate {
                token: token(rest)?,
            }),
            "st" => {
                let (t, style) = rest.split_once(':')?;
                Some(Action::Style {
                    token: token(t)?,
                    style: VideoStyle::parse(style)?,
                })
            }
            "n" => {
                let (t, count) = rest.split_once(':')?;
                let count: u32 = count.parse().ok()?;
                VIDEO_COUNTS.contains(&count).then_some(())?;
                Some(Action::Count {
                    token: token(t)?,
                    count,
                })
            }
            "cx" => token(rest).map(Action::CancelJob),
            "dlg" => rest.parse().ok().map(Action::Reopen),
            "buy" if rest == "*" => Some(Action::BuyMenu),
            "buy" => is_package_id(rest).then(|| Action::Buy(rest.to_owned())),
            "pq" if rest == "*" => Some(Action::PromoAsk),
            "ps" => token(rest).map(Action::PromoStart),
            "pd" => token(rest).map(Action::PromoDrop),
            "pa" => {
                let (id, stage) = rest.split_once(':')?;
                Some(Action::PromoApprove {
                    id: token(id)?,
                    stage: stage.parse().ok().filter(|s| *s < 1000)?,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_within_the_limit() {
        let token = "A1b2C3d4E5f6".to_owned();
        let actions = [
            Action::Persona(7),
            Action::Picture(123456789),
            Action::Upscale {
                token: token.clone(),
                factor: 2,
            },
            Action::Upscale {
                token: token.clone(),
                factor: 4,
            },
            Action::FaceSwap {
                token: token.clone(),
            },
            Action::Animate {
                token: token.clone(),
            },
            Action::Style {
                token: token.clone(),
                style: VideoStyle::Own,
            },
            Action::Count {
                token: token.clone(),
                count: 5,
            },
            Action::CancelJob("01JD5Z8Q3W4E5R6T7Y8U9I0OPA".to_owned()),
            Action::Reopen(i64::MAX),
            Action::Reopen(1),
            Action::BuyMenu,
            Action::Buy("pack_1000-xl".to_owned()),
            Action::PromoAsk,
            Action::PromoStart(token.clone()),
            Action::PromoDrop(token.clone()),
            Action::PromoApprove {
                id: "01JD5Z8Q3W4E5R6T7Y8U9I0OPA".to_owned(),
                stage: 5,
            },
        ];
        for a in actions {
            let data = a.data();
            assert!(data.len() <= CALLBACK_DATA_LIMIT, "{data}");
            assert_eq!(Action::parse(&data), Some(a));
        }
    }

    #[test]
    fn foreign_or_broken_data_is_refused() {
        for data in [
            "",
            "hello",
            "persona:x",
            "up3:abc",
            "n:abc:2",
            "st:abc:cartoon",
            "fs:../../etc",
            "cx:",
            "dlg:",
            "dlg:x1",
            "dlg:99999999999999999999",
            "buy:",
            "buy:Big",
            "buy:a-very-long-package-id",
            "ps:",
            "pa:01JD5Z8Q3W4E5R6T7Y8U9I0OPA",
            "pa:01JD5Z8Q3W4E5R6T7Y8U9I0OPA:x",
            "pa:../x:1",
            &"x".repeat(65),
        ] {
            assert_eq!(Action::parse(data), None, "{data}");
        }
    }
}
