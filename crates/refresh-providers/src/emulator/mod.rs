//! OAuth emulator (in progress).
