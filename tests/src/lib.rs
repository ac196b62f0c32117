//! Helpers shared by Vigil's end-to-end and interop tests.
//!
//! - [`push`]: mock APNs/FCM environments wired to Vigil's real push clients.

pub mod push;
