//! Where the binaries under test are: beside the test executable's
//! directory (`target/<profile>/`), where `cargo test --workspace` puts
//! every binary of the workspace.

use std::path::PathBuf;

/// The path of the workspace binary `name` (`oauth-refresh`,
/// `oauth-emulator`, `fault-worker`).
///
/// # Panics
/// When it was not built, naming the command that builds it.
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run `cargo test --workspace --all-features` (as `cargo xtask test` does), \
         or build it first: cargo build -p refresh-facade --features cli --bin oauth-refresh \
         -p refresh-providers --features emulator --bin oauth-emulator -p refresh-tests --bin fault-worker",
        path.display()
    );
    path
}
