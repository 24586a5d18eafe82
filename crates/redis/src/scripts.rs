//! The Lua scripts, each prefixed with the shared prelude (`lua/common.lua`).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(include_str!("lua/common.lua"), include_str!($file)))
        });
    };
}

script!(PUSH, "lua/push.lua");
script!(FETCH, "lua/fetch.lua");
script!(COMPLETE, "lua/complete.lua");
script!(RENEW, "lua/renew.lua");
script!(REAP, "lua/reap.lua");
script!(HANDBACK, "lua/handback.lua");
script!(CANCEL, "lua/cancel.lua");
script!(RETRY_DEAD, "lua/retry_dead.lua");
script!(PROGRESS, "lua/progress.lua");
script!(CHECKPOINT, "lua/checkpoint.lua");
script!(STATS, "lua/stats.lua");
script!(PAUSE, "lua/pause.lua");
script!(DELETE, "lua/delete.lua");
script!(WAKE, "lua/wake.lua");

/// The pipeline scripts (`lua/pipeline/`), each prefixed with both preludes. Run
/// with KEYS[1] = `<prefix>:{pipelines}`; `genq-pipeline` calls them.
pub mod pipeline {
    use std::sync::LazyLock;

    use redis::Script;

    macro_rules! pipeline_script {
        ($name:ident, $file:literal) => {
            pub static $name: LazyLock<Script> = LazyLock::new(|| {
                Script::new(concat!(
                    include_str!("lua/common.lua"),
                    include_str!("lua/pipeline/common.lua"),
                    include_str!($file)
                ))
            });
        };
    }

    pipeline_script!(TAKE, "lua/pipeline/take.lua");
    pipeline_script!(APPLY, "lua/pipeline/apply.lua");
    pipeline_script!(PUSHED, "lua/pipeline/pushed.lua");
    pipeline_script!(STEP, "lua/pipeline/step.lua");
    pipeline_script!(SIGNAL, "lua/pipeline/signal.lua");
    pipeline_script!(TIMEOUTS, "lua/pipeline/timeouts.lua");
    pipeline_script!(CANCEL, "lua/pipeline/cancel.lua");
    pipeline_script!(IDLE, "lua/pipeline/idle.lua");
}

/// The provider-limit scripts (`lua/provider/`), each prefixed with both preludes.
/// Run with KEYS[1] = `<prefix>:provider:{<provider>}`; `genq-providers` calls them.
pub mod provider {
    use std::sync::LazyLock;

    use redis::Script;

    macro_rules! provider_script {
        ($name:ident, $file:literal) => {
            pub static $name: LazyLock<Script> = LazyLock::new(|| {
                Script::new(concat!(
                    include_str!("lua/common.lua"),
                    include_str!("lua/provider/common.lua"),
                    include_str!($file)
                ))
            });
        };
    }

    provider_script!(ACQUIRE, "lua/provider/acquire.lua");
    provider_script!(RELEASE, "lua/provider/release.lua");
    provider_script!(RENEW, "lua/provider/renew.lua");
    provider_script!(FEEDBACK, "lua/provider/feedback.lua");
    provider_script!(ADJUST, "lua/provider/adjust.lua");
    provider_script!(VIEW, "lua/provider/view.lua");
    provider_script!(COOL, "lua/provider/cool.lua");
}
