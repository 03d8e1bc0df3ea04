//! The emulator's one error enum, and its single mapping to Key Vault's wire shape
//! `{"error":{"code":..,"message":..,"innererror":{"code":..}}}`.

use super::crypto::CryptoError;
use super::server::{self, ServerResponse};
use super::store::StoredKind;
use http::StatusCode;
use serde::Serialize;

/// Everything an emulated Key Vault operation can refuse, phrased as the service phrases it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("A {} with (name/id) {} was not found in this key vault. If you recently deleted this {} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", kind.lower(), name_and_version(.name, .version.as_deref()), kind.lower())]
    NotFound { kind: StoredKind, name: String, version: Option<String> },
    #[error("Deleted {} not found", kind.title())]
    DeletedNotFound { kind: StoredKind, name: String },
    #[error("Operation {operation} is not allowed on a disabled {}.", kind.lower())]
    Disabled { kind: StoredKind, operation: &'static str },
    #[error("{} {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the {} can only be recovered or purged.", kind.title(), kind.lower())]
    NameInDeletedState { kind: StoredKind, name: String },
    #[error("{} {name} already exists, so the deleted {} cannot be recovered over it.", kind.title(), kind.lower())]
    AlreadyExists { kind: StoredKind, name: String },
    #[error("{} {name} already exists, so the backup cannot be restored over it.", kind.title())]
    RestoreConflict { kind: StoredKind, name: String },
    #[error("{0}")]
    BadParameter(String),
    #[error("{0}")]
    Forbidden(String),
    /// An RBAC denial; the message is the service's multi-line text (see `crate::keyvault::http`).
    #[error("{0}")]
    ForbiddenByRbac(String),
    #[error("{0}")]
    NotSupported(String),
    #[error("Pending certificate not found: {name}")]
    PendingNotFound { name: String },
    #[error("Vault '{0}' is not served by this emulator.")]
    NoSuchVault(String),
    #[error("Key material could not be generated: {0}")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Internal(String),
}

fn name_and_version(name: &str, version: Option<&str>) -> String {
    match version {
        Some(version) => format!("{name}/{version}"),
        None => name.to_string(),
    }
}

impl ServiceError {
    /// HTTP status, as the service answers.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound { .. }
            | Self::DeletedNotFound { .. }
            | Self::PendingNotFound { .. }
            | Self::NoSuchVault(_) => StatusCode::NOT_FOUND,
            Self::Disabled { .. } | Self::Forbidden(_) | Self::ForbiddenByRbac(_) => StatusCode::FORBIDDEN,
            Self::NameInDeletedState { .. } | Self::AlreadyExists { .. } | Self::RestoreConflict { .. } => {
                StatusCode::CONFLICT
            }
            Self::BadParameter(_) => StatusCode::BAD_REQUEST,
            Self::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Crypto(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error.code` member.
    pub fn code(&self) -> String {
        match self {
            Self::NotFound { kind, .. } | Self::DeletedNotFound { kind, .. } => format!("{}NotFound", kind.title()),
            Self::PendingNotFound { .. } => "PendingCertificateNotFound".into(),
            Self::NoSuchVault(_) => "VaultNotFound".into(),
            Self::Disabled { .. } | Self::Forbidden(_) | Self::ForbiddenByRbac(_) => "Forbidden".into(),
            Self::NameInDeletedState { .. } | Self::AlreadyExists { .. } | Self::RestoreConflict { .. } => {
                "Conflict".into()
            }
            Self::BadParameter(_) => "BadParameter".into(),
            Self::NotSupported(_) => "NotImplemented".into(),
            Self::Crypto(_) | Self::Internal(_) => "InternalServerError".into(),
        }
    }

    /// The `error.innererror.code` member, where the service sends one.
    pub fn inner_code(&self) -> Option<String> {
        match self {
            Self::Disabled { kind, .. } => Some(format!("{}Disabled", kind.title())),
            Self::ForbiddenByRbac(_) => Some("ForbiddenByRbac".into()),
            _ => None,
        }
    }

    /// The response the service would send.
    pub fn to_response(&self) -> ServerResponse {
        let code = self.code();
        let inner = self.inner_code();
        let message = self.to_string();
        error_response(self.status(), &code, &message, inner.as_deref())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    innererror: Option<InnerError<'a>>,
}

#[derive(Serialize)]
struct InnerError<'a> {
    code: &'a str,
}

/// `{"error":{"code","message"[,"innererror":{"code"}]}}` with `status`.
pub fn error_response(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> ServerResponse {
    let body = ErrorBody { error: ErrorDetail { code, message, innererror: inner.map(|code| InnerError { code }) } };
    server::json_response(status, &body)
}
