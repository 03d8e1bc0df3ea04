//! The two Resource Manager calls the Azure key family makes (`POST {resource id}/{action}?api-version=...`),
//! through keyturn's one Resource Manager client ([`crate::arm::ArmClient`]), its failures as this provider's.

use crate::arm::{ArmCallError, ArmClient};
use crate::provider::ProviderError;

/// The custom role infra/roles.json defines for the family's calls, named when Resource Manager refuses one.
pub const KEY_OPERATOR_ROLE: &str = "keyturn key operator";

/// What a list call answers on success.
const LIST_SUCCESS: &[u16] = &[200];
/// Regenerations answer 200 (with the keys) or, for Cosmos DB's long-running operation, 202 (nothing yet).
const REGENERATE_SUCCESS: &[u16] = &[200, 202, 204];

/// The family's list and regenerate calls, their errors naming `provider`.
#[derive(Debug, Clone)]
pub struct KeyCalls {
    arm: ArmClient,
    /// The provider name its errors carry.
    provider: &'static str,
}

impl KeyCalls {
    pub fn new(provider: &'static str, arm: ArmClient) -> Self {
        Self { arm, provider }
    }

    /// The same calls, their errors naming `provider`.
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
        serde_json::from_slice(&body).map_err(|_| ProviderError {
            provider: self.provider,
            message: format!("{action} on {resource}: the response is not a key list"),
            retryable: false,
        })
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
        // Resource Manager wants a JSON body on these POSTs, even an empty one.
        let body = body.unwrap_or_default();
        self.post(resource, path, api_version, Some(&body), REGENERATE_SUCCESS).await.map(drop)
    }

    async fn post(
        &self,
        resource: &str,
        action: &str,
        api_version: &str,
        body: Option<&str>,
        success: &'static [u16],
    ) -> Result<Vec<u8>, ProviderError> {
        let path = format!("{}/{action}", resource.trim_end_matches('/'));
        let doing = format!("{action} on {resource}");
        self.arm.send(azure_core::http::Method::Post, &path, api_version, body, success, &doing).await.map_err(|error| {
            if error.status == Some(403) && error.code.as_deref() == Some("AuthorizationFailed") {
                // Permanent: a redelivery cannot grant a role. The deployment does, per bound resource.
                return ProviderError {
                    provider: self.provider,
                    message: format!(
                        "{doing}: Resource Manager refused it (HTTP 403 AuthorizationFailed): this handler's identity \
                         holds no role granting it on {resource} (or, without one above it, the resource does not \
                         exist: Resource Manager answers both alike). Assign it the '{KEY_OPERATOR_ROLE}' role \
                         (infra/roles.json) at the resource: the deployment does for each resource it binds \
                         (azureKeyResources / azure_key_resources, storageKeyAccountIds)"
                    ),
                    retryable: false,
                };
            }
            let ArmCallError { message, retryable, .. } = error;
            ProviderError { provider: self.provider, message, retryable }
        })
    }
}
