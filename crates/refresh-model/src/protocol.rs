//! The project's protocol: `RefreshFlow` over the ports' contracts
//! (refresh-core `src/flow/`), one atomic action per port call.

use std::fmt;

use stateright::{Model, Property};

use crate::env::{Answer, Env, Gen, Request};

/// The protections of the protocol; each can be removed to show that the
/// checker then finds a counterexample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protections {
    /// `ClaimStore::acquire` checks and takes over in ONE atomic step
    /// (removed: a read, then a blind write).
    pub takeover_atomic: bool,
    /// Every claim operation after `acquire` is compare-and-act on the claim
    /// id (removed: it acts on whatever holding the key has).
    pub claim_id_check: bool,
    /// The re-read after winning the claim (removed: the token is sent from
    /// the first read).
    pub reread_after_claim: bool,
    /// A maybe-consumed outcome (timeout, reset, 5xx) quarantines the claim
    /// (removed: the claim is dropped).
    pub quarantine_maybe_consumed: bool,
    /// A redeemed generation's claim is marked consumed (removed: it is
    /// deleted).
    pub consumed_mark: bool,
    /// The credential write is a compare-and-set on the version and the
    /// refresh-token fingerprint (removed: a blind write).
    pub cas_fence: bool,
    /// A consumed mark whose attempts fail is retried by a detached task
    /// that keeps the claim alive until it lands (removed: given up, the
    /// open claim expires unmarked; finding F1).
    pub mark_retried: bool,
    /// On a mismatch the fenced write judges the row against the token the
    /// answer REDEEMED, not the rebased one, and a row holding that token
    /// again with its generation consumed means the answer already landed
    /// (removed: the pre-fix `write_once`; finding F2).
    pub presented_fence: bool,
    /// On a mismatch, an answer whose own token is claimed already landed
    /// and is superseded (removed: with a redeemed token in the row the
    /// stale answer re-applies over a newer generation).
    pub answer_claim_check: bool,
}

impl Protections {
    /// Every protection of the real protocol.
    pub const ALL: Self = Self {
        takeover_atomic: true,
        claim_id_check: true,
        reread_after_claim: true,
        quarantine_maybe_consumed: true,
        consumed_mark: true,
        cas_fence: true,
        mark_retried: true,
        presented_fence: true,
        answer_claim_check: true,
    };
}

/// Bounds and timing of one check. Time is in units of the store clock;
/// the ratios follow the defaults (H = 60 s, S = 30 s, claim life 15 min,
/// quarantine 10 min) compressed so that `claim_ttl > H + S` and
/// `quarantine >= S` as `FlowConfig::validate` requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Number of workers (processes).
    pub workers: u8,
    /// The account is due while it holds a generation below this: the
    /// number of rotations a complete run performs.
    pub generations: Gen,
    /// The clock stops here.
    pub max_time: u8,
    /// Hard deadline H: the worker aborts its call at `sent + H`.
    pub hard_deadline: u8,
    /// Grace S: the upstream may still process a request until `sent + H + S`
    /// (exclusive).
    pub grace: u8,
    /// `claim_ttl`.
    pub claim_ttl: u8,
    /// `quarantine`.
    pub quarantine: u8,
    /// `persist_attempts` (the fenced write's bounded retries).
    pub persist_attempts: u8,
    /// Lease faults: fast store flushed or unavailable, durable lease lapsed.
    pub lease_faults: u8,
    /// Worker crashes.
    pub crashes: u8,
    /// Failed storage calls (save answer, compare-and-set, mark consumed,
    /// quarantine, extend).
    pub store_faults: u8,
    /// Operator re-imports of an older generation (at any time, of any
    /// generation the row held before).
    pub reimports: u8,
}

impl Bounds {
    /// The bounds the proof uses for `workers` workers: two workers run
    /// two rotations, three workers one on a longer clock.
    pub fn for_workers(workers: u8) -> Self {
        Self {
            workers,
            generations: if workers <= 2 { 2 } else { 1 },
            max_time: if workers <= 2 { 3 } else { 4 },
            hard_deadline: 1,
            grace: 1,
            claim_ttl: 3,
            quarantine: 2,
            persist_attempts: 2,
            lease_faults: 1,
            crashes: 1,
            store_faults: 1,
            reimports: 1,
        }
    }

    /// Two workers, one rotation, a longer clock and more faults (two
    /// lease faults, two failed storage calls: the rescue path).
    pub fn deep_faults() -> Self {
        Self {
            generations: 1,
            max_time: 4,
            lease_faults: 2,
            store_faults: 2,
            ..Self::for_workers(2)
        }
    }
}

/// The project's refresh protocol as a stateright model.
#[derive(Clone, Debug)]
pub struct Protocol {
    /// Bounds of the check.
    pub bounds: Bounds,
    /// Protections in force.
    pub protections: Protections,
}

impl Protocol {
    /// The real protocol within `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            protections: Protections::ALL,
        }
    }

    /// The protocol with `protections`.
    pub fn with(bounds: Bounds, protections: Protections) -> Self {
        Self {
            bounds,
            protections,
        }
    }
}

