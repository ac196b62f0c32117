//! Helpers shared by Vigil's end-to-end and interop tests.
