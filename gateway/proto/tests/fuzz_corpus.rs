//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/<target>/`) through the same target
//! bodies that `fuzz/fuzz_targets/*.rs` call, so every `cargo test` re-checks every input a
//! fuzzer ever found interesting. A missing or empty corpus fails the test: a replay that
//! replays nothing would prove nothing.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} is missing: {e}", dir.display()));
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("readable corpus directory entry").path();
            let data = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, data)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "fuzz corpus {} is empty", dir.display());
    inputs
}

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let inputs = corpus(target);
    for (path, data) in &inputs {
        // A panic here names the input that broke the target.
        let result = std::panic::catch_unwind(|| body(data));
        assert!(
            result.is_ok(),
            "fuzz target {target} panicked on {}",
            path.display()
        );
    }
    inputs.len()
}

#[test]
fn message_corpus() {
    let n = replay("message", vigil_proto::fuzzing::message);
    // The RFC 4475 torture messages alone are 50 inputs.
    assert!(n >= 50, "message corpus has only {n} inputs");
}

#[test]
fn uri_corpus() {
    replay("uri", vigil_proto::fuzzing::uri);
}

#[test]
fn digest_challenge_corpus() {
    replay("digest_challenge", vigil_proto::fuzzing::digest_challenge);
}
