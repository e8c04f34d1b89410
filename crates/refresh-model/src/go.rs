//! The Go algorithm the project replaced (`OAuthRefreshAPI.RefreshIfNeeded`,
//! REFERENCE.md §3.2 and defects 1, 2, 4, 5, 7): `SET NX` with a fixed TTL
//! released by a plain `DEL`, lock-free when Redis errors, re-read, refresh,
//! blind full-row write whose failure drops the new token.

use std::fmt;

use stateright::{Model, Property};

use crate::env::{Answer, Env, Gen, Request};
use crate::protocol::{P1, P2, P3};

/// Bounds of the Go model. One unit is 30 s: the lock lives 1 unit
/// (`refreshLockTTL`), the HTTP client times out after 2 (60 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoBounds {
    /// Number of workers.
    pub workers: u8,
    /// The account is due while it holds a generation below this.
    pub generations: Gen,
    /// The clock stops here.
    pub max_time: u8,
    /// Lock TTL (never extended).
    pub lock_ttl: u8,
    /// HTTP timeout.
    pub http_timeout: u8,
    /// The upstream may still process a request this long after the
    /// client gave up.
    pub grace: u8,
    /// Redis outages.
    pub outages: u8,
    /// Failed row updates.
    pub store_faults: u8,
}

impl Default for GoBounds {
    fn default() -> Self {
        Self {
            workers: 2,
            generations: 2,
            max_time: 3,
            lock_ttl: 1,
            http_timeout: 2,
            grace: 1,
            outages: 1,
            store_faults: 1,
        }
    }
}

/// The Go algorithm as a stateright model.
#[derive(Clone, Debug, Default)]
pub struct GoAlgorithm {
    /// Bounds of the check.
    pub bounds: GoBounds,
}

/// A Go worker's program counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoPhase {
    /// Not running.
    Idle,
    /// About to `SET NX` the lock.
    Lock,
    /// About to re-read the account and call the executor.
    Read {
        /// Took the lock (else lock-free after a Redis error).
        locked: bool,
    },
    /// Waiting for the upstream.
    Wait {
        /// Generation presented.
        key: Gen,
        /// When.
        sent: u8,
        /// Took the lock.
        locked: bool,
    },
    /// Has the new credentials in memory: about to `Update` the row.
    Got {
        /// The new generation.
        answer: Gen,
        /// Took the lock.
        locked: bool,
    },
    /// About to `DEL` the lock (deferred release).
    Release {
        /// Took the lock.
        locked: bool,
    },
}

/// The Go cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GoState {
    /// Clock, row, upstream, network, verdicts.
    pub env: Env,
    /// The workers.
    pub workers: Vec<GoPhase>,
    /// The Redis lock: owner and expiry.
    pub lock: Option<(u8, u8)>,
    /// Redis answers.
    pub redis_up: bool,
    /// Remaining outages.
    pub outages: u8,
    /// Remaining failed updates.
    pub store_faults: u8,
}

/// An action of the Go model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoAction {
    /// Worker `w` takes its next step.
    Step(u8),
    /// Worker `w`'s `Update` fails.
    Fail(u8),
    /// The upstream processes request `i` and answers.
    Process(u8),
    /// The clock advances one unit.
    Tick,
    /// Redis becomes unavailable (and loses its state).
    Outage,
    /// Redis is back.
    Recover,
}

impl fmt::Display for GoAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Step(w) => write!(f, "w{w} step"),
            Self::Fail(w) => write!(f, "w{w} row update FAILS"),
            Self::Process(i) => write!(f, "upstream processes request #{i}"),
            Self::Tick => write!(f, "clock +1 (30 s)"),
            Self::Outage => write!(f, "Redis DOWN"),
            Self::Recover => write!(f, "Redis back"),
        }
    }
}

impl GoAlgorithm {
    fn due(&self, generation: Gen) -> bool {
        generation < self.bounds.generations
    }

