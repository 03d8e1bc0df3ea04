//! Azure Resource Manager emulator: the storage account key operations keyturn's `storage-account-key`
//! provider calls, over HTTPS with its own local CA, with bearer tokens from the local identity endpoint.
//!
//! Served, following the Microsoft.Storage REST API version 2023-05-01 (the shapes of its
//! `StorageAccountListKeysResult` and `StorageAccountRegenerateKeyParameters`):
//! - `POST /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Storage/storageAccounts/{a}/listKeys?api-version=2023-05-01`
//!   → 200 `{"keys":[{"keyName":"key1","value":"...","permissions":"FULL","creationTime":"..."}, {key2}]}`;
//! - `POST .../regenerateKey?api-version=2023-05-01` with `{"keyName":"key1"|"key2"}` → 200, the same shape
//!   with the new key.
//!
//! Like ARM: path segments match case-insensitively; a missing token is 401 `AuthenticationFailed`, a token
//! for another audience 401 `InvalidAuthenticationToken`; an unknown account is 404 `ResourceNotFound` (an
//! unknown resource group `ResourceGroupNotFound`); a missing api-version 400 `MissingApiVersionParameter`.
//! Not served: everything else ARM does (it answers 404 `NoRegisteredProviderFound`-style errors for them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::arm_consumers::ConsumerApps;
use crate::identity::TokenRegistry;
use crate::keyvault::server::{self, HttpResponse, ServerHandle};
use crate::tls::{EmulatorCa, EmulatorCaError};

/// The Microsoft.Storage API version the emulator follows (and requires).
pub const API_VERSION: &str = "2023-05-01";
/// The audience of Resource Manager tokens.
pub const RESOURCE: &str = "https://management.azure.com";

/// Failures starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("binding the ARM emulator on 127.0.0.1 failed: {0}")]
    Bind(std::io::Error),
    #[error("the ARM emulator's CA: {0}")]
    Ca(#[from] EmulatorCaError),
    #[error(
        "'{0}' is not a storage account resource id (/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.Storage/storageAccounts/<a>)"
    )]
    BadResourceId(String),
}

/// One storage account's keys and how often each was regenerated.
#[derive(Debug, Clone)]
struct Account {
    /// The resource id as registered (its spelling is what responses use).
    id: String,
    keys: [Key; 2],
    regenerations: [u32; 2],
}

#[derive(Debug, Clone)]
struct Key {
    value: String,
    created: chrono::DateTime<chrono::Utc>,
}

impl Key {
    fn new() -> Self {
        // A real account key: 64 random bytes, standard base64 (88 characters).
        let mut bytes = [0u8; 64];
        // The OS CSPRNG does not fail on supported platforms; a zeroed key would still be a valid (weak) key
        // for an emulator, never a production secret.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        Self { value: base64::engine::general_purpose::STANDARD.encode(bytes), created: chrono::Utc::now() }
    }
}

/// The accounts by lowercase resource id. A std Mutex: held for a map operation only, never across an await.
type Accounts = Arc<Mutex<BTreeMap<String, Account>>>;

/// Configures an emulator.
#[derive(Debug, Default)]
pub struct Builder {
    accounts: Vec<String>,
    consumers: ConsumerApps,
    ca_dir: Option<PathBuf>,
}

/// Entry point: `ArmEmulator::builder().storage_account(id).start(tokens)`.
#[derive(Debug)]
pub struct ArmEmulator;

impl ArmEmulator {
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl Builder {
    /// Adds a storage account by resource id, with two fresh keys.
    pub fn storage_account(mut self, resource_id: impl Into<String>) -> Self {
        self.accounts.push(resource_id.into());
        self
    }

    /// Serves these consumer apps too (`crate::arm_consumers`).
    pub fn consumers(mut self, apps: ConsumerApps) -> Self {
        self.consumers = apps;
        self
    }

    /// Where the emulator's CA certificate is written (default: a new directory under the temp dir).
    pub fn ca_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.ca_dir = Some(dir.into());
        self
    }

