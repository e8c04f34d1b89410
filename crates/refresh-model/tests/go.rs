//! The Go algorithm breaks invariants 1 and 2: the checker finds both
//! counterexamples (printed; the shortest is in the README).

use std::io::Write as _;

use refresh_model::go::GoAlgorithm;
use refresh_model::protocol::{P1, P2};
use refresh_model::{Until, check, shortest, trace};

#[test]
fn the_go_algorithm_presents_a_token_twice_and_loses_a_rotation() {
    let report = check(GoAlgorithm::default(), 1, Until::Exhausted);
    let _ = writeln!(std::io::stderr(), "Go algorithm: {}", report.summary());
    for property in [P1, P2] {
        assert!(report.found(property), "no counterexample to {property:?}");
        let (path, _) = shortest(GoAlgorithm::default(), property, 40);
        let path = path.expect("a counterexample within 40 steps");
        let _ = writeln!(
            std::io::stderr(),
            "Go: shortest counterexample to {property:?} ({} steps):\n{}",
            path.clone().into_actions().len(),
            trace(&path)
        );
    }
}
