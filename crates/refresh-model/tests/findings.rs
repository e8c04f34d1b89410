//! Two schedules the checker found that broke refresh-core's protocol as
//! it stood (README, "Findings"), both needing an operator re-import of an
//! old token. Both are fixed in refresh-core; the fixes are protections of
//! the model (`mark_retried`, `presented_fence`). Each finding is two
//! tests: without its fix the checker finds the schedule (shortest trace
//! printed); with it, no schedule within the same bounds breaks the
//! invariant (exhaustive).

use std::io::Write as _;

use refresh_model::protocol::{Bounds, P1, P2, P3, P4, Protections, Protocol};
use refresh_model::{Until, check, shortest, trace};

fn find(label: &str, bounds: Bounds, protections: Protections, property: &'static str) {
    let (path, report) = shortest(Protocol::with(bounds, protections), property, 60);
    let path = path.unwrap_or_else(|| panic!("{label}: no counterexample to {property:?}"));
    let _ = writeln!(
        std::io::stderr(),
        "{label}: {property:?} broken in {} steps (last pass: {})\n{}",
        path.clone().into_actions().len(),
        report.summary(),
        trace(&path)
    );
}

fn holds(label: &str, bounds: Bounds) {
    let report = check(Protocol::new(bounds), 2, Until::Exhausted);
    let _ = writeln!(std::io::stderr(), "{label}: {}", report.summary());
    for property in [P1, P2, P3, P4] {
        if let Some(path) = report.discoveries.get(property) {
            panic!("{label}: counterexample to {property:?}:\n{}", trace(path));
        }
    }
}

/// F1's bounds: one rotation, two failed storage calls (the answer's save
/// and the mark), a lease fault, a re-import, no crash (a crash between the
/// write and the mark is the documented residual event, not this finding).
fn f1_bounds() -> Bounds {
    Bounds {
        generations: 1,
        max_time: 3,
        lease_faults: 1,
        crashes: 0,
        store_faults: 2,
        reimports: 1,
        ..Bounds::for_workers(2)
    }
}

/// F2's bounds: two rotations on a stopped clock, a failed storage call, a
/// lease fault, a re-import.
fn f2_bounds() -> Bounds {
    Bounds {
        generations: 2,
        max_time: 0,
        lease_faults: 1,
        crashes: 0,
        store_faults: 1,
        reimports: 1,
        ..Bounds::for_workers(2)
    }
}

/// F1: when `save_answer` failed and the consumed mark's attempts fail,
/// the open claim expires unmarked; a later re-import of the generation is
/// claimed afresh and presented again.
#[test]
fn f1_without_the_mark_retry_a_reimported_token_is_presented_again() {
    let protections = Protections {
        mark_retried: false,
        ..Protections::ALL
    };
    find("F1 (mark given up)", f1_bounds(), protections, P1);
}

#[test]
fn f1_with_the_mark_retried_in_the_background_no_reimport_is_presented() {
    holds("F1 fixed", f1_bounds());
}

/// F2: a re-import while two writers are still retrying: the stale writer
/// re-applies its (already applied) answer over the re-imported row, and
/// the live writer then reads that row as "replaced by another writer" and
/// drops the live generation.
#[test]
fn f2_without_the_presented_token_fence_a_reimport_drops_the_live_generation() {
    let protections = Protections {
        presented_fence: false,
        ..Protections::ALL
    };
    find("F2 (pre-fix write_once)", f2_bounds(), protections, P2);
}

#[test]
fn f2_with_the_presented_token_fence_no_generation_is_dropped() {
    holds("F2 fixed", f2_bounds());
}

/// F3's bounds: three rotations on a stopped clock, a failed storage call,
/// a lease fault, a re-import.
fn f3_bounds() -> Bounds {
    Bounds {
        generations: 3,
        max_time: 0,
        lease_faults: 1,
        crashes: 0,
        store_faults: 1,
        reimports: 1,
        ..Bounds::for_workers(2)
    }
}

/// F3: the fix of F3's predecessor (a re-imported token whose claim is
/// answered but not yet marked counts as redeemed, so the live answer goes
/// over it) needs its counterpart: an answer whose own token is already
/// claimed has landed, and never goes over the row again. Without it a
/// stale holder resumes after two more rotations and writes its answer over
/// a newer generation.
#[test]
fn f3_without_the_answer_claim_check_a_stale_answer_regresses_the_row() {
    let protections = Protections {
        answer_claim_check: false,
        ..Protections::ALL
    };
    find("F3 (no answer claim check)", f3_bounds(), protections, P3);
}

#[test]
fn f3_with_the_answer_claim_check_three_rotations_keep_the_invariants() {
    holds("F3 fixed", f3_bounds());
}
