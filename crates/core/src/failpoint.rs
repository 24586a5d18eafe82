//! Named points where a process can be told (by `GENQ_FAILPOINT=<name>`) to stop
//! and wait to be killed: how the crash-safety tests SIGKILL a process (the relay,
//! the bot) exactly between two steps. Unset, a failpoint costs one comparison.

use std::sync::LazyLock;

static ARMED: LazyLock<Option<String>> = LazyLock::new(|| std::env::var("GENQ_FAILPOINT").ok());

/// Waits forever (for a SIGKILL) if `name` is the armed failpoint.
pub async fn failpoint(name: &str) {
    if ARMED.as_deref() == Some(name) {
        tracing::error!(
            failpoint = name,
            "failpoint {name} reached; waiting to be killed"
        );
        std::future::pending::<()>().await;
    }
}
