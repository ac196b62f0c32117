//! Bodies of the cargo-fuzz targets in `fuzz/`.
//!
//! Each target is a plain function here, so that `fuzz/fuzz_targets/*.rs` are one-line wrappers
//! and `tests/fuzz_corpus.rs` replays the committed corpus through the same code on every
//! `cargo test`. A body must never panic on any input; it may assert round-trip properties.
