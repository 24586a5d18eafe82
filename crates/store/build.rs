//! `sqlx::migrate!` embeds `migrations/` at build time; on stable Rust it cannot tell
//! Cargo to watch the directory, so a new migration file would not trigger a rebuild.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
