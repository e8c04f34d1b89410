//! [`ProxyUrl`]: the validated per-account proxy every upstream call of an
//! account goes through.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DomainError;

/// The proxy protocols an executor can route through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyScheme {
    /// `http://`: HTTP CONNECT to the proxy over plain TCP.
    Http,
    /// `https://`: HTTP CONNECT to the proxy over TLS.
    Https,
    /// `socks5://`: SOCKS5, host names resolved locally.
    Socks5,
    /// `socks5h://`: SOCKS5, host names resolved by the proxy.
    Socks5h,
}

impl ProxyScheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Socks5 => "socks5",
            Self::Socks5h => "socks5h",
        }
    }

    fn parse(scheme: &str) -> Option<Self> {
        [Self::Http, Self::Https, Self::Socks5, Self::Socks5h]
            .into_iter()
            .find(|s| s.as_str() == scheme)
    }
}

/// A proxy URL: `http`, `https`, `socks5` or `socks5h`, with a host, an
/// optional port and optional credentials, and nothing else (no path, query
/// or fragment).
///
/// `Debug` and `Display` print the URL with the password replaced by
/// `[redacted]`; the whole URL, password included, is reachable only through
/// [`expose`](Self::expose), for the HTTP client and for storage
/// (serialization writes it whole, like [`Secret`](super::Secret)).
///
/// ```
/// use refresh_core::domain::{ProxyScheme, ProxyUrl};
///
/// let proxy: ProxyUrl = "socks5://bob:hunter2@10.0.0.7:1080".parse().unwrap();
/// assert_eq!(proxy.scheme(), ProxyScheme::Socks5);
/// assert_eq!(proxy.to_string(), "socks5://bob:[redacted]@10.0.0.7:1080");
/// assert!("ftp://10.0.0.7".parse::<ProxyUrl>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl {
    /// Shared: an `Account` stays small and clones cheaply.
    url: Arc<url::Url>,
    scheme: ProxyScheme,
}

impl ProxyUrl {
    /// Parses and validates `text` (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`DomainError::InvalidProxyUrl`] for text that is not a URL, a scheme
    /// other than `http`, `https`, `socks5`, `socks5h`, a missing host, or a
    /// path, query or fragment. The error never contains the password.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let invalid = |reason: &str| DomainError::InvalidProxyUrl {
            reason: reason.to_owned(),
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.len() > MAX_PROXY_URL_BYTES {
            return Err(invalid("longer than 2048 bytes"));
        }
        if !text.contains("://") {
            return Err(invalid(
                "missing scheme: expected http://, https://, socks5:// or socks5h://",
            ));
        }
        let url = url::Url::parse(text).map_err(|e| DomainError::InvalidProxyUrl {
            reason: e.to_string(),
        })?;
        let scheme =
            ProxyScheme::parse(url.scheme()).ok_or_else(|| DomainError::InvalidProxyUrl {
                reason: format!(
                    "unsupported scheme {:?}: expected http, https, socks5 or socks5h",
                    shorten(url.scheme())
                ),
            })?;
        match url.host_str() {
            None | Some("") => return Err(invalid("missing host")),
            // Non-special schemes (socks5) keep "opaque" hosts: a host an
            // HTTP client cannot read back may be dropped silently, and
            // the request then goes direct (REFERENCE.md defect 16). Only
            // a domain name or an IP literal is a host.
            Some(host) if !is_plain_host(host) => {
                return Err(invalid(
                    "the host must be a domain name or an IP address (no escapes)",
                ));
            }
            Some(_) => {}
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "a proxy URL holds scheme, credentials, host and port only",
            ));
        }
        Ok(Self {
            url: Arc::new(url),
            scheme,
        })
    }

    /// The protocol.
    pub fn scheme(&self) -> ProxyScheme {
        self.scheme
    }

    /// The proxy host (an IPv6 address in brackets).
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The port, explicit or the scheme's default (`http` 80, `https` 443,
    /// SOCKS 1080).
    pub fn port(&self) -> u16 {
        self.url.port().unwrap_or(match self.scheme {
            ProxyScheme::Http => 80,
            ProxyScheme::Https => 443,
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => 1080,
        })
    }

    /// Whether the URL carries a user name or password.
    pub fn has_credentials(&self) -> bool {
        !self.url.username().is_empty() || self.url.password().is_some()
    }

    /// The whole URL, password included. Call this only where it leaves the
    /// process (the HTTP client, a storage write), never to format it.
    pub fn expose(&self) -> &str {
        self.url.as_str()
    }
}

