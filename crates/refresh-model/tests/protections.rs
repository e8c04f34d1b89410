//! Each protection of the protocol is necessary: removing one makes the
//! checker find a counterexample (printed, shortest first level).

use std::io::Write as _;

use refresh_model::protocol::{Bounds, P1, P3, P4, Protections, Protocol};
use refresh_model::{shortest, trace};

/// Small bounds: two workers, one rotation, no faults unless a test adds
/// them.
fn small() -> Bounds {
    Bounds {
        generations: 1,
        max_time: 3,
        lease_faults: 0,
        crashes: 0,
        store_faults: 0,
        reimports: 0,
        ..Bounds::for_workers(2)
    }
}

/// Finds the shortest counterexample to `property` of the protocol with
/// `protections` (asserted to exist) and prints it.
fn refute(label: &str, bounds: Bounds, protections: Protections, property: &'static str) {
    let (path, report) = shortest(Protocol::with(bounds, protections), property, 60);
    let Some(path) = path else {
        panic!(
            "without {label}: no counterexample to {property:?} ({})",
            report.summary()
        );
    };
    let _ = writeln!(
        std::io::stderr(),
        "without {label}: {property:?} broken in {} steps (last pass: {})\n{}",
        path.clone().into_actions().len(),
        report.summary(),
        trace(&path)
    );
}

#[test]
fn without_takeover_atomicity_two_workers_both_win_and_present_the_token() {
    let bounds = Bounds {
        lease_faults: 1,
        ..small()
    };
    let protections = Protections {
        takeover_atomic: false,
        ..Protections::ALL
    };
    refute("takeover atomicity", bounds, protections, P1);
}

#[test]
fn without_the_claim_id_check_a_late_holder_removes_the_new_holders_claim() {
    let bounds = Bounds {
        lease_faults: 2,
        max_time: 4,
        ..small()
    };
    let protections = Protections {
        claim_id_check: false,
        ..Protections::ALL
    };
    refute("the claim id check", bounds, protections, P1);
}

/// With the consumed mark made reliable (F1's fix), a redeemed generation's
/// claim always reads consumed or answered, so without the re-read invariant
/// 1 breaks only through the residual event (a crash or stall between the
/// write and the mark), which the property excuses. What the re-read
/// guarantees by itself is property 4: a stale reader never presents a
/// token the account no longer holds, which also keeps the residual event
/// from re-presenting anything.
#[test]
fn without_the_reread_after_claiming_a_stale_reader_presents_a_redeemed_token() {
    let bounds = Bounds {
        lease_faults: 1,
        crashes: 1,
        store_faults: 1,
        ..small()
    };
    let protections = Protections {
        reread_after_claim: false,
        ..Protections::ALL
    };
    refute("the re-read after claiming", bounds, protections, P4);
}

#[test]
fn dropping_the_claim_after_a_maybe_consumed_outcome_lets_the_token_be_presented_again() {
    let protections = Protections {
        quarantine_maybe_consumed: false,
        ..Protections::ALL
    };
    refute("the quarantine", small(), protections, P1);
}

#[test]
fn without_the_consumed_mark_a_reimported_token_is_presented_again() {
    let bounds = Bounds {
        reimports: 1,
        ..small()
    };
    let protections = Protections {
        consumed_mark: false,
        ..Protections::ALL
    };
    refute("the consumed mark", bounds, protections, P1);
}

#[test]
fn without_the_fence_in_the_compare_and_set_a_stale_answer_overwrites_a_newer_generation() {
    let bounds = Bounds {
        generations: 2,
        max_time: 0,
        lease_faults: 1,
        ..small()
    };
    let protections = Protections {
        cas_fence: false,
        ..Protections::ALL
    };
    refute("the compare-and-set fence", bounds, protections, P3);
}
