//! What both models share: the store clock, the account row, the upstream
//! token endpoint with its requests in flight, and the verdict bits the
//! properties read.

use std::fmt;

/// A refresh-token generation: `0` is the token the account starts with,
/// `g + 1` the one the upstream issues when it redeems `g`.
pub type Gen = u8;

/// The account row of the repository (credentials only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Row {
    /// The generation of the stored refresh token.
    pub generation: Gen,
    /// `credentials_version`: bumped by every credential write.
    pub version: u8,
}

/// A token request the upstream has not processed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Request {
    /// The generation presented.
    pub generation: Gen,
    /// Store-clock time it was sent.
    pub sent: u8,
    /// The worker still waiting for its answer; `None` once it stopped
    /// waiting (aborted at the hard deadline, crashed).
    pub waiter: Option<u8>,
    /// Sent after a claim on this generation was taken over, expired, after
    /// the generation's rotation had been lost: the documented residual
    /// risk ("R is quarantined, not re-sent, until the claim expires"), so a
    /// re-presentation by it is not a defect.
    pub residual: bool,
}

/// The environment: clock, repository row, upstream, network, verdicts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Env {
    /// The store clock (and every worker's local clock: they run at the
    /// same rate; a pause is a worker not taking steps while it ticks).
    pub now: u8,
    /// The account row.
    pub row: Row,
    /// The upstream's current (latest issued) generation.
    pub issued: Gen,
    /// The upstream revoked the grant (a generation was presented twice).
    pub revoked: bool,
    /// Requests that may still be processed.
    pub requests: Vec<Request>,
    /// The residual event happened for this generation: the upstream
    /// committed its rotation and the answer never reached durable storage
    /// (response lost, processed after the sender stopped waiting, the
    /// holder crashed or stalled past its claim's life while holding it).
    pub lost: Option<Gen>,
    /// The residual event for a consumed mark: a holder crashed, or stalled
    /// longer than its claim's life, between writing the answer of this
    /// generation and marking its open (unanswered) claim consumed, so
    /// nothing records the generation as consumed.
    /// A bit per generation (`1 << g`).
    pub unmarked: u8,
    /// A claim on the lost (or unmarked) generation was taken over after it expired: from
    /// here on, presenting that generation again is the residual risk.
    /// A bit per generation (`1 << g`).
    pub residual_takeover: u8,
    /// A generation was presented again outside the residual risk
    /// (invariant 1 broken).
    pub reuse: bool,
    /// A generation was presented again as the residual risk allows.
    pub residual_reuse: bool,
    /// A token was sent while the row no longer held it (a stale read).
    pub stale_send: bool,
    /// A protocol write replaced a newer generation with an older one
    /// (invariant 3 broken).
    pub regressed_write: bool,
    /// The operator overwrote the row while it held the live generation:
    /// invariant 2 is then the operator's to restore.
    pub operator_destroyed: bool,
}

/// What the upstream answered a processed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A rotation: the new generation.
    Issued(Gen),
    /// `invalid_grant`: the token was already redeemed, or the grant is
    /// revoked.
    Rejected,
}

impl Env {
    /// The initial environment: generation 0 stored at version 1.
    pub fn new() -> Self {
        Self {
            now: 0,
            row: Row {
                generation: 0,
                version: 1,
            },
            issued: 0,
            revoked: false,
            requests: Vec::new(),
            lost: None,
            unmarked: 0,
            residual_takeover: 0,
            reuse: false,
            residual_reuse: false,
            stale_send: false,
            regressed_write: false,
            operator_destroyed: false,
        }
    }

    /// The upstream processes request `index` (removed from the network):
    /// rotates a current generation, revokes the grant on a re-presentation.
    pub fn process(&mut self, index: usize) -> (Request, Answer) {
        let request = self.requests.remove(index);
        let answer = if self.revoked {
            Answer::Rejected
        } else if request.generation == self.issued {
            self.issued += 1;
            Answer::Issued(self.issued)
        } else {
            self.revoked = true;
            if request.residual {
                self.residual_reuse = true;
            } else {
                self.reuse = true;
            }
            Answer::Rejected
        };
        (request, answer)
    }

    /// A claim on `generation` was won by taking over an expired one.
    pub fn took_over(&mut self, generation: Gen) {
        if self.lost == Some(generation) || self.unmarked & (1 << generation) != 0 {
            self.residual_takeover |= 1 << generation;
        }
    }

    /// Whether a request for `generation` sent now is the residual risk.
    pub fn residual(&self, generation: Gen) -> bool {
        self.residual_takeover & (1 << generation) != 0
    }

    /// Records the residual event for `generation` (the first one only).
    pub fn lose(&mut self, generation: Gen) {
        if self.lost.is_none() {
            self.lost = Some(generation);
        }
    }

    /// Records the consumed-mark residual event for `generation`.
    pub fn unmark(&mut self, generation: Gen) {
        self.unmarked |= 1 << generation;
    }

    /// A credential write of the protocol: `generation` at a new version.
    pub fn write(&mut self, generation: Gen) {
        if generation < self.row.generation {
            self.regressed_write = true;
        }
        self.row = Row {
            generation,
            version: self.row.version + 1,
        };
    }

    /// The operator writes an older, consumed generation back (an old
    /// export re-imported, a backup restored) as a normal write.
    pub fn reimport(&mut self, generation: Gen) {
        // Overwriting the live generation destroys the only copy; a token
        // whose consumed mark the residual event lost looks like a fresh
        // grant to the protocol, which may then let the live answer yield
        // to it.
        if self.row.generation == self.issued || self.unmarked & (1 << generation) != 0 {
            self.operator_destroyed = true;
        }
        self.row = Row {
            generation,
            version: self.row.version + 1,
        };
    }

    /// Detaches `worker` from its requests (it stopped waiting).
    pub fn detach(&mut self, worker: u8) {
        for request in &mut self.requests {
            if request.waiter == Some(worker) {
                request.waiter = None;
            }
        }
    }

    /// Drops the requests whose processing window (`window` units after
    /// sending) has passed.
    pub fn expire_requests(&mut self, window: u8) {
        let now = self.now;
        self.requests.retain(|r| now < r.sent + window);
    }

    /// Invariant 1: no generation was presented twice in requests the
    /// upstream processed, and the grant was never revoked, except as the
    /// residual risk allows.
    pub fn one_redemption_per_generation(&self) -> bool {
        !self.reuse && (!self.revoked || self.residual_reuse)
    }

    /// Invariant 2 given whether a durable copy (`durable_copy`) or a holder
    /// inside the answer window (`in_window`) holds the issued generation.
    pub fn no_lost_rotation(&self, durable_copy: bool, in_window: bool) -> bool {
        self.lost.is_some()
            || self.operator_destroyed
            || self.row.generation >= self.issued
            || durable_copy
            || in_window
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "t={} row=g{}@v{} upstream=g{}{}",
            self.now,
            self.row.generation,
            self.row.version,
            self.issued,
            if self.revoked { " REVOKED" } else { "" }
        )?;
        for r in &self.requests {
            match r.waiter {
                Some(w) => write!(f, " req(g{} from w{w} @{})", r.generation, r.sent)?,
                None => write!(f, " req(g{} orphaned @{})", r.generation, r.sent)?,
            }
        }
        if let Some(g) = self.lost {
            write!(f, " [rotation of g{g} lost: residual]")?;
        }
        for g in (0..8).filter(|g| self.unmarked & (1 << g) != 0) {
            write!(f, " [consumed mark of g{g} lost: residual]")?;
        }
        Ok(())
    }
}
