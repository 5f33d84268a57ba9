//! Empty: a build script is what makes cargo honour the `[build-dependencies]` in Cargo.toml,
//! which unify the features of the proc-macro and build-script crates too.
fn main() {}