/// The longest proxy URL accepted, in bytes.
const MAX_PROXY_URL_BYTES: usize = 2048;

/// A domain name (letters, digits, `-`, `_`, `.`) or a bracketed IPv6 or
/// dotted IPv4 literal.
fn is_plain_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn shorten(text: &str) -> String {
    text.chars().take(16).collect()
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.url.password().is_none() {
            return f.write_str(self.url.as_str().trim_end_matches('/'));
        }
        let mut shown = (*self.url).clone();
        // Infallible for URLs with a host, which `parse` requires.
        let _ = shown.set_password(Some("[redacted]"));
        f.write_str(
            shown
                .as_str()
                .replace("%5Bredacted%5D", "[redacted]")
                .trim_end_matches('/'),
        )
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

impl FromStr for ProxyUrl {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for ProxyUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for ProxyUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_four_schemes_with_default_ports() {
        for (text, scheme, port) in [
            ("http://proxy.local", ProxyScheme::Http, 80),
            ("https://proxy.local:8443", ProxyScheme::Https, 8443),
            ("socks5://127.0.0.1", ProxyScheme::Socks5, 1080),
            ("socks5h://[::1]:9050/", ProxyScheme::Socks5h, 9050),
            ("  HTTP://Proxy.Local:3128  ", ProxyScheme::Http, 3128),
        ] {
            let proxy = ProxyUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(proxy.scheme(), scheme, "{text}");
            assert_eq!(proxy.port(), port, "{text}");
        }
    }

    #[test]
    fn rejects_everything_else_with_a_typed_error() {
        for text in [
            "",
            "   ",
            "proxy.local:3128",
            "ftp://proxy.local",
            "socks4://proxy.local",
            "file:///etc/passwd",
            "http://",
            "http://proxy.local/path",
            "http://proxy.local/?a=b",
            "http://proxy.local/#frag",
            "http://pro xy.local",
            "http://proxy.local:99999",
            "socks5://proxy%2Eexample.com:1080",
            "socks5h://u:pw@ho%20st:1080",
            "socks5://ex{ample:1080",
            "socks5://a..b:1080",
            "socks5://[not-v6]:1080",
        ] {
            let error = ProxyUrl::parse(text).expect_err(text);
            assert!(
                matches!(error, DomainError::InvalidProxyUrl { .. }),
                "{text}: {error:?}"
            );
        }
    }

    #[test]
    fn an_overlong_url_is_refused() {
        let long = format!("socks5://{}.example:1080", "a".repeat(4000));
        assert!(matches!(
            ProxyUrl::parse(&long),
            Err(DomainError::InvalidProxyUrl { .. })
        ));
        let ok = ProxyUrl::parse("socks5://under_score-1.example.com:1080").unwrap();
        assert_eq!(ok.host(), "under_score-1.example.com");
    }

    #[test]
    fn invariant_9_the_password_never_shows() {
        let proxy = ProxyUrl::parse("http://alice:s3cr3t-pass@proxy.local:3128").unwrap();
        let shown = format!("{proxy} {proxy:?}");
        assert!(!shown.contains("s3cr3t-pass"), "{shown}");
        assert_eq!(
            proxy.to_string(),
            "http://alice:[redacted]@proxy.local:3128"
        );
        assert!(proxy.expose().contains("s3cr3t-pass"));
        assert!(proxy.has_credentials());
        // Errors of a bad URL never carry the password either.
        let error = ProxyUrl::parse("gopher://alice:s3cr3t-pass@proxy.local").unwrap_err();
        assert!(!error.to_string().contains("s3cr3t-pass"), "{error}");
        let error = ProxyUrl::parse("http://alice:s3cr3t-pass@proxy.local/x").unwrap_err();
        assert!(!error.to_string().contains("s3cr3t-pass"), "{error}");
    }

    #[test]
    fn serializes_whole_and_validates_on_deserialize() {
        let proxy = ProxyUrl::parse("socks5h://u:p@10.1.2.3:1080").unwrap();
        let json = serde_json::to_string(&proxy).unwrap();
        assert_eq!(json, r#""socks5h://u:p@10.1.2.3:1080""#);
        assert_eq!(serde_json::from_str::<ProxyUrl>(&json).unwrap(), proxy);
        assert!(serde_json::from_str::<ProxyUrl>(r#""ftp://x""#).is_err());
    }
}
