//! Checking a script against its layout: every problem named.

use std::fmt;

use crate::{Layout, Part, Script, Segment};

/// Words of narration a segment may have per second of its length.
pub const MAX_WORDS_PER_SEC: u32 = 3;
/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// The longest image or animation prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 1000;
/// The longest narration of all segments together, in characters (what one
/// speech request takes).
pub const MAX_NARRATION_CHARS: usize = 4000;

/// One way a script does not fit its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptProblem {
    EmptyTitle,
    TitleTooLong {
        chars: usize,
    },
    SegmentCount {
        expected: u32,
        got: usize,
    },
    /// Segment at `position` is `got` where the layout has `expected`.
    WrongPart {
        position: usize,
        expected: Part,
        got: Part,
    },
    WrongIndex {
        position: usize,
        got: u32,
    },
    WrongTimes {
        index: u32,
        expected: (u32, u32),
        got: (u32, u32),
    },
    Empty {
        index: u32,
        field: &'static str,
    },
    PromptTooLong {
        index: u32,
        field: &'static str,
        chars: usize,
    },
    TooManyWords {
        index: u32,
        words: usize,
        max: u32,
    },
    NarrationTooLong {
        chars: usize,
    },
}

impl fmt::Display for ScriptProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyTitle => write!(f, "the title is empty"),
            Self::TitleTooLong { chars } => {
                write!(f, "the title is {chars} characters, over {MAX_TITLE_CHARS}")
            }
            Self::SegmentCount { expected, got } => {
                write!(f, "there are {got} segments, the layout needs {expected}")
            }
            Self::WrongPart {
                position,
                expected,
                got,
            } => write!(
                f,
                "segment {position} is {} but must be {} (intro, then main, then outro)",
                got.as_str(),
                expected.as_str()
            ),
            Self::WrongIndex { position, got } => {
                write!(f, "segment {position} has index {got}, must be {position}")
            }
            Self::WrongTimes {
                index,
                expected,
                got,
            } => write!(
                f,
                "segment {index} runs {}-{} s, must run {}-{} s",
                got.0, got.1, expected.0, expected.1
            ),
            Self::Empty { index, field } => write!(f, "segment {index} has an empty {field}"),
            Self::PromptTooLong {
                index,
                field,
                chars,
            } => write!(
                f,
                "segment {index}'s {field} is {chars} characters, over {MAX_PROMPT_CHARS}"
            ),
            Self::TooManyWords { index, words, max } => write!(
                f,
                "segment {index}'s narration has {words} words, at most {max} can be spoken in it"
            ),
            Self::NarrationTooLong { chars } => write!(
                f,
                "the narration is {chars} characters in all, over {MAX_NARRATION_CHARS}"
            ),
        }
    }
}

/// The part segment `position` must be in.
fn expected_part(layout: &Layout, position: usize) -> Part {
    let p = position as u64;
    if p < u64::from(layout.intro) {
        Part::Intro
    } else if p < u64::from(layout.intro) + u64::from(layout.main) {
        Part::Main
    } else {
        Part::Outro
    }
}