    /// Starts the HTTPS listener on 127.0.0.1 (port 0), accepting the tokens `tokens` issued for
    /// [`RESOURCE`].
    pub async fn start(self, tokens: TokenRegistry) -> Result<RunningArm, ArmError> {
        let mut accounts = BTreeMap::new();
        for id in self.accounts {
            if parse_account_id(&id).is_none() {
                return Err(ArmError::BadResourceId(id));
            }
            accounts
                .insert(id.to_ascii_lowercase(), Account { id, keys: [Key::new(), Key::new()], regenerations: [0, 0] });
        }
        let ca = EmulatorCa::create(self.ca_dir, "keyturn-arm")?;
        let acceptor = ca.acceptor();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(ArmError::Bind)?;
        let addr = listener.local_addr().map_err(ArmError::Bind)?;
        let accounts: Accounts = Arc::new(Mutex::new(accounts));
        let service = Arc::new(Service { accounts: accounts.clone(), consumers: self.consumers, tokens });
        let server = server::spawn(listener, Some(acceptor), move |req| Arc::clone(&service).handle(req));
        let url = format!("https://127.0.0.1:{}", addr.port());
        tracing::info!(%url, "ARM emulator listening");
        Ok(RunningArm { url, ca, accounts, server: Some(server) })
    }
}

/// A running emulator. Dropping it stops the listener.
#[derive(Debug)]
pub struct RunningArm {
    url: String,
    ca: EmulatorCa,
    accounts: Accounts,
    server: Option<ServerHandle>,
}

impl RunningArm {
    /// `https://127.0.0.1:<port>`: the value of `KEYTURN_ARM_ENDPOINT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        self.ca.ca_pem()
    }

    /// The current value of `key` (`key1`/`key2`) of the account `resource_id`.
    pub fn key(&self, resource_id: &str, key: &str) -> Option<String> {
        let index = key_index(key)?;
        lock(&self.accounts).get(&resource_id.to_ascii_lowercase()).map(|a| a.keys[index].value.clone())
    }

    /// How many times `key` of the account was regenerated.
    pub fn regenerations(&self, resource_id: &str, key: &str) -> Option<u32> {
        let index = key_index(key)?;
        lock(&self.accounts).get(&resource_id.to_ascii_lowercase()).map(|a| a.regenerations[index])
    }

    /// Stops accepting and waits for open connections.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn lock(accounts: &Accounts) -> std::sync::MutexGuard<'_, BTreeMap<String, Account>> {
    // A poisoned map only means a request panicked between two map operations; the map itself is valid.
    accounts.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key_index(key: &str) -> Option<usize> {
    match key.to_ascii_lowercase().as_str() {
        "key1" => Some(0),
        "key2" => Some(1),
        _ => None,
    }
}

/// `(subscription, resource group, account)` of a storage account resource id.
fn parse_account_id(id: &str) -> Option<(&str, &str, &str)> {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [subscriptions, s, rgs, g, providers, ns, kind, a]
            if subscriptions.eq_ignore_ascii_case("subscriptions")
                && rgs.eq_ignore_ascii_case("resourceGroups")
                && providers.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Storage")
                && kind.eq_ignore_ascii_case("storageAccounts")
                && ![s, g, a].iter().any(|p| p.is_empty()) =>
        {
            Some((s, g, a))
        }
        _ => None,
    }
}