/// Where a claim is in its life (`ClaimState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClaimState {
    /// Held; expires at `Claim::expires` by the store clock.
    Open,
    /// Maybe consumed, no answer; expires at `Claim::expires`.
    Quarantined,
    /// Holds the upstream's answer (a generation); never expires.
    Answered(Gen),
    /// Redeemed; kept beyond the bounds (`consumed_horizon`).
    Consumed,
}

/// A claim on one generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The holding's id: the holder's worker index. A worker's later
    /// holdings reuse it, which is sound because a worker acts only on a
    /// holding it won in its current run (or on an answered claim by the
    /// id it read), and a crash drops its memory.
    pub id: u8,
    /// Where the claim is.
    pub state: ClaimState,
    /// Store-clock expiry of an open or quarantined claim.
    pub expires: u8,
}

/// Which lease a worker holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Held {
    /// None (lock layer unavailable is not modelled as lock-free: this is
    /// only before acquiring).
    Nothing,
    /// The fast (Redis) lease.
    Fast,
    /// The durable (database) lease.
    Durable,
}

/// What a fenced write (`write_once`) decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Written {
    /// Our answer is stored.
    Applied,
    /// Another writer's token stands.
    Superseded,
    /// Re-applied over a changed row: retry on the new base.
    Rebased(Gen, u8),
}

/// Why a claim is being finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FinishKind {
    /// This worker's own answer landed.
    Own,
    /// Someone else's answer, found in the claim, landed.
    Applied,
    /// The row holds another writer's token.
    Superseded,
    /// The upstream said `invalid_grant`.
    Rejected,
}

/// A step of the rescue loop (`spawn_rescue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RescueStep {
    /// `write_once`.
    Write,
    /// `claim_save_answer`.
    Save,
    /// `claim_extend`.
    Extend,
}

/// A worker's program counter and memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not running. Its step starts a run from the caller's snapshot of
    /// the account (the listed row, the caller's read): read now, judged
    /// due, and carried (arbitrarily stale) into the run.
    Idle,
    /// Holds a snapshot: about to take the layered leases (the fast lease,
    /// or the durable one while the fast store is unavailable; held
    /// elsewhere → the run ends).
    Lease {
        /// The snapshot's generation.
        key: Gen,
        /// The snapshot's version.
        version: u8,
    },
    /// About to (re-)read the account.
    Read,
    /// About to acquire the claim on `key` (read at `version`).
    Claim {
        /// The generation read.
        key: Gen,
        /// The version read.
        version: u8,
        /// Read from the snapshot: only a win counts (→ `Confirm`); a claim
        /// found goes to `Read`, never acted on.
        snapshot: bool,
    },
    /// Takeover atomicity removed: found the claim free, about to write.
    ClaimWrite {
        /// The generation.
        key: Gen,
        /// The version read.
        version: u8,
        /// Found expired (a takeover) rather than absent.
        took_over: bool,
    },
    /// Found a consumed claim: about to re-read.
    ConsumedReread {
        /// The generation.
        key: Gen,
    },
    /// Won the claim: about to re-read, confirm, check the claim's life
    /// and send.
    Confirm {
        /// The generation claimed.
        key: Gen,
        /// The version read before claiming.
        version: u8,
        /// Local time taken before the insert.
        start: u8,
        /// Won by taking over an expired claim.
        took_over: bool,
    },
    /// Re-read removed: about to check the claim's life and send.
    Send {
        /// The generation.
        key: Gen,
        /// The version confirmed.
        version: u8,
        /// Local time taken before the insert.
        start: u8,
    },
    /// Waiting for the answer.
    Wait {
        /// The generation presented.
        key: Gen,
        /// The version confirmed.
        version: u8,
        /// When it was sent.
        sent: u8,
    },
    /// Holds the answer in memory only: about to save it into the claim.
    Got {
        /// The generation presented.
        key: Gen,
        /// The version confirmed.
        version: u8,
        /// The answer.
        answer: Gen,
    },
    /// About to make a fenced write.
    Cas {
        /// The claim's generation.
        key: Gen,
        /// The claim's id.
        claim: u8,
        /// The write's base generation (expected fingerprint).
        base: Gen,
        /// The write's base version (expected version).
        version: u8,
        /// The generation to write.
        answer: Gen,
        /// The answer is in the claim.
        saved: bool,
        /// This worker's own answer (not one found in a claim).
        own: bool,
        /// Attempt number.
        attempt: u8,
    },
    /// Write and claim both failed: the detached rescue.
    Rescue {
        /// The claim's generation.
        key: Gen,
        /// The write's base generation.
        base: Gen,
        /// The write's base version.
        version: u8,
        /// The generation to write.
        answer: Gen,
        /// Next step.
        step: RescueStep,
    },
    /// About to mark the claim consumed.
    Finish {
        /// The claim's generation.
        key: Gen,
        /// The claim's id.
        claim: u8,
        /// Why.
        kind: FinishKind,
    },
    /// No usable answer: about to quarantine (maybe consumed) or remove.
    Unanswered {
        /// The claim's generation.
        key: Gen,
    },
    /// About to remove the claim (provably not consumed, changed account,
    /// too little life left).
    Remove {
        /// The claim's generation.
        key: Gen,
        /// Start over from the re-read afterwards (else the run ends).
        again: bool,
    },
}

