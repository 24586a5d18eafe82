//! `bot.support_contact`: none by default, an @handle or an http(s) URL of at most
//! 64 characters, anything else refused with an error naming the setting.

use genq_config::{Config, SUPPORT_CONTACT_MAX_CHARS};

const EXAMPLE: &str = include_str!("../../../config/genq.example.toml");

fn with_contact(contact: &str) -> Result<Config, String> {
    let text = format!("[bot]\nsupport_contact = {}\n", toml_string(contact));
    let cfg = Config::parse(&text, "t.toml").map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn there_is_no_support_contact_unless_configured() {
    let cfg = Config::parse("", "empty.toml").expect("parse");
    assert_eq!(cfg.bot.support_contact, None);
    let example = Config::parse(EXAMPLE, "genq.example.toml").expect("parse the example");
    example.validate().expect("the example is valid");
}

#[test]
fn a_handle_or_a_url_is_accepted() {
    for good in [
        "@genq_support",
        "@abcde",
        "https://t.me/genq_support",
        "http://help.example.com/bot",
    ] {
        let cfg = with_contact(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(cfg.bot.support_contact.as_deref(), Some(good));
    }
    let longest = format!("https://{}", "a".repeat(SUPPORT_CONTACT_MAX_CHARS - 8));
    assert!(with_contact(&longest).is_ok());
}

#[test]
fn anything_else_is_refused_naming_the_setting() {
    let too_long = format!("https://{}", "a".repeat(SUPPORT_CONTACT_MAX_CHARS - 7));
    for bad in [
        "",
        "support",
        "@abc",
        "@has space",
        "@with-dash",
        "https://",
        "https://example.com/a b",
        "mailto:help@example.com",
        too_long.as_str(),
    ] {
        let err = with_contact(bad).expect_err(bad);
        assert!(err.starts_with("bot.support_contact: "), "{bad:?} → {err}");
    }
}
