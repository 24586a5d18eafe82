//! The message catalogs: complete, consistent, and covering every key the code uses.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use genq_telegram::i18n::{Lang, keys, placeholders, t};

/// The catalog's top-level sections (`help` and `balance` are top-level strings).
const SECTIONS: &[&str] = &[
    "start", "help", "balance", "new", "cancel", "ack", "status", "fail", "refund", "button",
    "photo", "animate", "result", "err", "admin", "commands", "ledger", "support", "dialogs",
    "buy", "promo",
];

/// Keys that may be empty.
const MAY_BE_EMPTY: &[&str] = &["refund.none"];

/// Endings of file names, not keys (`"photo.jpg"`, `"result.mp4"`).
const FILE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "webp", "gif", "mp4", "webm", "mov", "ogg", "oga", "opus", "mp3", "wav",
    "json", "toml", "txt", "bin", "rs",
];

fn key_set(lang: Lang) -> BTreeSet<String> {
    keys(lang).into_iter().collect()
}

#[test]
fn catalogs_have_the_same_keys() {
    let en = key_set(Lang::En);
    let ru = key_set(Lang::Ru);
    assert!(en.len() > 50, "the English catalog has {} keys", en.len());
    let only_en: Vec<_> = en.difference(&ru).collect();
    let only_ru: Vec<_> = ru.difference(&en).collect();
    assert!(
        only_en.is_empty() && only_ru.is_empty(),
        "only in en: {only_en:?}; only in ru: {only_ru:?}"
    );
}

