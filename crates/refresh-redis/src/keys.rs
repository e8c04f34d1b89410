//! The key layout. Every key of one refresh key carries `{<refresh key>}`
//! (`{k:<refresh key>}`) as its hash tag, so a lease and its fence counter hash to one Redis
//! Cluster slot (a script may only touch keys of one slot). The prefix holds
//! no braces (checked by the configuration), so the tag is the same for all
//! of a refresh key's keys whatever the refresh key holds.

use refresh_core::RefreshKey;

/// Builds keys and channel names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    fn of(&self, kind: &str, key: &RefreshKey) -> String {
        // `k:` keeps the tag non-empty: an empty tag (`{}`) makes Redis hash
        // the whole key, which would split a lease from its fence.
        format!("{}:{kind}:{{k:{}}}", self.prefix, key.as_str())
    }

    /// `<prefix>:lease:{k:<key>}`: the owner token, with the lease's TTL.
    pub(crate) fn lease(&self, key: &RefreshKey) -> String {
        self.of("lease", key)
    }

    /// `<prefix>:fence:{k:<key>}`: the fence counter; never expires.
    pub(crate) fn fence(&self, key: &RefreshKey) -> String {
        self.of("fence", key)
    }

    /// `<prefix>:token:{k:<key>}`: the cached access token (hash `v`, `d`).
    pub(crate) fn token(&self, key: &RefreshKey) -> String {
        self.of("token", key)
    }

    /// `<prefix>:refreshed:{k:<key>}`: the "refreshed" channel.
    pub(crate) fn channel(&self, key: &RefreshKey) -> String {
        self.of("refreshed", key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        &key[open + 1..close]
    }

    #[test]
    fn a_lease_and_its_fence_share_a_hash_tag_whatever_the_key_holds() {
        let keys = Keys::new("oauth-refresh");
        for raw in ["anthropic:account:1", "a}b", "{x}", "", "}", "weird:{{}}"] {
            let key = RefreshKey::from_raw(raw);
            let (lease, fence) = (keys.lease(&key), keys.fence(&key));
            assert_eq!(tag(&lease), tag(&fence), "{lease} / {fence}");
            assert!(!tag(&lease).is_empty(), "{lease}");
            assert!(lease.starts_with("oauth-refresh:lease:{k:"));
        }
    }
}
