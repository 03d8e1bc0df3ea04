//! Reading the Azure Storage SDK's errors, for every keyturn caller of Blob storage (the lock, the sweep's state
//! and dead letters, new-version's refresh record): the HTTP status, the storage error code, and a description
//! that never holds a URL (a SAS query would be a credential).

use azure_core::error::ErrorKind;
use azure_core::http::StatusCode;
use azure_storage_blob::models::StorageErrorCode;

/// The HTTP status of a service answer, if the error is one.
pub fn status(error: &azure_core::Error) -> Option<StatusCode> {
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(*status),
        _ => None,
    }
}

/// The storage error code of a service answer, if it names one (a HEAD's answer has no body, so none).
pub fn code(error: &azure_core::Error) -> Option<StorageErrorCode> {
    match error.kind() {
        // Parsing an error code cannot fail: unknown codes become `UnknownValue`.
        ErrorKind::HttpResponse { error_code: Some(code), .. } => code.parse().ok(),
        _ => None,
    }
}

/// `<operation>: the storage account answered <status> <code>` (or the transport's error): never a URL query.
pub fn describe(operation: &str, error: &azure_core::Error) -> String {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code, .. } => format!(
            "{operation}: the storage account answered {} {}",
            u16::from(*status),
            error_code.as_deref().unwrap_or("(no error code)")
        ),
        _ => format!("{operation}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: StatusCode, code: Option<&str>) -> azure_core::Error {
        azure_core::Error::new(
            ErrorKind::HttpResponse { status, error_code: code.map(str::to_owned), raw_response: None },
            "https://acct.blob.core.windows.net/c/b?sig=secret-sig-1",
        )
    }

    #[test]
    fn status_code_and_description_are_read_without_the_url() {
        let conflict = answered(StatusCode::Conflict, Some("BlobAlreadyExists"));
        assert_eq!(status(&conflict), Some(StatusCode::Conflict));
        assert_eq!(code(&conflict), Some(StorageErrorCode::BlobAlreadyExists));
        assert_eq!(describe("creating", &conflict), "creating: the storage account answered 409 BlobAlreadyExists");
        let head = answered(StatusCode::NotFound, None);
        assert_eq!((status(&head), code(&head)), (Some(StatusCode::NotFound), None));
        assert_eq!(describe("reading", &head), "reading: the storage account answered 404 (no error code)");
        assert!(!describe("reading", &head).contains("secret-sig-1"));
    }
}
