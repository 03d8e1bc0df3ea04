//! [`ArmClient`]: calls to Azure Resource Manager made by hand over azure_core's pipeline, with the handler's own
//! credential, transport and bounded retry policy (the same as the Key Vault clients'). The Azure SDK for Rust
//! 1.x has no management clients, so every keyturn caller of Resource Manager (the storage account keys
//! provider, the `new-version` handler's consumer refresh) goes through this one place.
//!
//! Bodies are never quoted in errors: some (key lists) hold credentials.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::error::{CheckSuccessOptions, ErrorKind};
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, Url};

/// A failed Resource Manager call: what was being done, why, and whether a later attempt may succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ArmCallError {
    /// `<what was being done>: <why>`, without any response body.
    pub message: String,
    /// The HTTP status, when Resource Manager answered.
    pub status: Option<u16>,
    /// Resource Manager's error code, when it named one (`AuthorizationFailed`, `ResourceNotFound`, ...).
    pub code: Option<String>,
    /// Worth a retry: throttled (408/429), a server error, or Resource Manager unreachable.
    pub retryable: bool,
}

/// Resource Manager at one endpoint, with one credential.
#[derive(Clone)]
pub struct ArmClient {
    endpoint: Url,
    pipeline: Pipeline,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient").field("endpoint", &self.endpoint.as_str()).finish_non_exhaustive()
    }
}

impl ArmClient {
    /// Calls Resource Manager at `endpoint` (`KEYTURN_ARM_ENDPOINT`) with tokens from `credential`, over the
    /// transport and retry policy of `options`.
    pub fn new(endpoint: Url, credential: Arc<dyn TokenCredential>, options: ClientOptions) -> Self {
        let scope = crate::provider::token_scope(&endpoint, "https://management.azure.com/.default");
        let auth = Arc::new(BearerTokenAuthorizationPolicy::new(credential, [scope]));
        let pipeline = Pipeline::new(
            option_env!("CARGO_PKG_NAME"),
            option_env!("CARGO_PKG_VERSION"),
            options,
            Vec::new(),
            vec![auth],
            None,
        );
        Self { endpoint, pipeline }
    }

    /// The endpoint calls go to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// `method {path}?api-version={api_version}` with a JSON `body`; the response body when the status is one of
    /// `success` (any 2xx when empty). `doing` names the call in errors ("listKeys on <account>").
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<&str>,
        success: &'static [u16],
        doing: &str,
    ) -> Result<Vec<u8>, ArmCallError> {
        let mut url = self.endpoint.clone();
        url.set_path(path);
        url.query_pairs_mut().clear().append_pair("api-version", api_version);
        self.send_to(url, method, body, success, doing).await
    }

    /// `GET` a list's `nextLink` (it carries its own api-version and skip token). Only a link on the endpoint's
    /// own origin is followed: the request carries the identity's token, which must never go elsewhere.
    pub async fn follow(&self, link: &str, doing: &str) -> Result<Vec<u8>, ArmCallError> {
        let refuse = || ArmCallError {
            message: format!("{doing}: the next page is not on {}", self.endpoint.origin().ascii_serialization()),
            status: None,
            code: None,
            retryable: false,
        };
        let url = Url::parse(link).map_err(|_| refuse())?;
        if url.origin() != self.endpoint.origin() {
            return Err(refuse());
        }
        self.send_to(url, Method::Get, None, &[200], doing).await
    }

    async fn send_to(
        &self,
        url: Url,
        method: Method,
        body: Option<&str>,
        success: &'static [u16],
        doing: &str,
    ) -> Result<Vec<u8>, ArmCallError> {
        let mut request = Request::new(url, method);
        request.insert_header("accept", "application/json");
        if let Some(body) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(body.as_bytes().to_vec());
        } else if method == Method::Post {
            // Resource Manager wants a length on a POST, even an empty one.
            request.set_body(Vec::new());
        }
        let options =
            PipelineSendOptions { check_success: CheckSuccessOptions { success_codes: success }, ..Default::default() };
        let response = self.pipeline.send(&Context::new(), &mut request, Some(options)).await.map_err(|e| {
            let fail = |message: String, status: Option<u16>, retryable: bool| ArmCallError {
                message: format!("{doing}: {message}"),
                status,
                code: match e.kind() {
                    ErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
                    _ => None,
                },
                retryable,
            };
            match e.kind() {
                ErrorKind::HttpResponse { status, error_code, .. } => {
                    let status = u16::from(*status);
                    let code = error_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
                    fail(format!("HTTP {status}{code}: {e}"), Some(status), matches!(status, 408 | 429 | 500..=599))
                }
                ErrorKind::Io | ErrorKind::Connection | ErrorKind::Credential => {
                    fail(format!("Resource Manager could not be reached: {e}"), None, true)
                }
                _ => fail(e.to_string(), None, false),
            }
        })?;
        Ok(response.body().as_ref().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use crate::provider::token_scope;
    use azure_core::http::Url;

    #[test]
    fn the_token_scope_follows_the_endpoint_except_on_loopback() {
        let scope = |u: &str| token_scope(&Url::parse(u).unwrap(), "https://management.azure.com/.default");
        assert_eq!(scope("https://management.azure.com"), "https://management.azure.com/.default");
        assert_eq!(scope("https://management.chinacloudapi.cn/"), "https://management.chinacloudapi.cn/.default");
        assert_eq!(scope("https://127.0.0.1:8444"), "https://management.azure.com/.default");
    }
}
