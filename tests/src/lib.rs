//! Helpers shared by Vigil's end-to-end and interop tests.
//!
//! - [`push`]: mock APNs/FCM environments wired to Vigil's real push clients.
//! - [`procstat`]: CPU time, RSS and load average from `/proc`, for the benchmarks.

pub mod procstat;
pub mod push;

use std::path::PathBuf;

/// A scratch directory under the system temp dir, named after a tag and this process,
/// removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `vigil-TAG-PID` (panics if it cannot: tests need it).
    pub fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("vigil-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create a scratch directory");
        Self(d)
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write a scratch file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}
