//! Domain types: accounts, credentials, keys and secrets.

mod account;
mod account_id;
mod account_type;
mod credential_change;
mod credentials;
mod expiry;
mod fingerprint;
mod grant;
mod instant;
mod platform;
mod proxy_url;
mod refresh_key;
mod secret;

pub use account::Account;
pub use account_id::AccountId;
pub use account_type::{AccountStatus, AccountType};
pub use credential_change::{ASSUMED_TOKEN_LIFETIME, CredentialChange};
pub use credentials::{Credentials, keys};
pub use expiry::{canonical_expiry, parse_expiry};
pub use fingerprint::Fingerprint;
pub use grant::{ExpiryRule, GrantFields, TokenGrant};
pub use instant::{add_duration, sub_duration};
pub use platform::Platform;
pub use proxy_url::{ProxyScheme, ProxyUrl};
pub use refresh_key::RefreshKey;
pub use secret::Secret;
