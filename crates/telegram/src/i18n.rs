//! Message catalogs: every user-visible string of the bot comes from here.
//!
//! The catalogs are `locales/<lang>.toml`, embedded in the binary and parsed once.
//! Tables are flattened with dots: `[start] greeting = "…"` is the key
//! `start.greeting`; a top-level string (`help = "…"`) is the key `help`. Texts are
//! Telegram plain text (no Markdown or HTML) with placeholders like `{name}`,
//! filled in by [`t`].

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Display,
    sync::LazyLock,
};

/// A language the bot speaks.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English, also the fallback for keys missing in another catalog.
    #[default]
    En,
    /// Russian, also for users of Ukrainian, Belarusian and Kazakh Telegram.
    Ru,
}

impl Lang {
    /// Every language, English first.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ru];

    /// The language for a Telegram `language_code` (an IETF tag like `ru` or
    /// `ru-RU`): Russian for `ru`, `uk`, `be` and `kk`, English for anything else
    /// or nothing.
    pub fn from_code(code: Option<&str>) -> Lang {
        let primary = code
            .unwrap_or("")
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "ru" | "uk" | "be" | "kk" => Lang::Ru,
            _ => Lang::En,
        }
    }

    /// The language's code: `en` or `ru`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }
}

type Catalog = HashMap<String, String>;

static EN: LazyLock<Catalog> = LazyLock::new(|| load("en", include_str!("../locales/en.toml")));
static RU: LazyLock<Catalog> = LazyLock::new(|| load("ru", include_str!("../locales/ru.toml")));

fn catalog(lang: Lang) -> &'static Catalog {
    match lang {
        Lang::En => &EN,
        Lang::Ru => &RU,
    }
}

/// Parses a catalog; a broken one is logged and empty (the tests catch it first).
fn load(lang: &str, source: &str) -> Catalog {
    match parse_catalog(source) {
        Ok(catalog) => catalog,
        Err(e) => {
            tracing::error!(lang, error = %e, "the message catalog does not parse");
            Catalog::new()
        }
    }
}

/// The flattened strings of a TOML catalog; values that are not strings are logged
/// and skipped.
fn parse_catalog(source: &str) -> Result<Catalog, toml::de::Error> {
    let table: toml::Table = toml::from_str(source)?;
    let mut out = Catalog::new();
    flatten("", &table, &mut out);
    Ok(out)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Catalog) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(t) => flatten(&key, t, out),
            other => tracing::warn!(
                key,
                kind = other.type_str(),
                "catalog value is not a string"
            ),
        }
    }
}

/// The text of `key` in `lang`, with `args` filled in (`{name}` → the value of
/// `name`; a placeholder without an argument stays as it is).
///
/// A key missing in `lang` is taken from English; missing there too, the key itself
/// is returned and a warning logged.
pub fn t(lang: Lang, key: &str, args: &[(&str, &dyn Display)]) -> String {
    translate(catalog(lang), &EN, key, args).unwrap_or_else(|| {
        tracing::warn!(key, lang = lang.code(), "no message for this key");
        key.to_owned()
    })
}

fn translate(
    primary: &Catalog,
    fallback: &Catalog,
    key: &str,
    args: &[(&str, &dyn Display)],
) -> Option<String> {
    primary
        .get(key)
        .or_else(|| fallback.get(key))
        .map(|text| fill(text, args))
}

/// Every key of `lang`'s catalog, sorted.
pub fn keys(lang: Lang) -> Vec<String> {
    let mut keys: Vec<String> = catalog(lang).keys().cloned().collect();
    keys.sort();
    keys
}

/// The placeholders (`{name}`) of `key`'s text in `lang`'s catalog (empty if the
/// key is not in it).
pub fn placeholders(lang: Lang, key: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(text) = catalog(lang).get(key) {
        for piece in pieces(text) {
            if let Piece::Placeholder(name) = piece {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// A part of a text: literal, or a placeholder's name.
enum Piece<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

/// Splits `text` into literals and placeholders: `{` + one or more of
/// `[A-Za-z0-9_]` + `}`. Any other brace is literal.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while let Some(open) = text[i..].find('{').map(|o| i + o) {
        let rest = &text[open + 1..];
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if name_len > 0 && rest.as_bytes().get(name_len) == Some(&b'}') {
            if literal_start < open {
                out.push(Piece::Literal(&text[literal_start..open]));
            }
            out.push(Piece::Placeholder(&rest[..name_len]));
            i = open + 1 + name_len + 1;
            literal_start = i;
        } else {
            i = open + 1;
        }
    }
    if literal_start < text.len() {
        out.push(Piece::Literal(&text[literal_start..]));
    }
    out
}

/// `text` with its placeholders replaced by the matching `args` (in one pass: the
/// values are not searched for placeholders).
fn fill(text: &str, args: &[(&str, &dyn Display)]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len() + 16 * args.len());
    for piece in pieces(text) {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Placeholder(name) => match args.iter().find(|(n, _)| *n == name) {
                // writing to a String does not fail
                Some((_, value)) => {
                    let _ = write!(out, "{value}");
                }
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_substitutes_and_keeps_the_rest() {
        let n = 5;
        assert_eq!(
            fill("a {n} b {n} {x} {} {not valid} {", &[("n", &n)]),
            "a 5 b 5 {x} {} {not valid} {"
        );
        assert_eq!(fill("{a}{b}", &[("a", &"{b}"), ("b", &1)]), "{b}1");
        assert_eq!(fill("", &[]), "");
        assert_eq!(fill("Привет, {name}!", &[("name", &"Аня")]), "Привет, Аня!");
    }

    #[test]
    fn flattening_and_fallback() {
        let en =
            parse_catalog("top = \"T\"\n[a]\nx = \"ax {v}\"\ny = \"ay\"\n[a.b]\nz = \"abz\"\n")
                .unwrap_or_default();
        let ru = parse_catalog("[a]\nx = \"рус {v}\"\n").unwrap_or_default();
        assert_eq!(en.get("top").map(String::as_str), Some("T"));
        assert_eq!(en.get("a.b.z").map(String::as_str), Some("abz"));
        let v = 7;
        assert_eq!(
            translate(&ru, &en, "a.x", &[("v", &v)]).as_deref(),
            Some("рус 7")
        );
        assert_eq!(translate(&ru, &en, "a.y", &[]).as_deref(), Some("ay"));
        assert_eq!(translate(&ru, &en, "a.nope", &[]), None);
    }

    #[test]
    fn broken_catalog_is_empty() {
        assert!(load("xx", "[a\nb = ").is_empty());
    }
}
