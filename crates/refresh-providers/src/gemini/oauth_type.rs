//! [`OAuthType`]: which Google product a Gemini account uses.

use std::fmt;

use refresh_core::Credentials;

/// A Gemini account's OAuth type (credential `oauth_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OAuthType {
    /// Google Cloud Code Assist via the built-in Gemini CLI client;
    /// needs a `project_id` (discovered when missing).
    CodeAssist,
    /// A personal Google account on the built-in client; the tier comes
    /// from the Drive storage quota.
    GoogleOne,
    /// The Generative Language API over OAuth, on the operator's client
    /// when one is configured.
    AiStudio,
}

/// Why an account's OAuth type cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OAuthTypeError {
    /// `oauth_type` is none of `code_assist`, `google_one`, `ai_studio`.
    #[error("unknown Gemini oauth_type {0:?}: expected code_assist, google_one or ai_studio")]
    Unknown(String),
    /// `oauth_type` is empty and there is no `project_id`: the account
    /// could be Code Assist or AI Studio (REFERENCE.md §2.3).
    #[error(
        "Gemini oauth_type is empty and no project_id is set: code_assist or ai_studio is ambiguous; set oauth_type"
    )]
    Ambiguous,
}

impl OAuthType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CodeAssist => "code_assist",
            Self::GoogleOne => "google_one",
            Self::AiStudio => "ai_studio",
        }
    }

    /// The one derivation used by the refresh and the request path: the
    /// trimmed `oauth_type` (case-insensitive); an empty one means
    /// `code_assist` when a `project_id` is set.
    ///
    /// # Errors
    /// [`OAuthTypeError::Unknown`] for another value,
    /// [`OAuthTypeError::Ambiguous`] for an empty one without a project.
    pub fn of(credentials: &Credentials) -> Result<Self, OAuthTypeError> {
        let raw = credentials.string_view("oauth_type");
        match raw.trim().to_ascii_lowercase().as_str() {
            "code_assist" => Ok(Self::CodeAssist),
            "google_one" => Ok(Self::GoogleOne),
            "ai_studio" => Ok(Self::AiStudio),
            "" if !credentials.string_view("project_id").trim().is_empty() => Ok(Self::CodeAssist),
            "" => Err(OAuthTypeError::Ambiguous),
            other => Err(OAuthTypeError::Unknown(other.chars().take(32).collect())),
        }
    }
}

impl fmt::Display for OAuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of(v: serde_json::Value) -> Result<OAuthType, OAuthTypeError> {
        OAuthType::of(&Credentials::try_from(v).unwrap())
    }

    #[test]
    fn one_derivation_for_every_case() {
        assert_eq!(
            of(json!({"oauth_type": "code_assist"})),
            Ok(OAuthType::CodeAssist)
        );
        assert_eq!(
            of(json!({"oauth_type": " Google_One "})),
            Ok(OAuthType::GoogleOne)
        );
        assert_eq!(
            of(json!({"oauth_type": "ai_studio"})),
            Ok(OAuthType::AiStudio)
        );
        assert_eq!(
            of(json!({"oauth_type": "", "project_id": "p"})),
            Ok(OAuthType::CodeAssist)
        );
        assert_eq!(of(json!({})), Err(OAuthTypeError::Ambiguous));
        assert_eq!(
            of(json!({"project_id": "  "})),
            Err(OAuthTypeError::Ambiguous)
        );
        assert_eq!(
            of(json!({"oauth_type": "vertex"})),
            Err(OAuthTypeError::Unknown("vertex".into()))
        );
        assert_eq!(
            of(json!({"oauth_type": 7})),
            Err(OAuthTypeError::Unknown("7".into()))
        );
    }
}
