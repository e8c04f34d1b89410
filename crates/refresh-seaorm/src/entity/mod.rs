//! SeaORM entities of the tables (see the crate README for the
//! schema). Instants are unix milliseconds in `BIGINT` columns on every
//! backend; `credentials`, `proxy_url`, `answer` and `payload` hold sealed envelopes
//! (or plaintext JSON / URLs when plaintext storage was opted into).

pub mod account;
pub mod claim;
pub mod lease;
pub mod login_session;
