//! [`LoginOutcome`]: the account a completed login creates.

use std::fmt;

use refresh_core::{Account, AccountId, AccountType, Credentials, Platform, ProxyUrl};
use serde_json::{Map, Value};

/// The account a completed login creates, before it is stored: the
/// fields of the catalog's new-account record (status `active`, priority
/// 0 are the catalog's defaults). `credentials` are in core's canonical
/// encoding (`expires_at` decimal unix seconds).
///
/// `Debug` redacts the credentials' token values and shows only the keys
/// of `extra` (which may hold an email).
#[derive(Clone, PartialEq)]
pub struct LoginOutcome {
    /// The name: the one the operator chose, else the email, else
    /// `<platform>-<first 8 characters of the session id>`.
    pub name: String,
    /// The platform.
    pub platform: Platform,
    /// `oauth`, or Claude's `setup-token`.
    pub account_type: AccountType,
    /// Token material and the keys the executor reads.
    pub credentials: Credentials,
    /// Non-secret identity and metadata (emails, organization ids, Drive
    /// quota).
    pub extra: Map<String, Value>,
    /// The proxy the login went through; the account keeps it.
    pub proxy: Option<ProxyUrl>,
    /// Post-login steps that failed without failing the login (e.g. a
    /// Code Assist project not found yet: the refresh retries it). Short
    /// texts without tokens or bodies.
    pub warnings: Vec<String>,
}

impl LoginOutcome {
    /// The account this outcome becomes under `id` (version 0, active,
    /// `expires_at` derived from the credentials). For tests and tools
    /// without a catalog.
    pub fn into_account(self, id: impl Into<AccountId>) -> Account {
        let mut account = Account::new(id, self.platform, self.account_type, self.credentials);
        account.name = self.name;
        account.extra = self.extra;
        account.proxy = self.proxy;
        account
    }
}

impl fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginOutcome")
            .field("platform", &self.platform)
            .field("account_type", &self.account_type)
            .field("credentials", &self.credentials)
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .field("proxy", &self.proxy)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}