#[test]
fn every_key_has_the_same_placeholders_in_every_language() {
    let mut mismatches = Vec::new();
    for key in keys(Lang::En) {
        let en = placeholders(Lang::En, &key);
        let ru = placeholders(Lang::Ru, &key);
        if en != ru {
            mismatches.push(format!("{key}: en {en:?}, ru {ru:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[test]
fn expected_keys_have_their_placeholders() {
    let cases: &[(&str, &[&str])] = &[
        ("start.greeting", &["name"]),
        ("start.welcome_credits", &["credits"]),
        ("start.persona_chosen", &["persona", "greeting"]),
        (
            "help",
            &[
                "reply_price",
                "picture_price",
                "upscale_price",
                "face_swap_price",
                "video_price",
            ],
        ),
        ("balance", &["credits"]),
        ("ledger.entry", &["date", "what", "amount"]),
        ("ledger.entry_reason", &["date", "what", "amount", "reason"]),
        ("cancel.done", &["count"]),
        ("ack.position", &["ahead"]),
        ("status.progress", &["percent"]),
        ("fail.bad_input", &["reason", "refund"]),
        ("fail.delivery", &[]),
        ("support.contact", &["contact"]),
        ("dialogs.line", &["n", "title"]),
        ("dialogs.line_current", &["n", "title"]),
        ("dialogs.untitled", &["persona", "date"]),
        ("dialogs.reopened", &["persona", "title"]),
        ("button.reopen", &["n", "title"]),
        ("refund.returned", &["credits"]),
        ("button.count", &["count", "price"]),
        ("result.video_caption", &["n", "total"]),
        ("err.insufficient", &["price", "balance"]),
        ("err.file_too_large", &["size_mb", "max_mb"]),
        (
            "admin.stats",
            &[
                "users",
                "active_1d",
                "active_7d",
                "active_30d",
                "d1",
                "d7",
                "d30",
                "jobs_today",
                "failed_today",
                "by_type",
                "queues",
            ],
        ),
    ];
    for (key, expected) in cases {
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(placeholders(Lang::En, key), expected, "{key}");
    }
    for key in keys(Lang::En)
        .into_iter()
        .filter(|k| k.starts_with("fail.") && k != "fail.delivery")
    {
        assert!(
            placeholders(Lang::En, &key).contains("refund"),
            "{key} has no {{refund}}"
        );
    }
}

#[test]
fn every_promo_ending_names_the_refund() {
    for lang in Lang::ALL {
        for key in keys(lang)
            .into_iter()
            .filter(|k| k.starts_with("promo.end."))
        {
            assert!(
                placeholders(lang, &key).contains("price"),
                "{}: {key} has no {{price}}",
                lang.code()
            );
        }
    }
}

#[test]
fn no_text_is_empty_but_refund_none() {
    for lang in Lang::ALL {
        for key in keys(lang) {
            let text = t(lang, &key, &[]);
            if MAY_BE_EMPTY.contains(&key.as_str()) {
                continue;
            }
            assert!(!text.trim().is_empty(), "{}: {key} is empty", lang.code());
            assert_eq!(
                text,
                text.trim(),
                "{}: {key} has spaces at an end",
                lang.code()
            );
        }
    }
}

#[test]
fn every_key_is_in_a_known_section() {
    for key in keys(Lang::En) {
        let section = key.split('.').next().unwrap_or("");
        assert!(SECTIONS.contains(&section), "{key}");
    }
}

#[test]
fn command_descriptions_fit_telegram() {
    for lang in Lang::ALL {
        for cmd in [
            "start", "help", "balance", "buy", "cancel", "new", "dialogs",
        ] {
            let text = t(lang, &format!("commands.{cmd}"), &[]);
            let len = text.chars().count();
            assert!((3..=256).contains(&len), "{}: {cmd}: {text}", lang.code());
            assert!(!text.contains('\n'));
        }
    }
}

#[test]
fn texts_are_plain() {
    // no HTML tags or Markdown emphasis: messages are sent as plain text
    for lang in Lang::ALL {
        for key in keys(lang) {
            let text = t(lang, &key, &[]);
            for bad in ["<b>", "<i>", "</", "**", "__", "`"] {
                assert!(!text.contains(bad), "{}: {key} contains {bad}", lang.code());
            }
        }
    }
}

#[test]
fn lang_from_code() {
    let cases = [
        (Some("ru"), Lang::Ru),
        (Some("ru-RU"), Lang::Ru),
        (Some("RU"), Lang::Ru),
        (Some("ru_RU"), Lang::Ru),
        (Some("uk"), Lang::Ru),
        (Some("be"), Lang::Ru),
        (Some("kk"), Lang::Ru),
        (Some("kk-KZ"), Lang::Ru),
        (Some("en"), Lang::En),
        (Some("en-US"), Lang::En),
        (Some("de"), Lang::En),
        (Some("rus"), Lang::En),
        (Some("pt-br"), Lang::En),
        (Some(""), Lang::En),
        (None, Lang::En),
    ];
    for (code, lang) in cases {
        assert_eq!(Lang::from_code(code), lang, "{code:?}");
    }
    assert_eq!(Lang::En.code(), "en");
    assert_eq!(Lang::Ru.code(), "ru");
    for lang in Lang::ALL {
        assert_eq!(Lang::from_code(Some(lang.code())), lang);
    }
}

#[test]
fn lang_serde_round_trip() {
    for lang in Lang::ALL {
        let json = serde_json::to_string(&lang).unwrap();
        assert_eq!(json, format!("\"{}\"", lang.code()));
        assert_eq!(serde_json::from_str::<Lang>(&json).unwrap(), lang);
    }
}

#[test]
fn t_substitutes() {
    let credits = 30;
    assert_eq!(
        t(Lang::En, "balance", &[("credits", &credits)]),
        "💰 Your balance: 30 cr."
    );
    assert_eq!(
        t(Lang::Ru, "balance", &[("credits", &credits)]),
        "💰 Ваш баланс: 30 кр."
    );
    let text = t(
        Lang::En,
        "err.insufficient",
        &[("price", &5), ("balance", &"2")],
    );
    assert!(text.contains('5') && text.contains('2'), "{text}");
    assert!(!text.contains('{'), "{text}");
    let greeting = t(Lang::Ru, "start.greeting", &[("name", &"Аня")]);
    assert!(greeting.starts_with("Привет, Аня!"), "{greeting}");
}

#[test]
fn t_keeps_unknown_and_missing_placeholders() {
    // an argument the text has no placeholder for is ignored; a placeholder
    // without an argument stays as it is
    let text = t(
        Lang::En,
        "err.insufficient",
        &[("price", &5), ("other", &1)],
    );
    assert!(text.contains("{balance}"), "{text}");
    assert!(!text.contains("{price}"), "{text}");
}

#[test]
fn t_falls_back_to_the_key() {
    assert_eq!(t(Lang::En, "no.such_key", &[]), "no.such_key");
    assert_eq!(t(Lang::Ru, "no.such_key", &[("x", &1)]), "no.such_key");
}

#[test]
fn refund_none_is_empty_and_fail_texts_trim_cleanly() {
    assert_eq!(t(Lang::En, "refund.none", &[]), "");
    assert_eq!(t(Lang::Ru, "refund.none", &[]), "");
    for lang in Lang::ALL {
        let none = t(lang, "refund.none", &[]);
        let text = t(lang, "fail.cancelled", &[("refund", &none)]);
        assert!(!text.trim().is_empty());
        let returned = t(lang, "refund.returned", &[("credits", &3)]);
        let text = t(lang, "fail.timed_out", &[("refund", &returned)]);
        assert!(text.ends_with(&returned), "{text}");
    }
}

// ---- every key the crate's code uses is in the catalog ----

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `s` looks like a catalog key: `<section>.<name>` with a known section and
/// a name of `[a-z0-9_]` (not a file name like `photo.jpg`).
fn looks_like_key(s: &str) -> bool {
    let Some((section, name)) = s.split_once('.') else {
        return false;
    };
    SECTIONS.contains(&section)
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !FILE_EXTENSIONS.contains(&name)
}

/// Every `"<section>.<name>"` string literal in `source`. Splitting on `"` gives
/// the literals' contents (and the code between them, which never looks like a
/// key), so escaped quotes or char literals cannot throw it off.
fn used_keys(source: &str) -> BTreeSet<String> {
    source
        .split('"')
        .filter(|s| looks_like_key(s))
        .map(str::to_owned)
        .collect()
}

#[test]
fn key_scanner_finds_keys() {
    let src = r#"let a = t(lang, "err.internal", &[]); let b = tr("help"); let c = "photo.jpg";
        let d = match x { A => "fail.billing", _ => "status.done" }; let e = "a.b"; '"';
        let f = "button.count {count}"; let g = "err.Internal";"#;
    let found: Vec<String> = used_keys(src).into_iter().collect();
    assert_eq!(found, ["err.internal", "fail.billing", "status.done"]);
}

#[test]
fn every_key_used_in_the_code_exists() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(!files.is_empty(), "no sources under {}", src.display());
    let en = key_set(Lang::En);
    let mut missing = Vec::new();
    for file in &files {
        let Ok(source) = std::fs::read_to_string(file) else {
            panic!("cannot read {}", file.display());
        };
        for key in used_keys(&source) {
            // `help` and `balance` are top-level strings (keys without a dot):
            // `"help.x"` or `"balance.x"` is never a key, so it is reported too
            if !en.contains(&key) {
                missing.push(format!("{}: {key}", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys used but not in en.toml: {missing:#?}"
    );
}
