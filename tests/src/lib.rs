//! Helpers shared by Vigil's end-to-end and interop tests.
//!
//! - [`push`]: mock APNs/FCM environments wired to Vigil's real push clients.
//! - [`procstat`]: CPU time, RSS and load average from `/proc`, for the benchmarks.

pub mod procstat;
pub mod push;
