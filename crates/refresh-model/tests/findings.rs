//! Schedules the checker found that broke the real protocol, outside the
//! proof's bounds because the proof restricts the operator's re-import.
//! Both are fixed in refresh-core since (see the README, findings); the
//! model's steps still model the pre-fix code, so each test asserts the
//! counterexample exists against them and prints it. When the model's
//! `finish_claim` and `write_once` steps mirror the fix, these tests flip
//! and the restriction in `Protocol::actions` goes.

use std::io::Write as _;

use refresh_model::protocol::{Bounds, P1, P2, Protocol};
use refresh_model::{shortest, trace};

fn find(label: &str, bounds: Bounds, property: &'static str) {
    let (path, report) = shortest(Protocol::new(bounds), property, 60);
    let path = path.unwrap_or_else(|| panic!("{label}: no counterexample to {property:?}"));
    let _ = writeln!(
        std::io::stderr(),
        "{label}: {property:?} broken in {} steps (last pass: {})\n{}",
        path.clone().into_actions().len(),
        report.summary(),
        trace(&path)
    );
}

/// F1: when `save_answer` failed and the consumed mark does not land
/// before the open claim expires (the mark's three attempts fail, or the
/// holder pauses), nothing records the generation as consumed: a later
/// re-import of it is claimed afresh and presented again.
#[test]
fn f1_a_consumed_mark_that_never_lands_lets_a_reimported_token_be_presented() {
    let bounds = Bounds {
        generations: 1,
        max_time: 3,
        lease_faults: 1,
        crashes: 0,
        store_faults: 1,
        reimports: 1,
        reimport_unmarked: true,
        ..Bounds::for_workers(2)
    };
    find("F1", bounds, P1);
}

/// F2: a re-import while two writers are still retrying: the stale writer
/// re-applies its (already applied) answer over the re-imported row
/// because the row holds the token it presented, and the live writer then
/// reads that row as "replaced by another writer" and drops the live
/// generation.
#[test]
fn f2_a_reimport_during_two_retrying_writes_drops_the_live_generation() {
    let bounds = Bounds {
        generations: 2,
        max_time: 0,
        lease_faults: 1,
        crashes: 0,
        store_faults: 1,
        reimports: 1,
        reimport_during_writes: true,
        ..Bounds::for_workers(2)
    };
    find("F2", bounds, P2);
}
