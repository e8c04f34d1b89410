//! `oauth-emulator`: placeholder until the emulator lands.

fn main() {}