#[derive(Debug)]
struct Service {
    accounts: Accounts,
    consumers: ConsumerApps,
    tokens: TokenRegistry,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyOut<'a> {
    key_name: &'static str,
    value: &'a str,
    permissions: &'static str,
    creation_time: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegenerateIn {
    key_name: Option<String>,
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    server::json_response(status, &serde_json::json!({ "error": { "code": code, "message": message } }))
}

impl Service {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> HttpResponse {
        if let Some(refusal) = self.refusal(&req) {
            return refusal;
        }
        if let Some(response) = self.consumers.handle(req.method(), req.uri().path(), req.uri().query()) {
            return response;
        }
        let query: BTreeMap<String, String> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
        match query.get("api-version").map(String::as_str) {
            None => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                );
            }
            Some(API_VERSION) => {}
            Some(other) => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidApiVersionParameter",
                    &format!("The api-version '{other}' is invalid. The local emulator supports '{API_VERSION}'."),
                );
            }
        }
        let path = req.uri().path().to_owned();
        let Some((account_path, action)) = path.trim_end_matches('/').rsplit_once('/') else {
            return not_served(&path);
        };
        let action = action.to_ascii_lowercase();
        if parse_account_id(account_path).is_none() || !matches!(action.as_str(), "listkeys" | "regeneratekey") {
            return not_served(&path);
        }
        if req.method() != Method::POST {
            return arm_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("The method '{}' is not allowed for '{action}'.", req.method()),
            );
        }
        let body = match req.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "The request body could not be read.",
                );
            }
        };
        let mut accounts = lock(&self.accounts);
        let Some(account) = accounts.get_mut(&account_path.to_ascii_lowercase()) else {
            return self.not_found(account_path, &accounts);
        };
        if action == "regeneratekey" {
            let Some(index) = regenerate_target(&body) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidValuesForRequestParameters",
                    "Values for request parameters are invalid: keyName.",
                );
            };
            account.keys[index] = Key::new();
            account.regenerations[index] += 1;
            tracing::info!(account = %account.id, key = index + 1, "storage account key regenerated");
        }
        let keys: Vec<KeyOut<'_>> = account
            .keys
            .iter()
            .zip(["key1", "key2"])
            .map(|(key, name)| KeyOut {
                key_name: name,
                value: &key.value,
                permissions: "FULL",
                creation_time: arm_time(key.created),
            })
            .collect();
        server::json_response(StatusCode::OK, &serde_json::json!({ "keys": keys }))
    }

    /// The 401 for a request without a valid Resource Manager token; `None` lets it through.
    fn refusal(&self, req: &Request<Incoming>) -> Option<HttpResponse> {
        let challenge = |code: &str, message: &str| {
            let mut response = arm_error(StatusCode::UNAUTHORIZED, code, message);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static(
                    "Bearer authorization_uri=\"https://login.microsoftonline.com/\", error=\"invalid_token\"",
                ),
            );
            response
        };
        let Some(token) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        else {
            return Some(challenge(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        };
        self.tokens.validate(token.trim(), RESOURCE).err().map(|rejection| {
            tracing::warn!(%rejection, "ARM request with a token the emulator refuses");
            challenge("InvalidAuthenticationToken", &format!("The access token is invalid: {rejection}."))
        })
    }

    fn not_found(&self, account_path: &str, accounts: &BTreeMap<String, Account>) -> HttpResponse {
        let Some((_, group, account)) = parse_account_id(account_path) else { return not_served(account_path) };
        let group_known =
            accounts.values().filter_map(|a| parse_account_id(&a.id)).any(|(_, g, _)| g.eq_ignore_ascii_case(group));
        if group_known {
            arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                &format!(
                    "The Resource 'Microsoft.Storage/storageAccounts/{account}' under resource group '{group}' was not \
                     found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
                ),
            )
        } else {
            arm_error(
                StatusCode::NOT_FOUND,
                "ResourceGroupNotFound",
                &format!("Resource group '{group}' could not be found."),
            )
        }
    }
}

/// ARM's timestamp shape: seven fractional digits (100 ns ticks), `Z`.
fn arm_time(time: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike as _;
    format!("{}.{:07}Z", time.format("%Y-%m-%dT%H:%M:%S"), time.nanosecond() % 1_000_000_000 / 100)
}

/// The key a regenerateKey body names (`key1`/`key2`, any case).
fn regenerate_target(body: &Bytes) -> Option<usize> {
    let parsed: RegenerateIn = serde_json::from_slice(body).ok()?;
    key_index(&parsed.key_name?)
}

fn not_served(path: &str) -> HttpResponse {
    arm_error(
        StatusCode::NOT_FOUND,
        "NotServedByEmulator",
        &format!("The local ARM emulator serves storage account listKeys and regenerateKey only, not '{path}'."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_are_parsed_case_insensitively_and_strictly() {
        assert_eq!(
            parse_account_id("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct"),
            Some(("s1", "rg", "acct"))
        );
        assert!(
            parse_account_id("/SUBSCRIPTIONS/s1/resourcegroups/rg/PROVIDERS/microsoft.storage/STORAGEACCOUNTS/a")
                .is_some()
        );
        for bad in [
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Sql/servers/a",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts",
            "/subscriptions//resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
        ] {
            assert!(parse_account_id(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn regenerate_bodies_name_key1_or_key2() {
        assert_eq!(regenerate_target(&Bytes::from_static(br#"{"keyName":"key2"}"#)), Some(1));
        assert_eq!(regenerate_target(&Bytes::from_static(br#"{"keyName":"KEY1"}"#)), Some(0));
        assert_eq!(regenerate_target(&Bytes::from_static(br#"{"keyName":"kerb1"}"#)), None);
        assert_eq!(regenerate_target(&Bytes::from_static(b"{}")), None);
        assert_eq!(Key::new().value.len(), 88);
        let time = chrono::DateTime::parse_from_rfc3339("2021-03-18T04:42:22.432283612Z").unwrap().to_utc();
        assert_eq!(arm_time(time), "2021-03-18T04:42:22.4322836Z");
    }
}
