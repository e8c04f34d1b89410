//! Everything the binary prints on stdout and stderr goes through here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

/// One line on stdout.
pub(crate) fn print_line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// One line on stderr.
pub(crate) fn eprint_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// A JSON value, pretty-printed, on stdout.
pub(crate) fn print_json(value: &serde_json::Value) {
    print_line(&serde_json::to_string_pretty(value).unwrap_or_default());
}