/// Checks `script` against `layout`; every problem found, in order.
pub fn check(script: &Script, layout: &Layout) -> Result<(), Vec<ScriptProblem>> {
    let mut problems = Vec::new();
    let title = script.title.trim().chars().count();
    if title == 0 {
        problems.push(ScriptProblem::EmptyTitle);
    } else if title > MAX_TITLE_CHARS {
        problems.push(ScriptProblem::TitleTooLong { chars: title });
    }
    let expected = layout.segments();
    if script.segments.len() as u64 != u64::from(expected) {
        problems.push(ScriptProblem::SegmentCount {
            expected,
            got: script.segments.len(),
        });
    }
    for (position, segment) in script.segments.iter().enumerate() {
        check_segment(layout, position, segment, &mut problems);
    }
    let chars: usize = script
        .segments
        .iter()
        .map(|s| s.narration.chars().count())
        .sum();
    if chars > MAX_NARRATION_CHARS {
        problems.push(ScriptProblem::NarrationTooLong { chars });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn check_segment(layout: &Layout, position: usize, s: &Segment, problems: &mut Vec<ScriptProblem>) {
    let part = expected_part(layout, position);
    if s.part != part {
        problems.push(ScriptProblem::WrongPart {
            position,
            expected: part,
            got: s.part,
        });
    }
    if s.index as usize != position {
        problems.push(ScriptProblem::WrongIndex {
            position,
            got: s.index,
        });
    }
    let start = (position as u32).saturating_mul(layout.segment_secs);
    let expected = (start, start.saturating_add(layout.segment_secs));
    if (s.start_secs, s.end_secs) != expected {
        problems.push(ScriptProblem::WrongTimes {
            index: s.index,
            expected,
            got: (s.start_secs, s.end_secs),
        });
    }
    for (field, text) in [
        ("narration", &s.narration),
        ("image_prompt", &s.image_prompt),
        ("animation_prompt", &s.animation_prompt),
    ] {
        let chars = text.trim().chars().count();
        if chars == 0 {
            problems.push(ScriptProblem::Empty {
                index: s.index,
                field,
            });
        } else if field != "narration" && chars > MAX_PROMPT_CHARS {
            problems.push(ScriptProblem::PromptTooLong {
                index: s.index,
                field,
                chars,
            });
        }
    }
    let words = s.narration.split_whitespace().count();
    let max = MAX_WORDS_PER_SEC.saturating_mul(layout.segment_secs);
    if words > max as usize {
        problems.push(ScriptProblem::TooManyWords {
            index: s.index,
            words,
            max,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            intro: 1,
            main: 2,
            outro: 1,
            segment_secs: 5,
        }
    }

    fn good() -> Script {
        let parts = [Part::Intro, Part::Main, Part::Main, Part::Outro];
        Script {
            title: "Fresh coffee".into(),
            segments: parts
                .iter()
                .enumerate()
                .map(|(i, part)| Segment {
                    index: i as u32,
                    part: *part,
                    start_secs: i as u32 * 5,
                    end_secs: i as u32 * 5 + 5,
                    narration: "Coffee that wakes you up.".into(),
                    image_prompt: "a cup of coffee".into(),
                    animation_prompt: "steam rises".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_script_that_fits_passes() {
        assert_eq!(check(&good(), &layout()), Ok(()));
    }

    #[test]
    fn wrong_counts_and_order_are_named() {
        let mut s = good();
        s.segments.pop();
        let p = check(&s, &layout()).unwrap_err();
        assert_eq!(
            p,
            vec![ScriptProblem::SegmentCount {
                expected: 4,
                got: 3
            }]
        );
        assert_eq!(p[0].to_string(), "there are 3 segments, the layout needs 4");

        let mut s = good();
        s.segments.swap(0, 1);
        let p = check(&s, &layout()).unwrap_err();
        assert!(p.contains(&ScriptProblem::WrongPart {
            position: 0,
            expected: Part::Intro,
            got: Part::Main
        }));
        assert!(p.contains(&ScriptProblem::WrongIndex {
            position: 0,
            got: 1
        }));
        assert!(
            p.iter().any(|x| x.to_string()
                == "segment 1 is intro but must be main (intro, then main, then outro)"),
            "{p:?}"
        );
    }

    #[test]
    fn times_must_be_contiguous() {
        let mut s = good();
        s.segments[2].start_secs = 11;
        s.segments[2].end_secs = 14;
        let p = check(&s, &layout()).unwrap_err();
        assert_eq!(
            p,
            vec![ScriptProblem::WrongTimes {
                index: 2,
                expected: (10, 15),
                got: (11, 14)
            }]
        );
        assert_eq!(p[0].to_string(), "segment 2 runs 11-14 s, must run 10-15 s");
    }

    #[test]
    fn empty_fields_long_narration_and_titles_are_named() {
        let mut s = good();
        s.title = " ".into();
        s.segments[0].image_prompt = String::new();
        s.segments[1].narration = "word ".repeat(16);
        s.segments[3].animation_prompt = "x".repeat(MAX_PROMPT_CHARS + 1);
        let p = check(&s, &layout()).unwrap_err();
        assert_eq!(
            p,
            vec![
                ScriptProblem::EmptyTitle,
                ScriptProblem::Empty {
                    index: 0,
                    field: "image_prompt"
                },
                ScriptProblem::TooManyWords {
                    index: 1,
                    words: 16,
                    max: 15
                },
                ScriptProblem::PromptTooLong {
                    index: 3,
                    field: "animation_prompt",
                    chars: MAX_PROMPT_CHARS + 1
                },
            ]
        );
        assert_eq!(
            p[2].to_string(),
            "segment 1's narration has 16 words, at most 15 can be spoken in it"
        );
    }

    #[test]
    fn total_narration_and_title_lengths_are_limited() {
        let mut s = good();
        s.title = "t".repeat(MAX_TITLE_CHARS + 1);
        let long = "abcdefghij".repeat(101); // one word, 1,010 characters
        for seg in &mut s.segments {
            seg.narration = long.clone();
        }
        let p = check(&s, &layout()).unwrap_err();
        assert_eq!(
            p.first(),
            Some(&ScriptProblem::TitleTooLong {
                chars: MAX_TITLE_CHARS + 1
            })
        );
        assert_eq!(
            p.last(),
            Some(&ScriptProblem::NarrationTooLong { chars: 4040 })
        );
    }
}