/// One worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Worker {
    /// Program counter and memory.
    pub phase: Phase,
    /// The lease it holds.
    pub held: Held,
}

/// The state of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Clock, row, upstream, network, verdicts.
    pub env: Env,
    /// The workers.
    pub workers: Vec<Worker>,
    /// The claim of each generation.
    pub claims: Vec<Option<Claim>>,
    /// Fast (Redis) lease holder.
    pub fast: Option<u8>,
    /// The fast store answers.
    pub fast_up: bool,
    /// Durable (database) lease holder.
    pub durable: Option<u8>,
    /// Remaining lease faults.
    pub lease_faults: u8,
    /// Remaining crashes.
    pub crashes: u8,
    /// Remaining storage faults.
    pub store_faults: u8,
    /// Remaining re-imports.
    pub reimports: u8,
    /// Detached consumed-mark retries (`finish_claim`'s background task):
    /// (worker, generation, claim id), sorted. A crash of the worker ends
    /// them.
    pub background: Vec<(u8, Gen, u8)>,
}

/// An action of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Worker `w` takes its next step (its next port call succeeds).
    Step(u8),
    /// Worker `w`'s next storage call fails.
    Fail(u8),
    /// The upstream processes request `i`; `deliver: false` loses the
    /// response (reset after commit).
    Process {
        /// Index into the requests.
        request: u8,
        /// The response reaches the waiting worker.
        deliver: bool,
    },
    /// The upstream refuses request `i` unprocessed (429, parsed error).
    Refuse(u8),
    /// Worker `w` crashes and restarts from storage.
    Crash(u8),
    /// The store clock advances one unit (every local clock too).
    Tick,
    /// The fast store loses all its state (restart, FLUSHALL).
    Flush,
    /// The fast store becomes unavailable (and loses its state).
    FastOutage,
    /// The fast store is back.
    FastRecover,
    /// The durable lease's TTL lapses under its holder.
    DurableLapse,
    /// The operator writes an older generation back.
    Reimport(Gen),
    /// Detached mark retry `i` runs: `fail: false` marks the claim
    /// consumed (the task ends); `fail: true` the mark fails and the claim
    /// is extended (the task goes on).
    Retry {
        /// Index into the detached retries.
        index: u8,
        /// The mark fails.
        fail: bool,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Step(w) => write!(f, "w{w} step"),
            Self::Fail(w) => write!(f, "w{w} storage call FAILS"),
            Self::Process { request, deliver } => write!(
                f,
                "upstream processes request #{request}{}",
                if *deliver { "" } else { " (response lost)" }
            ),
            Self::Refuse(i) => write!(f, "upstream refuses request #{i} unprocessed"),
            Self::Crash(w) => write!(f, "w{w} CRASHES"),
            Self::Tick => write!(f, "clock +1"),
            Self::Flush => write!(f, "fast store FLUSHED"),
            Self::FastOutage => write!(f, "fast store DOWN"),
            Self::FastRecover => write!(f, "fast store back"),
            Self::DurableLapse => write!(f, "durable lease LAPSES"),
            Self::Reimport(g) => write!(f, "operator re-imports g{g}"),
            Self::Retry { index, fail: false } => write!(f, "detached mark retry #{index}"),
            Self::Retry { index, fail: true } => {
                write!(f, "detached mark retry #{index} FAILS (claim extended)")
            }
        }
    }
}

impl Protocol {
    fn due(&self, generation: Gen) -> bool {
        generation < self.bounds.generations
    }

    fn window(&self) -> u8 {
        self.bounds.hard_deadline + self.bounds.grace
    }

    /// Whether `w` holds an answer that only its memory has.
    fn in_window(phase: &Phase) -> Option<(Gen, Gen)> {
        match *phase {
            Phase::Got { key, answer, .. }
            | Phase::Rescue { key, answer, .. }
            | Phase::Cas {
                key,
                answer,
                saved: false,
                own: true,
                ..
            } => Some((key, answer)),
            _ => None,
        }
    }

