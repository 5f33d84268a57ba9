//! No code: see this crate's Cargo.toml. Every workspace member depends on it, and its
//! dependency list (written by `cargo hakari generate`) enables, for each dependency that
//! members use with different features, the union of them. So `cargo build --release`,
//! `cargo run --release -p harness` (which builds proxy, echo-server and loadgen itself) and
//! `cargo bench` compile each dependency once, with one feature set, instead of rebuilding
//! each other's binaries.
