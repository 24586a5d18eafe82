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
