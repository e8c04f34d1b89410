//! Reading what the user pastes after authorizing (REFERENCE.md §13.1):
//! a bare code, `code#state`, a full callback URL (state in the query or
//! the fragment), `host/path?query`, `?query` or `k=v&...`, with an OAuth
//! `error` read as a refusal.

use refresh_core::{OAuthErrorCode, Secret};

use super::LoginError;

/// The longest text considered.
const MAX_PASTE: usize = 8 * 1024;
/// Code length bounds (CRS validates at least 10 characters).
const CODE_LEN: std::ops::RangeInclusive<usize> = 10..=2048;
/// State length bounds.
const STATE_LEN: std::ops::RangeInclusive<usize> = 1..=512;

/// A pasted authorization response. Holds the code: no `Debug`.
pub(crate) struct Pasted {
    /// The authorization code.
    pub(crate) code: Secret,
    /// The state, when the pasted text carried one.
    pub(crate) state: Option<Secret>,
}

fn invalid(reason: &'static str) -> LoginError {
    LoginError::InvalidPaste { reason }
}

/// Parses `text` (surrounding whitespace and quotes ignored).
///
/// # Errors
/// [`LoginError::AuthorizationDenied`] for a callback with an OAuth
/// `error`; [`LoginError::InvalidPaste`] for anything that is not one of
/// the shapes above or whose code or state has characters or a length no
/// provider uses. The error never contains the text.
pub(crate) fn parse_pasted(text: &str) -> Result<Pasted, LoginError> {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    if text.is_empty() {
        return Err(invalid("it is empty"));
    }
    if text.len() > MAX_PASTE {
        return Err(invalid("it is too long"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains spaces or control characters"));
    }
    let (code, state) = if looks_like_parameters(text) {
        from_parameters(text)?
    } else if text.contains("://") {
        return Err(invalid("the URL has no code parameter"));
    } else {
        split_state(text)
    };
    let (code, state) = match state {
        // `code=a#b` (or `a%23b`): the code carries the state (CPA).
        None => split_state(&code),
        Some(state) => (code, Some(state)),
    };
    if !CODE_LEN.contains(&code.len()) || !code.bytes().all(is_code_byte) {
        return Err(invalid(
            "the code has characters or a length no provider uses",
        ));
    }
    if let Some(state) = &state
        && (!STATE_LEN.contains(&state.len()) || !state.bytes().all(is_code_byte))
    {
        return Err(invalid(
            "the state has characters or a length no provider uses",
        ));
    }
    Ok(Pasted {
        code: Secret::from(code),
        state: state.map(Secret::from),
    })
}

/// The `state` of a callback's query string, when it carries exactly one
/// (not blank).
pub(crate) fn callback_state(query: &str) -> Option<Secret> {
    Parameters::read(query).ok()?.state.map(Secret::from)
}

/// Whether `text` holds query parameters (`code=`, `error=` or
/// `state=`), as opposed to a bare code.
fn looks_like_parameters(text: &str) -> bool {
    ["code=", "error=", "state="].iter().any(|k| {
        text.match_indices(k)
            .any(|(i, _)| i == 0 || matches!(text.as_bytes()[i - 1], b'?' | b'&' | b'#'))
    })
}

/// `a#b` → (`a`, `b`); `a` or `a#` → (`a`, none).
fn split_state(text: &str) -> (String, Option<String>) {
    match text.split_once('#') {
        Some((code, state)) if !state.is_empty() => (code.to_owned(), Some(state.to_owned())),
        Some((code, _)) => (code.to_owned(), None),
        None => (text.to_owned(), None),
    }
}

/// The parameters of a URL, `host/path?query`, `?query` or `k=v&...`:
/// the query first, then the fragment (as parameters, or as a bare state).
fn from_parameters(text: &str) -> Result<(String, Option<String>), LoginError> {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let (before_fragment, fragment) = match after_scheme.split_once('#') {
        Some((head, fragment)) => (head, Some(fragment)),
        None => (after_scheme, None),
    };
    let query = match before_fragment.split_once('?') {
        Some((_, query)) => query,
        // No `?`: `k=v&...`, unless this is a URL whose parameters are in
        // the fragment only.
        None if text.contains("://") => "",
        None => before_fragment,
    };
    let mut found = Parameters::read(query)?;
    match fragment {
        Some(fragment) if fragment.contains('=') => {
            let more = Parameters::read(fragment)?;
            found.code = found.code.or(more.code);
            found.state = found.state.or(more.state);
            found.error = found.error.or(more.error);
        }
        Some(fragment) if !fragment.is_empty() && found.state.is_none() => {
            found.state = Some(fragment.to_owned());
        }
        _ => {}
    }
    if let Some(error) = found.error {
        return Err(LoginError::AuthorizationDenied {
            code: OAuthErrorCode::new(&error),
        });
    }
    let code = found
        .code
        .ok_or_else(|| invalid("it has no code parameter"))?;
    Ok((code, found.state))
}

#[derive(Default)]
struct Parameters {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

impl Parameters {
    /// `code`, `state` and `error` of a form-encoded string; a repeated
    /// one is refused (which value would be meant is unknown).
    fn read(query: &str) -> Result<Self, LoginError> {
        let mut found = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "code" => &mut found.code,
                "state" => &mut found.state,
                "error" => &mut found.error,
                _ => continue,
            };
            if slot.is_some() {
                return Err(invalid("a parameter is repeated"));
            }
            let value = value.trim();
            if !value.is_empty() {
                *slot = Some(value.to_owned());
            }
        }
        Ok(found)
    }
}

/// Characters of codes and states across the four providers: base64url,
/// hex, Google's `4/0A...` codes, percent-decoded padding.
fn is_code_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/' | b'+' | b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "AbC123-_xyz.789~Q";
    const STATE: &str = "St4te-Value_0123456789abcdef";

    fn parsed(text: &str) -> (String, Option<String>) {
        let p = parse_pasted(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (
            p.code.expose().to_owned(),
            p.state.map(|s| s.expose().to_owned()),
        )
    }

    #[test]
    fn every_shape_of_section_13_1() {
        let both = (CODE.to_owned(), Some(STATE.to_owned()));
        let code_only = (CODE.to_owned(), None);
        for (shape, text, want) in [
            ("bare code", CODE.to_owned(), &code_only),
            ("bare code, padded", format!("  {CODE}\n"), &code_only),
            ("bare code, quoted", format!("\"{CODE}\""), &code_only),
            ("code#state", format!("{CODE}#{STATE}"), &both),
            ("code# (empty state)", format!("{CODE}#"), &code_only),
            (
                "callback URL",
                format!("http://localhost:1455/auth/callback?code={CODE}&state={STATE}"),
                &both,
            ),
            (
                "callback URL, state first, other params",
                format!(
                    "https://platform.claude.com/oauth/code/callback?state={STATE}&scope=a+b&code={CODE}"
                ),
                &both,
            ),
            (
                "callback URL, state in the fragment",
                format!("http://localhost:8085/callback?code={CODE}#state={STATE}"),
                &both,
            ),
            (
                "callback URL, bare state fragment",
                format!("http://localhost:54545/callback?code={CODE}#{STATE}"),
                &both,
            ),
            (
                "callback URL, parameters in the fragment only",
                format!("http://localhost:54545/callback#code={CODE}&state={STATE}"),
                &both,
            ),
            (
                "code=a%23b inside a URL",
                format!("https://x.example/cb?code={CODE}%23{STATE}"),
                &both,
            ),
            (
                "URL without state",
                format!("https://codeassist.google.com/authcode?code={CODE}"),
                &code_only,
            ),
            (
                "host/path?query",
                format!("localhost:1455/auth/callback?code={CODE}&state={STATE}"),
                &both,
            ),
            ("?query", format!("?code={CODE}&state={STATE}"), &both),
            ("k=v&...", format!("state={STATE}&code={CODE}"), &both),
        ] {
            assert_eq!(&parsed(&text), want, "{shape}");
        }
    }

    #[test]
    fn google_codes_are_percent_decoded() {
        let (code, state) = parsed(
            "http://localhost:8085/oauth2callback?state=s1&code=4%2F0AeaYSHabcdefghij&scope=x",
        );
        assert_eq!(code, "4/0AeaYSHabcdefghij");
        assert_eq!(state.as_deref(), Some("s1"));
        assert_eq!(parsed("4/0AeaYSHabcdefghij").0, "4/0AeaYSHabcdefghij");
    }

    #[test]
    fn an_oauth_error_is_a_refusal() {
        for text in [
            "http://localhost:1455/auth/callback?error=access_denied&error_description=User+denied&state=x",
            "?error=access_denied",
            "error=access_denied&state=abc",
        ] {
            assert_eq!(
                parse_pasted(text).err(),
                Some(LoginError::AuthorizationDenied {
                    code: OAuthErrorCode::new("access_denied")
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn garbage_is_a_typed_error_that_never_echoes_the_text() {
        for text in [
            "",
            "   ",
            "short",
            "has a space in the middle",
            "line\nbreak-0123456789",
            "https://example.com/no/code/here",
            "http://localhost:1455/auth/callback?state=only",
            "?code=",
            "code=&state=x",
            "?code=abcdefghijkl&code=mnopqrstuvwx",
            "tab\tseparated-0123456789",
            "<script>alert(1)</script>",
            "ünïcödé-çhàrs-0123456789",
            "{\"code\":\"abcdefghijkl\"}",
            &"x".repeat(MAX_PASTE + 1),
            &format!("{CODE}#{}", "s".repeat(600)),
            &format!("{CODE}#bad state"),
        ] {
            let err = parse_pasted(text)
                .err()
                .unwrap_or_else(|| panic!("accepted {text:?}"));
            assert!(
                matches!(err, LoginError::InvalidPaste { .. }),
                "{text:?}: {err:?}"
            );
            let shown = format!("{err} {err:?}");
            if text.trim().len() > 3 {
                assert!(!shown.contains(text.trim()), "{shown}");
            }
        }
    }
}