    fn step(&self, s: &mut GoState, w: u8, fail: bool) -> bool {
        let now = s.env.now;
        let phase = s.workers[w as usize];
        let next = match phase {
            GoPhase::Idle if self.due(s.env.row.generation) => GoPhase::Lock,
            GoPhase::Idle => return false,
            GoPhase::Lock if !s.redis_up => GoPhase::Read { locked: false },
            GoPhase::Lock => match s.lock {
                Some((_, expires)) if now < expires => GoPhase::Idle,
                _ => {
                    s.lock = Some((w, now + self.bounds.lock_ttl));
                    GoPhase::Read { locked: true }
                }
            },
            GoPhase::Read { locked } => {
                let key = s.env.row.generation;
                if self.due(key) {
                    s.env.requests.push(Request {
                        generation: key,
                        sent: now,
                        waiter: Some(w),
                        residual: false,
                    });
                    s.env.requests.sort_unstable();
                    GoPhase::Wait {
                        key,
                        sent: now,
                        locked,
                    }
                } else {
                    GoPhase::Release { locked }
                }
            }
            GoPhase::Wait { sent, locked, .. } => {
                if now < sent + self.bounds.http_timeout {
                    return false;
                }
                s.env.detach(w);
                GoPhase::Release { locked }
            }
            GoPhase::Got { answer, locked } => {
                if !fail {
                    // _token_version = now in ms, full-row Update.
                    s.env.write(answer);
                }
                GoPhase::Release { locked }
            }
            GoPhase::Release { locked } => {
                if locked && s.redis_up {
                    // Plain DEL: whoever holds the lock now loses it.
                    s.lock = None;
                }
                GoPhase::Idle
            }
        };
        s.workers[w as usize] = next;
        true
    }
}

impl Model for GoAlgorithm {
    type State = GoState;
    type Action = GoAction;

    fn init_states(&self) -> Vec<GoState> {
        let b = &self.bounds;
        vec![GoState {
            env: Env::new(),
            workers: vec![GoPhase::Idle; b.workers as usize],
            lock: None,
            redis_up: true,
            outages: b.outages,
            store_faults: b.store_faults,
        }]
    }

    fn actions(&self, s: &GoState, actions: &mut Vec<GoAction>) {
        if s.env.revoked || self.properties().iter().any(|p| !(p.condition)(self, s)) {
            return;
        }
        for (w, phase) in s.workers.iter().enumerate() {
            actions.push(GoAction::Step(w as u8));
            if s.store_faults > 0 && matches!(phase, GoPhase::Got { .. }) {
                actions.push(GoAction::Fail(w as u8));
            }
        }
        for i in 0..s.env.requests.len() {
            actions.push(GoAction::Process(i as u8));
        }
        if s.env.now < self.bounds.max_time {
            actions.push(GoAction::Tick);
        }
        if s.redis_up && s.outages > 0 {
            actions.push(GoAction::Outage);
        }
        if !s.redis_up {
            actions.push(GoAction::Recover);
        }
    }

    fn next_state(&self, last: &GoState, action: GoAction) -> Option<GoState> {
        let mut s = last.clone();
        let b = &self.bounds;
        match action {
            GoAction::Step(w) => {
                if !self.step(&mut s, w, false) {
                    return None;
                }
            }
            GoAction::Fail(w) => {
                s.store_faults -= 1;
                self.step(&mut s, w, true);
            }
            GoAction::Process(i) => {
                let (r, answer) = s.env.process(i as usize);
                let waiting = r.waiter.and_then(|w| match s.workers[w as usize] {
                    GoPhase::Wait { sent, locked, .. }
                        if sent == r.sent && s.env.now < sent + b.http_timeout =>
                    {
                        Some((w, locked))
                    }
                    _ => None,
                });
                match (waiting, answer) {
                    (Some((w, locked)), Answer::Issued(answer)) => {
                        s.workers[w as usize] = GoPhase::Got { answer, locked };
                    }
                    // invalid_grant → race recovery (a read) → error.
                    (Some((w, locked)), Answer::Rejected) => {
                        s.workers[w as usize] = GoPhase::Release { locked };
                    }
                    (None, Answer::Issued(_)) => s.env.lose(r.generation),
                    (None, Answer::Rejected) => {}
                }
            }
            GoAction::Tick => {
                s.env.now += 1;
                s.env.expire_requests(b.http_timeout + b.grace);
            }
            GoAction::Outage => {
                s.outages -= 1;
                s.redis_up = false;
                s.lock = None;
            }
            GoAction::Recover => s.redis_up = true,
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(P1, |_, s: &GoState| s.env.one_redemption_per_generation()),
            Property::always(P2, |_, s: &GoState| {
                let issued = s.env.issued;
                let in_window = s
                    .workers
                    .iter()
                    .any(|p| matches!(p, GoPhase::Got { answer, .. } if answer >= &issued));
                s.env.no_lost_rotation(false, in_window)
            }),
            Property::always(P3, |_, s: &GoState| !s.env.regressed_write),
        ]
    }
}

impl fmt::Display for GoState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.env)?;
        match (self.redis_up, self.lock) {
            (false, _) => write!(f, " redis=DOWN")?,
            (true, Some((w, exp))) => write!(f, " lock=w{w} exp@{exp}")?,
            (true, None) => {}
        }
        for (i, p) in self.workers.iter().enumerate() {
            write!(f, " | w{i}:{p:?}")?;
        }
        Ok(())
    }
}
