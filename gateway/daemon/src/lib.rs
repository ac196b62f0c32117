//! The Vigil gateway daemon: the async shell around the sans-IO core in `vigil-proto`.
//!
//! The shell owns sockets, TLS, timers and tasks; it moves bytes and deadlines in and out of
//! the core and never makes protocol decisions of its own.