    /// Compare-and-act: the claim of `key` if `id` holds it (or any holding
    /// without the id check) and `ok` accepts its state.
    fn holding<'a>(
        &self,
        claims: &'a mut [Option<Claim>],
        key: Gen,
        id: u8,
        ok: impl Fn(ClaimState) -> bool,
    ) -> Option<&'a mut Option<Claim>> {
        let slot = &mut claims[key as usize];
        match slot {
            Some(c) if (c.id == id || !self.protections.claim_id_check) && ok(c.state) => {
                Some(slot)
            }
            _ => None,
        }
    }

    fn remove_claim(&self, s: &mut State, key: Gen, id: u8) {
        if let Some(slot) = self.holding(&mut s.claims, key, id, |_| true) {
            *slot = None;
        }
    }

    fn mark_consumed(&self, s: &mut State, key: Gen, id: u8) {
        if !self.protections.consumed_mark {
            return self.remove_claim(s, key, id);
        }
        if let Some(Some(c)) = self.holding(&mut s.claims, key, id, |_| true) {
            c.state = ClaimState::Consumed;
        }
    }

    fn save_answer(&self, s: &mut State, key: Gen, id: u8, answer: Gen) -> bool {
        let ok = |st| st != ClaimState::Consumed;
        match self.holding(&mut s.claims, key, id, ok) {
            Some(Some(c)) => {
                c.state = ClaimState::Answered(answer);
                true
            }
            _ => false,
        }
    }

    /// `write_once`: the fenced write, and on a mismatch the re-read that
    /// recognises our own write, re-applies over a consumed token or an
    /// unrelated write, or lets another writer's token stand. `presented`
    /// is the generation the answer redeemed (the claim's key).
    fn write_once(
        &self,
        s: &mut State,
        presented: Gen,
        base: Gen,
        version: u8,
        answer: Gen,
    ) -> Written {
        let row = s.env.row;
        if !self.protections.cas_fence || (row.version == version && row.generation == base) {
            s.env.write(answer);
            return Written::Applied;
        }
        if row.generation == answer {
            return Written::Applied;
        }
        let consumed = matches!(
            s.claims[row.generation as usize],
            Some(Claim {
                state: ClaimState::Consumed,
                ..
            })
        );
        if !self.protections.presented_fence {
            // The pre-fix rule: judged against the rebased token.
            return if row.generation != base && !consumed {
                Written::Superseded
            } else {
                Written::Rebased(row.generation, row.version)
            };
        }
        // The answer's own generation has a claim: someone read it from the
        // row (or from our claim) and redeems it, so it already landed.
        if self.protections.answer_claim_check && s.claims[answer as usize].is_some() {
            return Written::Superseded;
        }
        let replaced = row.generation != presented;
        if !replaced {
            // The answer's own generation is unclaimed (above): it is the
            // live one; re-apply over the presented token, consumed or not.
            return Written::Rebased(row.generation, row.version);
        }
        // A replacing generation that was redeemed: consumed, maybe consumed
        // (quarantined), or answered with that answer claimed in turn.
        let redeemed = match s.claims[row.generation as usize] {
            Some(Claim {
                state: ClaimState::Consumed | ClaimState::Quarantined,
                ..
            }) => true,
            Some(Claim {
                state: ClaimState::Answered(a),
                ..
            }) => s.claims[a as usize].is_some(),
            _ => false,
        };
        if redeemed {
            Written::Rebased(row.generation, row.version)
        } else {
            // Another writer's live token.
            Written::Superseded
        }
    }

    fn end_run(s: &mut State, w: u8) {
        let worker = &mut s.workers[w as usize];
        match worker.held {
            Held::Fast if s.fast == Some(w) => s.fast = None,
            Held::Durable if s.durable == Some(w) => s.durable = None,
            _ => {}
        }
        *worker = Worker {
            phase: Phase::Idle,
            held: Held::Nothing,
        };
    }

    fn set(s: &mut State, w: u8, phase: Phase) {
        s.workers[w as usize].phase = phase;
    }

    /// Whether `w`'s next step is a storage call that can fail.
    fn can_fail(&self, phase: &Phase) -> bool {
        matches!(
            phase,
            Phase::Got { .. }
                | Phase::Cas { .. }
                | Phase::Rescue { .. }
                | Phase::Finish { .. }
                | Phase::Unanswered { .. }
        )
    }

    /// Worker `w`'s next step; `fail` makes its storage call fail.
    fn step(&self, s: &mut State, w: u8, fail: bool) -> bool {
        let b = &self.bounds;
        let p = &self.protections;
        let now = s.env.now;
        let phase = s.workers[w as usize].phase;
        match phase {
            Phase::Idle => {
                let row = s.env.row;
                if !self.due(row.generation) {
                    return false;
                }
                let (key, version) = (row.generation, row.version);
                Self::set(s, w, Phase::Lease { key, version });
            }
            Phase::Lease { key, version } => {
                let (lease, held) = if s.fast_up {
                    (&mut s.fast, Held::Fast)
                } else {
                    (&mut s.durable, Held::Durable)
                };
                if lease.is_some() {
                    Self::end_run(s, w);
                    return true;
                }
                *lease = Some(w);
                s.workers[w as usize].held = held;
                let snapshot = true;
                Self::set(
                    s,
                    w,
                    Phase::Claim {
                        key,
                        version,
                        snapshot,
                    },
                );
            }
            Phase::Read => {
                let row = s.env.row;
                if self.due(row.generation) {
                    let (key, version) = (row.generation, row.version);
                    let snapshot = false;
                    Self::set(
                        s,
                        w,
                        Phase::Claim {
                            key,
                            version,
                            snapshot,
                        },
                    );
                } else {
                    Self::end_run(s, w);
                }
            }
            Phase::Claim {
                key,
                version,
                snapshot,
            } => {
                let existing = s.claims[key as usize];
                let free = match existing {
                    None => Some(false),
                    Some(Claim {
                        state: ClaimState::Open | ClaimState::Quarantined,
                        expires,
                        ..
                    }) if now >= expires => Some(true),
                    _ => None,
                };
                if let Some(took_over) = free {
                    if p.takeover_atomic {
                        self.won(s, w, key, version, took_over);
                    } else {
                        let next = Phase::ClaimWrite {
                            key,
                            version,
                            took_over,
                        };
                        Self::set(s, w, next);
                    }
                    return true;
                }
                if snapshot {
                    // Someone else's claim on the snapshot's generation:
                    // decided from a re-read.
                    Self::set(s, w, Phase::Read);
                    return true;
                }
                match existing.map(|c| (c.id, c.state)) {
                    Some((claim, ClaimState::Answered(answer))) => {
                        let next = Phase::Cas {
                            key,
                            claim,
                            base: key,
                            version,
                            answer,
                            saved: true,
                            own: false,
                            attempt: 1,
                        };
                        Self::set(s, w, next);
                    }
                    Some((_, ClaimState::Consumed)) => {
                        Self::set(s, w, Phase::ConsumedReread { key });
                    }
                    _ => Self::end_run(s, w),
                }
            }
            Phase::ClaimWrite {
                key,
                version,
                took_over,
            } => self.won(s, w, key, version, took_over),
            Phase::ConsumedReread { key } => {
                if s.env.row.generation != key {
                    Self::set(s, w, Phase::Read);
                } else {
                    // CredentialsRegressed: refused, nothing sent.
                    Self::end_run(s, w);
                }
            }
            Phase::Confirm { key, start, .. } => {
                let row = s.env.row;
                if row.generation == key && self.due(row.generation) {
                    self.send(s, w, key, row.version, start);
                } else {
                    Self::set(s, w, Phase::Remove { key, again: true });
                }
            }
            Phase::Send {
                key,
                version,
                start,
            } => self.send(s, w, key, version, start),
            Phase::Wait { key, sent, .. } => {
                // Aborted at the hard deadline: ambiguous.
                if now < sent + b.hard_deadline {
                    return false;
                }
                s.env.detach(w);
                Self::set(s, w, Phase::Unanswered { key });
            }
            Phase::Got {
                key,
                version,
                answer,
            } => {
                let saved = !fail && self.save_answer(s, key, w, answer);
                let next = Phase::Cas {
                    key,
                    claim: w,
                    base: key,
                    version,
                    answer,
                    saved,
                    own: true,
                    attempt: 1,
                };
                Self::set(s, w, next);
            }
            Phase::Cas {
                key,
                claim,
                base,
                version,
                answer,
                saved,
                own,
                attempt,
            } => {
                let written = if fail {
                    None
                } else {
                    Some(self.write_once(s, key, base, version, answer))
                };
                let kind = if own {
                    FinishKind::Own
                } else {
                    FinishKind::Applied
                };
                match written {
                    Some(Written::Applied) => {
                        Self::set(s, w, Phase::Finish { key, claim, kind });
                    }
                    Some(Written::Superseded) if own => {
                        let kind = FinishKind::Superseded;
                        Self::set(s, w, Phase::Finish { key, claim, kind });
                    }
                    // apply_answer: Superseded → Retry.
                    Some(Written::Superseded) => Self::set(s, w, Phase::Read),
                    other => {
                        let (base, version) = match other {
                            Some(Written::Rebased(g, v)) => (g, v),
                            _ => (base, version),
                        };
                        if attempt < b.persist_attempts {
                            let next = Phase::Cas {
                                key,
                                claim,
                                base,
                                version,
                                answer,
                                saved,
                                own,
                                attempt: attempt + 1,
                            };
                            Self::set(s, w, next);
                        } else if s.env.row.generation == answer {
                            // The last read recognises our write.
                            Self::set(s, w, Phase::Finish { key, claim, kind });
                        } else if own && !saved {
                            let next = Phase::Rescue {
                                key,
                                base,
                                version,
                                answer,
                                step: RescueStep::Write,
                            };
                            Self::set(s, w, next);
                        } else {
                            // NotPersisted { answer_saved: true }: the next
                            // flow applies the claim's answer.
                            Self::end_run(s, w);
                        }
                    }
                }
            }
            Phase::Rescue {
                key,
                base,
                version,
                answer,
                step,
            } => {
                let next_step = |step| Phase::Rescue {
                    key,
                    base,
                    version,
                    answer,
                    step,
                };
                match step {
                    RescueStep::Write => {
                        match (!fail).then(|| self.write_once(s, key, base, version, answer)) {
                            Some(Written::Applied) => {
                                let kind = FinishKind::Own;
                                Self::set(
                                    s,
                                    w,
                                    Phase::Finish {
                                        key,
                                        claim: w,
                                        kind,
                                    },
                                );
                            }
                            Some(Written::Superseded) => {
                                let kind = FinishKind::Superseded;
                                Self::set(
                                    s,
                                    w,
                                    Phase::Finish {
                                        key,
                                        claim: w,
                                        kind,
                                    },
                                );
                            }
                            Some(Written::Rebased(base, version)) => {
                                let next = Phase::Rescue {
                                    key,
                                    base,
                                    version,
                                    answer,
                                    step: RescueStep::Save,
                                };
                                Self::set(s, w, next);
                            }
                            None => Self::set(s, w, next_step(RescueStep::Save)),
                        }
                    }
                    RescueStep::Save => {
                        if !fail && self.save_answer(s, key, w, answer) {
                            Self::end_run(s, w);
                        } else {
                            Self::set(s, w, next_step(RescueStep::Extend));
                        }
                    }
                    RescueStep::Extend => {
                        if !fail {
                            let ttl = b.claim_ttl;
                            let open = |st| st == ClaimState::Open;
                            if let Some(Some(c)) = self.holding(&mut s.claims, key, w, open) {
                                c.expires = now + ttl;
                            }
                        }
                        Self::set(s, w, next_step(RescueStep::Write));
                    }
                }
            }
            Phase::Finish { key, claim, kind } => {
                if !fail {
                    self.mark_consumed(s, key, claim);
                } else if p.mark_retried {
                    s.background.push((w, key, claim));
                    s.background.sort_unstable();
                }
                match kind {
                    // apply_answer → Claimed::Applied: check due-ness again.
                    FinishKind::Applied => Self::set(s, w, Phase::Read),
                    _ => Self::end_run(s, w),
                }
            }
            Phase::Unanswered { key } => {
                if p.quarantine_maybe_consumed {
                    if !fail {
                        let ttl = b.quarantine;
                        let open = |st| st == ClaimState::Open;
                        if let Some(Some(c)) = self.holding(&mut s.claims, key, w, open) {
                            c.state = ClaimState::Quarantined;
                            c.expires = now + ttl;
                        }
                    }
                } else if !fail {
                    self.remove_claim(s, key, w);
                }
                Self::end_run(s, w);
            }
            Phase::Remove { key, again } => {
                self.remove_claim(s, key, w);
                if again {
                    Self::set(s, w, Phase::Read);
                } else {
                    Self::end_run(s, w);
                }
            }
        }
        true
    }

    /// `redeem`: sends only while the claim's local life left is at least
    /// H + S.
    fn send(&self, s: &mut State, w: u8, key: Gen, version: u8, start: u8) {
        let now = s.env.now;
        let life_left = (start + self.bounds.claim_ttl).saturating_sub(now);
        if life_left >= self.window() {
            if s.env.row.generation != key {
                s.env.stale_send = true;
            }
            s.env.requests.push(Request {
                generation: key,
                sent: now,
                waiter: Some(w),
                residual: s.env.residual(key),
            });
            s.env.requests.sort_unstable();
            let sent = now;
            Self::set(s, w, Phase::Wait { key, version, sent });
        } else {
            Self::set(s, w, Phase::Remove { key, again: false });
        }
    }

    /// `acquire` returned `Won`: insert or takeover done.
    fn won(&self, s: &mut State, w: u8, key: Gen, version: u8, took_over: bool) {
        let now = s.env.now;
        s.claims[key as usize] = Some(Claim {
            id: w,
            state: ClaimState::Open,
            expires: now + self.bounds.claim_ttl,
        });
        if took_over {
            s.env.took_over(key);
        }
        let next = if self.protections.reread_after_claim {
            Phase::Confirm {
                key,
                version,
                start: now,
                took_over,
            }
        } else {
            Phase::Send {
                key,
                version,
                start: now,
            }
        };
        Self::set(s, w, next);
    }

    /// Whether a live holder is still to mark `generation`'s claim consumed
    /// (its first attempt is next, or the detached retry is pending). A
    /// re-import of the generation inside that window is outside the
    /// model (README, "What the model does not cover").
    fn mark_pending(s: &State, generation: Gen) -> bool {
        s.background.iter().any(|&(_, key, _)| key == generation)
            || s.workers
                .iter()
                .any(|w| matches!(w.phase, Phase::Finish { key, .. } if key == generation))
    }

    /// The claim of `key` if it is `id`'s and open (unanswered).
    fn open_claim(s: &State, key: Gen, id: u8) -> Option<Claim> {
        s.claims[key as usize].filter(|c| c.id == id && c.state == ClaimState::Open)
    }

    /// Invariant 2's durable copy: an answered claim holding `issued` or
    /// later.
    fn answered_holds(s: &State, generation: Gen) -> bool {
        s.claims
            .iter()
            .flatten()
            .any(|c| matches!(c.state, ClaimState::Answered(a) if a >= generation))
    }
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let b = &self.bounds;
        vec![State {
            env: Env::new(),
            workers: vec![
                Worker {
                    phase: Phase::Idle,
                    held: Held::Nothing,
                };
                b.workers as usize
            ],
            claims: vec![None; b.generations as usize + 1],
            fast: None,
            fast_up: true,
            durable: None,
            lease_faults: b.lease_faults,
            crashes: b.crashes,
            store_faults: b.store_faults,
            reimports: b.reimports,
            background: Vec::new(),
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        // A revoked grant or a broken invariant ends the exploration (so a
        // counterexample is a leaf and the first one found is the shortest).
        if s.env.revoked
            || self
                .properties()
                .iter()
                .take(4)
                .any(|p| !(p.condition)(self, s))
        {
            return;
        }
        let now = s.env.now;
        for (w, worker) in s.workers.iter().enumerate() {
            let w = w as u8;
            actions.push(Action::Step(w));
            if s.store_faults > 0 && self.can_fail(&worker.phase) {
                actions.push(Action::Fail(w));
            }
            // A crash before the leases is the run not starting.
            if s.crashes > 0 && !matches!(worker.phase, Phase::Idle | Phase::Lease { .. }) {
                actions.push(Action::Crash(w));
            }
        }
        for (i, r) in s.env.requests.iter().enumerate() {
            let i = i as u8;
            let waiting = r.waiter.is_some() && now < r.sent + self.bounds.hard_deadline;
            actions.push(Action::Process {
                request: i,
                deliver: true,
            });
            if waiting {
                actions.push(Action::Process {
                    request: i,
                    deliver: false,
                });
                actions.push(Action::Refuse(i));
            }
        }
        // The detached retry runs every few seconds within a claim life of
        // minutes: the clock does not pass an open claim's expiry while its
        // retry is pending (a stall that long is residual risk 3, taken
        // here by the foreground holder only).
        let retry_due = s.background.iter().any(|&(_, key, id)| {
            Self::open_claim(s, key, id).is_some_and(|c| now + 1 >= c.expires)
        });
        if now < self.bounds.max_time && !retry_due {
            actions.push(Action::Tick);
        }
        if s.lease_faults > 0 {
            if s.fast.is_some() {
                actions.push(Action::Flush);
            }
            if s.fast_up {
                actions.push(Action::FastOutage);
            }
            if s.durable.is_some() {
                actions.push(Action::DurableLapse);
            }
        }
        if !s.fast_up {
            actions.push(Action::FastRecover);
        }
        for index in 0..s.background.len() as u8 {
            actions.push(Action::Retry { index, fail: false });
            if s.store_faults > 0 {
                actions.push(Action::Retry { index, fail: true });
            }
        }
        if s.reimports > 0 {
            for g in 0..s.env.row.generation {
                if !Self::mark_pending(s, g) {
                    actions.push(Action::Reimport(g));
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let b = &self.bounds;
        match action {
            Action::Step(w) => {
                if !self.step(&mut s, w, false) {
                    return None;
                }
            }
            Action::Fail(w) => {
                s.store_faults -= 1;
                self.step(&mut s, w, true);
            }
            Action::Process { request, deliver } => {
                let (r, answer) = s.env.process(request as usize);
                let waiting = r.waiter.and_then(|w| match s.workers[w as usize].phase {
                    Phase::Wait { key, version, sent }
                        if sent == r.sent
                            && key == r.generation
                            && s.env.now < sent + b.hard_deadline =>
                    {
                        Some((w, key, version))
                    }
                    _ => None,
                });
                match (waiting.filter(|_| deliver), answer) {
                    (Some((w, key, version)), Answer::Issued(answer)) => {
                        Self::set(
                            &mut s,
                            w,
                            Phase::Got {
                                key,
                                version,
                                answer,
                            },
                        );
                    }
                    (Some((w, key, _)), Answer::Rejected) => {
                        let kind = FinishKind::Rejected;
                        Self::set(
                            &mut s,
                            w,
                            Phase::Finish {
                                key,
                                claim: w,
                                kind,
                            },
                        );
                    }
                    (None, Answer::Issued(_)) => s.env.lose(r.generation),
                    (None, Answer::Rejected) => {}
                }
                // An undelivered response (reset after commit): the worker
                // hears nothing and times out at H.
            }
            Action::Refuse(i) => {
                let r = s.env.requests.remove(i as usize);
                if let Some(w) = r.waiter {
                    // Provably not consumed: the claim is removed.
                    let key = r.generation;
                    Self::set(&mut s, w, Phase::Remove { key, again: false });
                }
            }
            Action::Crash(w) => {
                s.crashes -= 1;
                if let Some((key, _)) = Self::in_window(&s.workers[w as usize].phase) {
                    s.env.lose(key);
                }
                // A crash between the write and the consumed mark of an
                // open (unanswered) claim: nothing records the generation
                // as consumed.
                let phase = s.workers[w as usize].phase;
                let mut dropped: Vec<(Gen, u8)> = s
                    .background
                    .iter()
                    .filter(|&&(owner, _, _)| owner == w)
                    .map(|&(_, key, id)| (key, id))
                    .collect();
                if let Phase::Finish { key, claim, .. } = phase {
                    dropped.push((key, claim));
                }
                for (key, id) in dropped {
                    if Self::open_claim(&s, key, id).is_some() {
                        s.env.unmark(key);
                    }
                }
                s.background.retain(|&(owner, _, _)| owner != w);
                s.env.detach(w);
                Self::end_run(&mut s, w);
            }
            Action::Tick => {
                s.env.now += 1;
                s.env.expire_requests(self.window());
                let now = s.env.now;
                for (w, worker) in s.workers.iter().enumerate() {
                    if let Some((key, _)) = Self::in_window(&worker.phase)
                        && let Some(c) = s.claims[key as usize]
                        && c.id == w as u8
                        && c.state == ClaimState::Open
                        && now >= c.expires
                    {
                        // Stalled (or cut off) longer than the claim's life
                        // while holding an answer only in memory.
                        s.env.lose(key);
                    }
                    if let Phase::Finish { key, claim, .. } = worker.phase
                        && Self::open_claim(&s, key, claim).is_some_and(|c| now >= c.expires)
                    {
                        // Stalled longer than the claim's life between the
                        // write and the consumed mark.
                        s.env.unmark(key);
                    }
                }
            }
            Action::Flush => {
                s.lease_faults -= 1;
                s.fast = None;
            }
            Action::FastOutage => {
                s.lease_faults -= 1;
                s.fast = None;
                s.fast_up = false;
            }
            Action::FastRecover => s.fast_up = true,
            Action::DurableLapse => {
                s.lease_faults -= 1;
                s.durable = None;
            }
            Action::Reimport(g) => {
                s.reimports -= 1;
                s.env.reimport(g);
            }
            Action::Retry { index, fail } => {
                let (_, key, id) = s.background[index as usize];
                if fail {
                    s.store_faults -= 1;
                    let (now, ttl) = (s.env.now, b.claim_ttl);
                    let open = |st| st == ClaimState::Open;
                    if let Some(Some(c)) = self.holding(&mut s.claims, key, id, open) {
                        c.expires = now + ttl;
                    }
                } else {
                    self.mark_consumed(&mut s, key, id);
                    s.background.remove(index as usize);
                }
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(P1, |_, s: &State| s.env.one_redemption_per_generation()),
            Property::always(P2, |_, s: &State| {
                let issued = s.env.issued;
                let in_window = s
                    .workers
                    .iter()
                    .any(|w| Self::in_window(&w.phase).is_some_and(|(_, a)| a >= issued));
                s.env
                    .no_lost_rotation(Self::answered_holds(s, issued), in_window)
            }),
            Property::always(P3, |_, s: &State| !s.env.regressed_write),
            Property::always(P4, |_, s: &State| !s.env.stale_send),
            Property::sometimes(S_COMPLETES, |_, s: &State| {
                s.workers.iter().any(|w| {
                    matches!(
                        w.phase,
                        Phase::Finish {
                            kind: FinishKind::Own,
                            ..
                        }
                    )
                })
            }),
            Property::sometimes(S_TAKEOVER, |_, s: &State| {
                s.workers.iter().any(|w| {
                    matches!(
                        w.phase,
                        Phase::Confirm {
                            took_over: true,
                            ..
                        }
                    )
                })
            }),
            Property::sometimes(S_APPLIED, |_, s: &State| {
                s.workers.iter().enumerate().any(|(i, w)| {
                    matches!(
                        w.phase,
                        Phase::Finish { kind: FinishKind::Applied, claim, .. } if claim != i as u8
                    )
                })
            }),
            Property::sometimes(S_REGRESSED, |_, s: &State| {
                s.workers.iter().any(|w| {
                    matches!(w.phase, Phase::ConsumedReread { key } if s.env.row.generation == key)
                })
            }),
            Property::sometimes(S_RESIDUAL, |_, s: &State| s.env.lost.is_some()),
        ]
    }
}

/// Invariant 1.
pub const P1: &str = "1: a generation is redeemed at most once, the grant never revoked";
/// Invariant 2.
pub const P2: &str = "2: an issued generation is stored or in an answered claim";
/// Invariant 3.
pub const P3: &str = "3: a write never replaces a newer generation with an older one";
/// What the re-read after claiming guarantees on its own.
pub const P4: &str = "4: a token is presented only while the account holds it";
/// Reachability: a refresh completes.
pub const S_COMPLETES: &str = "a refresh completes";
/// Reachability: a takeover after an expiry.
pub const S_TAKEOVER: &str = "a worker takes over an expired claim";
/// Reachability: an answer left in a claim is applied by another worker.
pub const S_APPLIED: &str = "an answer left in a claim is applied by another worker";
/// Reachability: a re-imported consumed token is found and refused.
pub const S_REGRESSED: &str = "a re-imported consumed token is refused";
/// Reachability: the residual event (rotation committed, answer lost).
pub const S_RESIDUAL: &str = "the residual risk occurs (rotation committed, answer lost)";

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.env)?;
        for (g, c) in self.claims.iter().enumerate() {
            if let Some(c) = c {
                write!(f, " claim(g{g})={:?}/w{}", c.state, c.id)?;
                if matches!(c.state, ClaimState::Open | ClaimState::Quarantined) {
                    write!(f, " exp@{}", c.expires)?;
                }
            }
        }
        if let Some(w) = self.fast {
            write!(f, " fast=w{w}")?;
        }
        if !self.fast_up {
            write!(f, " fast=DOWN")?;
        }
        if let Some(w) = self.durable {
            write!(f, " durable=w{w}")?;
        }
        for (i, w) in self.workers.iter().enumerate() {
            write!(f, " | w{i}:{:?}", w.phase)?;
        }
        Ok(())
    }
}
