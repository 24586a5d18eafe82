//! Running ffmpeg and ffprobe.

use std::ffi::OsString;
use std::process::{Output, Stdio};

use tokio::process::Command;
use tracing::debug;

use crate::MediaError;

/// The ffmpeg binary, looked up on `PATH`.
pub(crate) const FFMPEG: &str = "ffmpeg";
/// The ffprobe binary, looked up on `PATH`.
pub(crate) const FFPROBE: &str = "ffprobe";

/// How much of a tool's stderr goes into an error message.
const STDERR_TAIL_CHARS: usize = 600;

/// Runs `program` with `args` to completion and returns what it printed; the exit
/// status is the caller's to judge. The child gets no stdin and is killed if this
/// future is dropped (a cancelled or timed-out job does not leave ffmpeg running).
/// A missing binary is [`MediaError::Ffmpeg`] saying how to install it.
pub(crate) async fn run(program: &str, args: &[OsString]) -> Result<Output, MediaError> {
    debug!(program, ?args, "running");
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| spawn_error(program, &e))
}

/// Runs ffmpeg with `args`; a non-zero exit is [`MediaError::Ffmpeg`] with `what`
/// (e.g. "re-encoding /tmp/a.mp4") and the end of ffmpeg's stderr.
pub(crate) async fn run_ffmpeg(args: &[OsString], what: &str) -> Result<(), MediaError> {
    let output = run(FFMPEG, args).await?;
    if output.status.success() {
        return Ok(());
    }
    Err(MediaError::Ffmpeg(format!(
        "ffmpeg failed ({}) {what}: {}",
        output.status,
        stderr_tail(&output.stderr)
    )))
}

/// The error for a tool that could not be started.
fn spawn_error(program: &str, error: &std::io::Error) -> MediaError {
    if error.kind() == std::io::ErrorKind::NotFound {
        MediaError::Ffmpeg(format!(
            "{program} is not installed (apt-get install ffmpeg)"
        ))
    } else {
        MediaError::Ffmpeg(format!("cannot start {program}: {error}"))
    }
}

/// The last lines of `stderr`, trimmed to a readable length.
pub(crate) fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return "(no error output)".to_owned();
    }
    let start = text
        .char_indices()
        .rev()
        .nth(STDERR_TAIL_CHARS)
        .map_or(0, |(index, _)| index);
    let tail = text[start..].lines().collect::<Vec<_>>().join(" | ");
    if start > 0 {
        format!("...{tail}")
    } else {
        tail
    }
}

/// A command line being built: flags as text, paths as they are (not necessarily
/// UTF-8).
#[derive(Debug, Default)]
pub(crate) struct Args(Vec<OsString>);

impl Args {
    /// Appends each of `items`.
    pub(crate) fn strs(mut self, items: &[&str]) -> Self {
        self.0.extend(items.iter().map(OsString::from));
        self
    }

    /// Appends one argument (a formatted value, a path).
    pub(crate) fn arg(mut self, item: impl Into<OsString>) -> Self {
        self.0.push(item.into());
        self
    }

    /// The arguments.
    pub(crate) fn as_slice(&self) -> &[OsString] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_binary_says_how_to_install_it() {
        let error = run("genq-media-no-such-ffmpeg", &[]).await.err();
        let Some(MediaError::Ffmpeg(message)) = error else {
            panic!("expected MediaError::Ffmpeg, got {error:?}");
        };
        assert_eq!(
            message,
            "genq-media-no-such-ffmpeg is not installed (apt-get install ffmpeg)"
        );
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        assert_eq!(stderr_tail(b""), "(no error output)");
        assert_eq!(stderr_tail(b"a\nb\n"), "a | b");
        let long = "x".repeat(2000) + "\nthe real error";
        let tail = stderr_tail(long.as_bytes());
        assert!(tail.starts_with("..."), "{tail}");
        assert!(tail.ends_with("the real error"), "{tail}");
        assert!(tail.len() < 700, "{}", tail.len());
    }
}
