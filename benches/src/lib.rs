//! Shared fixtures for Vigil's criterion benchmarks.
