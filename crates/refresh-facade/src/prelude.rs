//! `use refresh_facade::prelude::*;`: what an application needs to build a
//! stack, import accounts and hand out tokens.

pub use crate::{RefreshStack, StackError};
pub use refresh_core::{
    AccessToken, Account, AccountCatalog, AccountId, AccountStatus, AccountType, BackgroundConfig,
    Credentials, FlowConfig, NewAccount, Platform, RefreshOutcome, Secret, TokenError,
};
pub use refresh_providers::ProvidersConfig;
#[cfg(feature = "redis")]
pub use refresh_redis::RedisConfig;
pub use refresh_seaorm::{Sealing, SealingKey};
pub use tokio_util::sync::CancellationToken;
