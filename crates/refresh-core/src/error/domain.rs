//! Errors of domain parsing: names and credential values.

/// A stored name that is not a known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// Not a built-in platform nor a valid plugin name.
    #[error(
        "invalid platform name {name:?}: expected anthropic, openai, gemini, antigravity or a plugin name of [a-z0-9_-]{{1,32}}"
    )]
    InvalidPlatform {
        /// The offending name, shortened and made printable.
        name: String,
    },
    /// Not a known value of an enumerated column.
    #[error("invalid {what} {value:?}")]
    InvalidEnum {
        /// Which column.
        what: &'static str,
        /// The offending value, shortened.
        value: String,
    },
    /// An account (to create, import or edit) with a field a store must not
    /// take. Never carries token material.
    #[error("invalid account {field}: {reason}")]
    InvalidAccount {
        /// Which field (`name`, `credentials.expires_at`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A proxy URL that cannot be used. Never carries the password.
    #[error("invalid proxy URL: {reason}")]
    InvalidProxyUrl {
        /// What is wrong with it.
        reason: String,
    },
}

/// A credential map or value that cannot be read. Never carries token
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// `expires_at` looks like unix milliseconds; guessing would be wrong
    /// by a factor of 1000 either way.
    #[error("expires_at {value} looks like unix milliseconds; store unix seconds")]
    MillisecondTimestamp {
        /// The numeric value (not secret).
        value: i64,
    },
    /// `expires_at` is neither unix seconds nor RFC 3339.
    #[error("invalid expires_at: {reason}")]
    InvalidExpiry {
        /// What is wrong with it.
        reason: String,
    },
    /// The credentials JSON is not an object.
    #[error("credentials must be a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// The credentials text is not JSON.
    #[error("credentials are not valid JSON (line {line}, column {column})")]
    InvalidJson {
        /// Line of the syntax error.
        line: usize,
        /// Column of the syntax error.
        column: usize,
    },
}

/// A configuration that would break an invariant, rejected at construction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The lease would lapse during a worst-case refresh (invariant 4).
    #[error("lease ttl {lease_ttl:?} must exceed upstream timeout + persist budget ({required:?})")]
    LeaseTooShort {
        /// Configured lease.
        lease_ttl: std::time::Duration,
        /// Upstream timeout plus persist budget.
        required: std::time::Duration,
    },
    /// A field out of its range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
}
