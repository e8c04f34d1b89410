//! `RedisTokenCache::with_sealer`: the cached payload is sealed and bound
//! to its key; Redis never holds the access token in clear.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Deployment, backend, delete_prefix, server_url};
use refresh_core::ports::{CachedToken, SealError, Sealer, TokenCache};
use refresh_core::{RefreshKey, StorageErrorKind};

const TOKEN: &str = "at-sealed-SECRET-0123456789";

/// A test sealer: XOR with a key byte, bound to the context by a prefix.
/// Not cryptography; it shows the cache seals, binds and opens.
#[derive(Debug)]
struct XorSealer(u8);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sealer for XorSealer {
    fn current_key_id(&self) -> &str {
        "xor"
    }
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<String, SealError> {
        let body: Vec<u8> = plaintext.iter().map(|b| b ^ self.0).collect();
        Ok(format!("{}.{}.{}", self.0, hex(context), hex(&body)))
    }
    fn open(&self, envelope: &str, context: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut parts = envelope.split('.');
        let (Some(key), Some(ctx), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SealError::Malformed { reason: "parts" });
        };
        if key != self.0.to_string() || ctx != hex(context) {
            return Err(SealError::Rejected);
        }
        (0..body.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&body[i..i + 2], 16)
                    .map(|b| b ^ self.0)
                    .map_err(|_| SealError::Malformed { reason: "hex" })
            })
            .collect()
    }
    fn is_current(&self, envelope: &str) -> bool {
        envelope.starts_with(&format!("{}.", self.0))
    }
}

fn key(name: &str) -> RefreshKey {
    RefreshKey::from_raw(format!("anthropic:account:{name}"))
}

async fn raw_payload(prefix: &str, key: &RefreshKey) -> Vec<u8> {
    let client = redis::Client::open(server_url().as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HGET")
        .arg(format!("{prefix}:token:{{k:{}}}", key.as_str()))
        .arg("d")
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn a_sealed_cache_never_holds_the_token_in_clear_and_binds_it_to_its_key() {
    let redis = backend(Deployment::Single, "sealed").await;
    let prefix = redis.config().key_prefix.clone();
    let cache = redis.token_cache().with_sealer(Arc::new(XorSealer(0x5a)));
    let token = CachedToken {
        access_token: TOKEN.into(),
        version: 3,
        expires_at: None,
    };
    cache
        .put(&key("1"), &token, Duration::from_secs(60))
        .await
        .unwrap();

    let stored = raw_payload(&prefix, &key("1")).await;
    let stored_text = String::from_utf8_lossy(&stored);
    assert!(!stored_text.contains("SECRET"), "{stored_text}");
    assert_eq!(cache.get(&key("1")).await.unwrap(), Some(token.clone()));

    // Another key (the payload copied over), another sealer key, and an
    // unsealed reader: none opens it.
    let client = redis::Client::open(server_url().as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:token:{{k:{}}}", key("2").as_str()))
        .arg("v")
        .arg("3")
        .arg("d")
        .arg(&stored)
        .query_async(&mut conn)
        .await
        .unwrap();
    let moved = cache.get(&key("2")).await.unwrap_err();
    assert_eq!(moved.kind(), StorageErrorKind::InvalidData);
    let other_key = redis.token_cache().with_sealer(Arc::new(XorSealer(0x11)));
    let wrong = other_key.get(&key("1")).await.unwrap_err();
    assert_eq!(wrong.kind(), StorageErrorKind::InvalidData);
    assert!(!format!("{moved} {moved:?} {wrong} {wrong:?}").contains("SECRET"));
    let unsealed = redis.token_cache().get(&key("1")).await;
    assert!(unsealed.is_err(), "an unsealed reader cannot decode it");

    delete_prefix(Deployment::Single, &prefix).await;
}
