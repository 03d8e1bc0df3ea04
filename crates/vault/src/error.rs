//! [`VaultError`]: what went wrong talking to Key Vault, and whether trying again later can help.

/// An error from a vault operation. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The event names a vault outside `KEYTURN_VAULTS`. Nothing was sent anywhere.
    #[error("vault '{vault}' is not in the allow-list (KEYTURN_VAULTS); nothing was sent to it")]
    NotAllowed { vault: String },

    /// An object name Key Vault could not have produced (it would change the request path).
    #[error("'{name}' is not a valid Key Vault object name (1-127 letters, digits and hyphens)")]
    InvalidName { name: String },

    /// A version id Key Vault could not have issued (it would change the request path). Shown cut to 40
    /// characters: it comes from an event, which anyone who can reach the endpoint may write.
    #[error("'{}' is not a Key Vault version id (32 lowercase hexadecimal characters); nothing was sent", version.chars().take(40).collect::<String>())]
    InvalidVersion { version: String },

    /// The vault answered with an error status (after the in-process retries, for retryable ones).
    #[error("{operation} on '{object}': HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Http { operation: &'static str, object: String, status: u16, code: Option<String>, message: String },

    /// The vault could not be reached, or the connection failed mid-request (after the retries).
    #[error("{operation} on '{object}': the vault could not be reached: {message}")]
    Transport { operation: &'static str, object: String, message: String },

    /// No token could be had from the configured credential.
    #[error("{operation} on '{object}': no token from the credential: {message}")]
    Credential { operation: &'static str, object: String, message: String },

    /// The vault's answer lacked something keyturn needs (a version id, a policy).
    #[error("{operation} on '{object}': unexpected response: {message}")]
    Unexpected { operation: &'static str, object: String, message: String },

    /// keyturn's own pacing left this request to a later delivery: the vault's limit for its class of request
    /// (`limit`: "secret-create", "key-create", ...) is booked further ahead than an invocation may wait
    /// (`KEYTURN_PACING_MAX_WAIT_SECS`). Nothing was sent.
    #[error(
        "{operation} on '{object}': the vault's {limit} limit is booked more than {} s ahead; left for a later \
         delivery (paced, nothing sent)",
        max_wait.as_secs()
    )]
    Paced { operation: &'static str, object: String, limit: &'static str, max_wait: std::time::Duration },

    /// Building the clients failed (unreadable CA bundle, bad credential settings).
    #[error("setting up vault access: {0}")]
    Setup(String),
}

impl VaultError {
    /// Whether a later delivery of the same event could succeed: throttling, server errors, timeouts,
    /// network failures and token failures (an identity endpoint that is down, a role assignment still
    /// propagating) are worth Event Grid's redelivery; a refused name, a missing object or a request the
    /// vault rejects as malformed are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Http { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Self::Transport { .. } | Self::Credential { .. } | Self::Paced { .. } => true,
            Self::NotAllowed { .. }
            | Self::InvalidName { .. }
            | Self::InvalidVersion { .. }
            | Self::Unexpected { .. }
            | Self::Setup(_) => false,
        }
    }

    /// The HTTP status the vault answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Classifies an SDK error from `operation` on `object`.
    pub(crate) fn from_sdk(operation: &'static str, object: &str, error: azure_core::Error) -> Self {
        use azure_core::error::ErrorKind;
        let object = object.to_owned();
        match error.kind() {
            ErrorKind::HttpResponse { status, error_code, .. } => Self::Http {
                operation,
                object,
                status: u16::from(*status),
                code: error_code.clone(),
                // An RBAC denial names the data action; say which role would grant it (the message's other
                // lines are ids and boilerplate).
                message: match crate::rbac::explain_forbidden(&error.to_string()) {
                    Some(explained) => format!("{explained} (ForbiddenByRbac)"),
                    None => error.to_string(),
                },
            },
            ErrorKind::Io | ErrorKind::Connection => Self::Transport { operation, object, message: error.to_string() },
            ErrorKind::Credential => Self::Credential { operation, object, message: error.to_string() },
            _ => Self::Unexpected { operation, object, message: error.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::error::ErrorKind;
    use azure_core::http::StatusCode;

    fn http(status: StatusCode) -> VaultError {
        let error = azure_core::Error::with_message(
            ErrorKind::HttpResponse { status, error_code: Some("Code".into()), raw_response: None },
            "service said no",
        );
        VaultError::from_sdk("get secret", "kv/db-password", error)
    }

    #[test]
    fn an_rbac_denial_is_permanent_and_names_the_missing_role() {
        let message = "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=a;oid=o;iss=https://sts.windows.net/t/\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: '/subscriptions/s/resourcegroups/g/providers/microsoft.keyvault/vaults/kv/secrets/db'\r\nAssignment: (not found)\r\n";
        let error = azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status: StatusCode::Forbidden,
                error_code: Some("Forbidden".into()),
                raw_response: None,
            },
            message,
        );
        let error = VaultError::from_sdk("get secret", "kv/db", error);
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(
            text.starts_with("get secret on 'kv/db': HTTP 403 (Forbidden): the identity (appid=a;oid=o;"),
            "{text}"
        );
        assert!(text.contains("may not perform 'Microsoft.KeyVault/vaults/secrets/getSecret/action'"), "{text}");
        assert!(text.contains("missing role: Key Vault Secrets User"), "{text}");
        assert!(text.ends_with("(ForbiddenByRbac)"), "{text}");
    }

    #[test]
    fn throttling_server_errors_and_timeouts_are_retryable_and_client_errors_are_not() {
        for status in [
            StatusCode::TooManyRequests,
            StatusCode::RequestTimeout,
            StatusCode::InternalServerError,
            StatusCode::ServiceUnavailable,
        ] {
            assert!(http(status).is_retryable(), "{status:?}");
        }
        for status in [
            StatusCode::BadRequest,
            StatusCode::Unauthorized,
            StatusCode::Forbidden,
            StatusCode::NotFound,
            StatusCode::Conflict,
        ] {
            assert!(!http(status).is_retryable(), "{status:?}");
        }
    }

    #[test]
    fn transport_and_credential_failures_are_retryable_and_messages_name_the_object() {
        let io = VaultError::from_sdk(
            "set secret",
            "kv/x",
            azure_core::Error::with_message(ErrorKind::Connection, "refused"),
        );
        assert!(io.is_retryable());
        assert!(io.to_string().starts_with("set secret on 'kv/x': the vault could not be reached"), "{io}");
        let token =
            VaultError::from_sdk("set secret", "kv/x", azure_core::Error::with_message(ErrorKind::Credential, "no"));
        assert!(token.is_retryable());
        assert!(!VaultError::NotAllowed { vault: "evil".into() }.is_retryable());
        let http = http(StatusCode::Forbidden);
        assert_eq!(http.status(), Some(403));
        assert!(http.to_string().starts_with("get secret on 'kv/db-password': HTTP 403 (Code)"), "{http}");
    }
}
