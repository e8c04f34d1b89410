//! Test support (feature `testing`).
