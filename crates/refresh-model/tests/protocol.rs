//! The proof: every reachable state of the project's protocol, within the
//! bounds, satisfies invariants 1–3, and every reachability property has a
//! witness (the model is not vacuous).

use std::io::Write as _;

use refresh_model::protocol::{
    Bounds, P1, P2, P3, P4, Protocol, S_APPLIED, S_COMPLETES, S_REGRESSED, S_RESIDUAL, S_TAKEOVER,
};
use refresh_model::{Until, check, trace};

fn prove(label: &str, bounds: Bounds) {
    let report = check(Protocol::new(bounds), 2, Until::Exhausted);
    let _ = writeln!(
        std::io::stderr(),
        "protocol, {label}: {} ({bounds:?})",
        report.summary()
    );
    for property in [P1, P2, P3, P4] {
        if let Some(path) = report.discoveries.get(property) {
            panic!("counterexample to {property:?}:\n{}", trace(path));
        }
    }
    for property in [S_COMPLETES, S_TAKEOVER, S_APPLIED, S_REGRESSED, S_RESIDUAL] {
        assert!(report.found(property), "no witness for {property:?}");
    }
    assert!(
        report.unique_states > 100_000,
        "suspiciously small state space"
    );
}

#[test]
fn the_protocol_keeps_invariants_1_to_3_with_two_workers_and_two_rotations() {
    prove("2 workers", Bounds::for_workers(2));
}

#[test]
fn the_protocol_keeps_invariants_1_to_3_with_two_workers_under_more_faults() {
    prove("2 workers, deep faults", Bounds::deep_faults());
}

#[test]
fn the_protocol_keeps_invariants_1_to_3_with_three_workers() {
    prove("3 workers", Bounds::for_workers(3));
}
