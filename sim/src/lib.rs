//! Vigil simulation lab.
//!
//! For now this crate holds the mock push services ([`mock`]): faithful stand-ins for
//! Apple's APNs and Google's FCM HTTP v1 that the gateway's push clients, the end-to-end
//! tests and the capacity simulator are pointed at instead of the real services.

pub mod mock;
