//! Structured chat replies: a promo script that follows the request's `Layout:` line
//! and quotes its `Brief:` line.

use serde_json::{Value, json};

/// Words per second the fake's narration is written for (its speech runs at 2.5).
const NARRATION_WORDS_PER_SEC: f64 = 2.4;
/// Words used to pad a narration to its length.
const FILLER: [&str; 12] = [
    "fresh", "bright", "simple", "bold", "clear", "warm", "new", "true", "smart", "quick", "kind",
    "real",
];

/// What a structured script follows: segments per part and their length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub intro: u32,
    pub main: u32,
    pub outro: u32,
    pub segment_secs: u32,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            intro: 3,
            main: 4,
            outro: 3,
            segment_secs: 5,
        }
    }
}

/// Reads `Layout: 3 intro, 4 main, 3 outro segments of 5 seconds each.` from a
/// line of `text`; `None` without such a line.
pub(crate) fn parse_layout(text: &str) -> Option<Layout> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Layout:"))?;
    let words: Vec<String> = line
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let number_before = |name: &str| {
        words
            .windows(2)
            .find(|w| w[1] == name)
            .and_then(|w| w[0].parse().ok())
    };
    let secs = words
        .windows(2)
        .find(|w| w[0] == "of")
        .and_then(|w| w[1].parse().ok())?;
    Some(Layout {
        intro: number_before("intro")?,
        main: number_before("main")?,
        outro: number_before("outro")?,
        segment_secs: secs,
    })
}

/// The text after `Brief:` on a line of `text`, if any.
pub(crate) fn parse_brief(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Brief:"))
        .map(|b| b.trim().to_owned())
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A narration of the right length for one segment, quoting the brief's first words.
fn narration(brief: &str, n: u32, secs: u32) -> String {
    let target = ((f64::from(secs) * NARRATION_WORDS_PER_SEC).floor() as usize)
        .clamp(2, (3 * secs).max(2) as usize);
    let mut words = vec!["Scene".to_owned(), format!("{n}:")];
    words.extend(brief.split_whitespace().take(5).map(str::to_owned));
    let mut filler = FILLER.iter().cycle();
    while words.len() < target {
        words.extend(filler.next().map(|w| (*w).to_owned()));
    }
    words.truncate(target);
    words.join(" ")
}

/// A valid script (as JSON) for `layout` about `brief`.
pub(crate) fn script(layout: Layout, brief: &str) -> Value {
    let brief = if brief.is_empty() {
        "your product"
    } else {
        brief
    };
    let parts = [
        ("intro", layout.intro),
        ("main", layout.main),
        ("outro", layout.outro),
    ];
    let mut segments = Vec::new();
    let mut index = 0u32;
    for (part, count) in parts {
        for _ in 0..count {
            let s = layout.segment_secs;
            segments.push(json!({
                "index": index,
                "part": part,
                "start_secs": index * s,
                "end_secs": (index + 1) * s,
                "narration": narration(brief, index + 1, s),
                "image_prompt": truncate(
                    &format!("{brief}, scene {}, {part} shot, cinematic light", index + 1),
                    900,
                ),
                "animation_prompt": format!("slow camera push-in on scene {}", index + 1),
            }));
            index += 1;
        }
    }
    json!({ "title": truncate(&format!("Promo: {brief}"), 100), "segments": segments })
}

/// What a structured reply that is not JSON looks like.
pub(crate) const MALFORMED_SCRIPT: &str = "{\"title\": \"Promo\", \"segments\": [ {\"index\": 0,";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_line_is_read() {
        let text = "Brief: coffee\nLayout: 3 intro, 4 main, 3 outro segments of 5 seconds each.\n";
        assert_eq!(parse_layout(text), Some(Layout::default()));
        assert_eq!(parse_brief(text).as_deref(), Some("coffee"));
        assert_eq!(parse_layout("no layout"), None);
        let l = parse_layout("Layout: 1 intro, 2 main, 0 outro segments of 2 seconds each.");
        assert_eq!(
            l,
            Some(Layout {
                intro: 1,
                main: 2,
                outro: 0,
                segment_secs: 2
            })
        );
    }

    #[test]
    fn scripts_follow_the_layout() {
        let s = script(
            Layout::default(),
            "Fresh coffee beans every morning for you",
        );
        let segs = s["segments"].as_array().unwrap();
        assert_eq!(segs.len(), 10);
        assert_eq!(segs[3]["part"], "main");
        assert_eq!(segs[9]["end_secs"], 50);
        let words = segs[0]["narration"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count();
        assert_eq!(words, 12);
        assert!(s["title"].as_str().unwrap().contains("Fresh coffee"));
    }
}
