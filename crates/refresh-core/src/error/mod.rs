//! Error types. Every kind decides its own retryability; nothing is
//! classified by matching message text, and no error carries token material.

mod domain;
mod flow;
mod oauth_code;
mod provider;
mod retry_after;
mod storage;
mod token;

pub use domain::{ConfigError, CredentialsError, DomainError};
pub use flow::{FlowError, FlowStage};
pub use oauth_code::{OAuthErrorBody, OAuthErrorCode, redact_token_like, sanitize_description};
pub use provider::ProviderError;
pub use retry_after::{MAX_RETRY_AFTER, parse_retry_after, parse_retry_after_with_date};
pub use storage::{RefreshTokenTaken, StorageError, StorageErrorKind, TokenHolder};
pub use token::TokenError;
