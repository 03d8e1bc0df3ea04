//! The two Resource Manager calls the Azure key family makes (`POST {resource id}/{action}?api-version=...`), by
//! hand over azure_core's pipeline: the Azure SDK 1.x has no Rust management SDK for these resource providers.
//! Same credential, transport and bounded retry policy as the Key Vault clients.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::error::{CheckSuccessOptions, ErrorKind};
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, Url};

use crate::provider::ProviderError;

/// A Resource Manager client for the family's list and regenerate calls.
#[derive(Clone)]
pub struct ArmClient {
    endpoint: Url,
    pipeline: Pipeline,
    /// The provider name its errors carry.
    provider: &'static str,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient").field("endpoint", &self.endpoint.as_str()).finish_non_exhaustive()
    }
}

/// The custom role infra/roles.json defines for the family's calls, named when Resource Manager refuses one.
pub const KEY_OPERATOR_ROLE: &str = "keyturn key operator";

/// What a call answers on success.
const LIST_SUCCESS: &[u16] = &[200];
/// Regenerations answer 200 (with the keys) or, for Cosmos DB's long-running operation, 202 (nothing yet).
const REGENERATE_SUCCESS: &[u16] = &[200, 202, 204];

impl ArmClient {
    /// Calls Resource Manager at `endpoint` (`KEYTURN_ARM_ENDPOINT`) with `credential`, for the provider `provider`.
    pub fn new(
        provider: &'static str,
        endpoint: Url,
        credential: Arc<dyn TokenCredential>,
        options: ClientOptions,
    ) -> Self {
        let scope = scope_for(&endpoint);
        let auth = Arc::new(BearerTokenAuthorizationPolicy::new(credential, [scope]));
        let pipeline = Pipeline::new(
            option_env!("CARGO_PKG_NAME"),
            option_env!("CARGO_PKG_VERSION"),
            options,
            Vec::new(),
            vec![auth],
            None,
        );
        Self { endpoint, pipeline, provider }
    }

    /// The same client, its errors naming `provider`.
    pub fn for_provider(&self, provider: &'static str) -> Self {
        Self { provider, ..self.clone() }
    }

    /// `POST {resource}/{action}?api-version={api_version}`: the resource's keys, parsed as JSON. The body is never
    /// quoted in an error (it holds keys).
    pub async fn list(
        &self,
        resource: &str,
        action: &str,
        api_version: &str,
    ) -> Result<serde_json::Value, ProviderError> {
        let body = self.post(resource, action, api_version, None, LIST_SUCCESS).await?;
        serde_json::from_slice(&body)
            .map_err(|_| self.error(format!("{action} on {resource}: the response is not a key list"), false))
    }

    /// `POST {resource}/{path}?api-version={api_version}` with `body`: regenerates a key. What it answers is not
    /// read (some services answer nothing, Cosmos DB only starts an operation): the caller lists the keys after.
    pub async fn regenerate(
        &self,
        resource: &str,
        path: &str,
        api_version: &str,
        body: Option<String>,
    ) -> Result<(), ProviderError> {
        self.post(resource, path, api_version, body, REGENERATE_SUCCESS).await.map(drop)
    }

    async fn post(
        &self,
        resource: &str,
        action: &str,
        api_version: &str,
        body: Option<String>,
        success_codes: &'static [u16],
    ) -> Result<Vec<u8>, ProviderError> {
        let mut url = self.endpoint.clone();
        url.set_path(&format!("{}/{action}", resource.trim_end_matches('/')));
        url.query_pairs_mut().clear().append_pair("api-version", api_version);
        let mut request = Request::new(url, Method::Post);
        request.insert_header("accept", "application/json");
        request.insert_header("content-type", "application/json");
        request.set_body(body.unwrap_or_default().into_bytes());
        let options =
            PipelineSendOptions { check_success: CheckSuccessOptions { success_codes }, ..Default::default() };
        let doing = format!("{action} on {resource}");
        let response =
            self.pipeline.send(&Context::new(), &mut request, Some(options)).await.map_err(|e| match e.kind() {
                ErrorKind::HttpResponse { status, error_code, .. }
                    if u16::from(*status) == 403 && error_code.as_deref() == Some("AuthorizationFailed") =>
                {
                    // Permanent: a redelivery cannot grant a role. The deployment does, per bound resource.
                    self.error(
                        format!(
                            "{doing}: Resource Manager refused it (HTTP 403 AuthorizationFailed): this handler's identity \
                             holds no role granting it on {resource} (or, without one above it, the resource does not exist: Resource \
                             Manager answers both alike). Assign it the '{KEY_OPERATOR_ROLE}' role \
                             (infra/roles.json) at the resource: the deployment does for each resource it binds \
                             (azureKeyResources / azure_key_resources, storageKeyAccountIds)"
                        ),
                        false,
                    )
                }
                ErrorKind::HttpResponse { status, error_code, .. } => {
                    let status = u16::from(*status);
                    let code = error_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
                    self.error(format!("{doing}: HTTP {status}{code}: {e}"), matches!(status, 408 | 429 | 500..=599))
                }
                ErrorKind::Io | ErrorKind::Connection | ErrorKind::Credential => {
                    self.error(format!("{doing}: Resource Manager could not be reached: {e}"), true)
                }
                _ => self.error(format!("{doing}: {e}"), false),
            })?;
        Ok(response.body().as_ref().to_vec())
    }

    fn error(&self, message: String, retryable: bool) -> ProviderError {
        ProviderError { provider: self.provider, message, retryable }
    }
}

/// The token scope for a Resource Manager endpoint: its own origin in Azure's clouds; the public cloud's for
/// a loopback emulator.
fn scope_for(endpoint: &Url) -> String {
    crate::provider::token_scope(endpoint, "https://management.azure.com/.default")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_scope_follows_the_endpoint_except_on_loopback() {
        let scope = |u: &str| scope_for(&Url::parse(u).unwrap());
        assert_eq!(scope("https://management.azure.com"), "https://management.azure.com/.default");
        assert_eq!(scope("https://management.chinacloudapi.cn/"), "https://management.chinacloudapi.cn/.default");
        assert_eq!(scope("https://127.0.0.1:8444"), "https://management.azure.com/.default");
    }
}
