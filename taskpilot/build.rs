//! `sqlx::migrate!` embeds `migrations/webdb` at compile time, and on stable Rust nothing tells
//! Cargo to rebuild when a migration is added without a Rust file changing: the binary and the
//! tests would keep migrating to the old schema. This is the build script sqlx recommends.
fn main() {
    println!("cargo:rerun-if-changed=../migrations/webdb");
}
