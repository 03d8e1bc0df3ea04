//! An App Service-style managed identity endpoint, as azure_identity's ManagedIdentityCredential calls it.
//!
//! `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<resource>[&client_id=<id> | &principal_id=<id> |
//! &object_id=<id> | &mi_res_id=<arm id>]` with header `x-identity-header: {IDENTITY_HEADER}` answers
//! `{access_token, expires_on (string epoch seconds), resource, token_type, client_id}`. Plain http on
//! 127.0.0.1, as App Service itself serves it on http://localhost.
//!
//! Like App Service, the endpoint serves one system-assigned identity (no selector) and any number of
//! user-assigned identities, each with its own client id (`appid`), object id (`oid`, the principal role
//! assignments name) and resource id (`xms_mirid`). Asking for an identity that is not assigned gets App
//! Service's own answer: 400 `Unable to load the proper Managed Identity.`. Identities can be added while the
//! endpoint runs ([`Identities`]), so the local stack can give each handler its own.
//!
//! Tokens are shaped like Entra ID's v1 access tokens (a JWT with `aud`, `iss`, `iat`, `nbf`, `exp`, `oid`,
//! `sub`, `tid`, `appid`, `xms_mirid`) because Azurite, the storage emulator the blob-lease lock is tested
//! against, reads those claims (`--oauth basic` checks issuer, audience and lifetime, not the signature). The
//! signature segment is random bytes: nothing can verify it, and no local service tries. The Key Vault
//! emulator instead accepts exactly the tokens recorded in the [`TokenRegistry`], and authorises the `oid`
//! recorded with each.

use crate::keyvault::server::{self, ServerHandle, ServerResponse};
use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// The only API version App Service's identity endpoint speaks in the form the SDKs use.
pub const API_VERSION: &str = "2019-08-01";
/// How long an issued token lives. The SDKs refresh 5 minutes before expiry, so this must be longer.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
const TOKEN_PATH: &str = "/msi/token";
/// The tenant every local identity belongs to (the `tid` claim, and the tenant in the `iss` claim).
pub const TENANT_ID: &str = "6b657974-7572-6e00-6c6f-63616c000000";
/// The subscription every local resource id lives in (vaults, identities, role assignment scopes).
pub const SUBSCRIPTION_ID: &str = "6b657974-7572-6e00-7375-620000000000";
/// The resource group every local resource id lives in.
pub const RESOURCE_GROUP: &str = "keyturn-local";
/// The name of the (stand-in) function app whose system-assigned identity the endpoint serves.
pub const SITE_NAME: &str = "keyturn-local";
/// App Service's answer to a selector that names no identity assigned to the app.
pub const UNASSIGNED_MESSAGE: &str = "Unable to load the proper Managed Identity.";

/// A managed identity the endpoint can issue tokens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedIdentity {
    /// A short name: the user-assigned identity's resource name, or the site's for the system-assigned one.
    pub name: String,
    /// The application (client) id: the `appid` claim, and what `client_id` selects.
    pub client_id: String,
    /// The service principal's object id: the `oid`/`sub` claims, what `principal_id`/`object_id` select, and
    /// what role assignments name.
    pub object_id: String,
    /// The ARM resource id: the `xms_mirid` claim, and what `mi_res_id` selects.
    pub resource_id: String,
    pub system_assigned: bool,
}

impl ManagedIdentity {
    fn system() -> Self {
        Self {
            name: SITE_NAME.to_owned(),
            client_id: uuid::Uuid::new_v4().to_string(),
            object_id: uuid::Uuid::new_v4().to_string(),
            resource_id: format!(
                "/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RESOURCE_GROUP}/providers/Microsoft.Web/sites/{SITE_NAME}"
            ),
            system_assigned: true,
        }
    }

    /// A user-assigned identity named `name`, with `client_id` (a fresh one when `None`) and a fresh object id.
    pub fn user_assigned(name: &str, client_id: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            client_id: client_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            object_id: uuid::Uuid::new_v4().to_string(),
            resource_id: format!(
                "/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RESOURCE_GROUP}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
            ),
            system_assigned: false,
        }
    }
}

/// How a token request names its identity (App Service allows at most one selector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// No selector: the system-assigned identity.
    System,
    ClientId(String),
    /// `principal_id`, or its alias `object_id`.
    ObjectId(String),
    /// `mi_res_id`: the identity's ARM resource id (compared case-insensitively, as ARM ids are).
    ResourceId(String),
}

/// The identities assigned to the (stand-in) app: one system-assigned and any number of user-assigned.
/// Cheap to clone (shared); identities added later are served at once.
#[derive(Debug, Clone)]
pub struct Identities {
    // std RwLock: short lookups, never held across an await.
    all: Arc<RwLock<Vec<ManagedIdentity>>>,
}

impl Default for Identities {
    fn default() -> Self {
        Self { all: Arc::new(RwLock::new(vec![ManagedIdentity::system()])) }
    }
}

impl Identities {
    /// The system-assigned identity.
    pub fn system(&self) -> ManagedIdentity {
        let all = self.all.read().unwrap_or_else(PoisonError::into_inner);
        all.iter().find(|i| i.system_assigned).cloned().unwrap_or_else(ManagedIdentity::system)
    }

    /// Assigns `identity` to the app (replacing one with the same client id).
    pub fn add(&self, identity: ManagedIdentity) {
        let mut all = self.all.write().unwrap_or_else(PoisonError::into_inner);
        all.retain(|i| i.client_id != identity.client_id || i.system_assigned);
        all.push(identity);
    }

    /// Creates and assigns a user-assigned identity named `name` with fresh ids.
    pub fn add_user_assigned(&self, name: &str) -> ManagedIdentity {
        let identity = ManagedIdentity::user_assigned(name, None);
        self.add(identity.clone());
        identity
    }

    /// The identity a selector names, if it is assigned.
    pub fn select(&self, selector: &Selector) -> Option<ManagedIdentity> {
        let all = self.all.read().unwrap_or_else(PoisonError::into_inner);
        let found = match selector {
            Selector::System => all.iter().find(|i| i.system_assigned),
            // Azure compares GUIDs case-insensitively.
            Selector::ClientId(id) => all.iter().find(|i| !i.system_assigned && i.client_id.eq_ignore_ascii_case(id)),
            Selector::ObjectId(id) => all.iter().find(|i| !i.system_assigned && i.object_id.eq_ignore_ascii_case(id)),
            Selector::ResourceId(id) => {
                all.iter().find(|i| !i.system_assigned && i.resource_id.eq_ignore_ascii_case(id))
            }
        };
        found.cloned()
    }

    /// Every assigned identity, the system-assigned one first.
    pub fn list(&self) -> Vec<ManagedIdentity> {
        self.all.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn by_client_id(&self, client_id: &str) -> Option<ManagedIdentity> {
        let all = self.all.read().unwrap_or_else(PoisonError::into_inner);
        all.iter().find(|i| i.client_id.eq_ignore_ascii_case(client_id)).cloned()
    }
}

/// The environment a process needs for ManagedIdentityCredential to use this endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityEnv {
    /// `IDENTITY_ENDPOINT`: the token URL.
    pub endpoint: String,
    /// `IDENTITY_HEADER`: the shared secret the caller must echo in `x-identity-header`.
    pub header: String,
}

impl std::fmt::Debug for IdentityEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityEnv").field("endpoint", &self.endpoint).field("header", &"****").finish()
    }
}

impl IdentityEnv {
    /// `[("IDENTITY_ENDPOINT", ..), ("IDENTITY_HEADER", ..)]`, ready for `Command::envs`.
    pub fn vars(&self) -> [(&'static str, String); 2] {
        [("IDENTITY_ENDPOINT", self.endpoint.clone()), ("IDENTITY_HEADER", self.header.clone())]
    }
}

/// What the registry knows about a token it issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The resource (audience) the token was issued for, e.g. `https://vault.azure.net`.
    pub resource: String,
    /// The identity's client id (`appid`).
    pub client_id: String,
    /// The identity's object id (`oid`): what role assignments name.
    pub object_id: String,
    /// The identity's ARM resource id (`xms_mirid`).
    pub resource_id: String,
    /// When the token stops being accepted.
    pub expires_at: SystemTime,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("the token was not issued by the local identity endpoint")]
    Unknown,
    #[error("the token expired")]
    Expired,
    #[error("the token was issued for '{actual}', not for '{expected}'")]
    WrongAudience { expected: String, actual: String },
}

/// Every token the identity endpoint issued. Cheap to clone (shared).
///
/// Expiry is judged in real time, not by the movable [`crate::clock::Clock`]: the SDKs cache tokens by the
/// wall clock, and a vault that expired tokens when a test jumps its clock forward a month would reject every
/// cached token with no way for the client to recover.
#[derive(Debug, Clone, Default)]
pub struct TokenRegistry {
    // std RwLock: lookups are short and never cross an await; reads (every vault request) vastly outnumber writes.
    tokens: Arc<RwLock<HashMap<String, TokenInfo>>>,
    identities: Identities,
}

impl TokenRegistry {
    /// The identities tokens are issued for.
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// Issues a new token for `resource` on behalf of the identity with `client_id` (an identity the
    /// registry does not know is taken as its own object id and resource id, for callers that mint tokens
    /// directly).
    pub fn issue(&self, resource: &str, client_id: &str) -> (String, TokenInfo) {
        let identity = self.identities.by_client_id(client_id).unwrap_or_else(|| ManagedIdentity {
            object_id: client_id.to_owned(),
            ..ManagedIdentity::user_assigned(client_id, Some(client_id.to_owned()))
        });
        self.issue_for(resource, &identity)
    }

    /// Issues a new token for `resource` on behalf of `identity`.
    pub fn issue_for(&self, resource: &str, identity: &ManagedIdentity) -> (String, TokenInfo) {
        let now = SystemTime::now();
        let info = TokenInfo {
            resource: resource.trim_end_matches('/').to_string(),
            client_id: identity.client_id.clone(),
            object_id: identity.object_id.clone(),
            resource_id: identity.resource_id.clone(),
            expires_at: now + TOKEN_LIFETIME,
        };
        let token = jwt(&info, now);
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        tokens.retain(|_, t| t.expires_at > now);
        tokens.insert(token.clone(), info.clone());
        (token, info)
    }

    /// Checks a bearer token for `resource`.
    pub fn validate(&self, token: &str, resource: &str) -> Result<TokenInfo, TokenRejection> {
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        let info = tokens.get(token).ok_or(TokenRejection::Unknown)?;
        if info.expires_at <= SystemTime::now() {
            return Err(TokenRejection::Expired);
        }
        let expected = resource.trim_end_matches('/');
        if info.resource != expected {
            return Err(TokenRejection::WrongAudience {
                expected: expected.to_string(),
                actual: info.resource.clone(),
            });
        }
        Ok(info.clone())
    }
}

/// Failures starting the identity endpoint.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("binding the identity endpoint on 127.0.0.1 failed: {0}")]
    Bind(std::io::Error),
}

/// A running identity endpoint. Dropping it stops the listener.
#[derive(Debug)]
pub struct IdentityEndpoint {
    env: IdentityEnv,
    addr: SocketAddr,
    system_client_id: String,
    registry: TokenRegistry,
    server: ServerHandle,
}

impl IdentityEndpoint {
    /// Starts the endpoint on 127.0.0.1 (port 0) with the registry's identities (a system-assigned one) plus
    /// user-assigned identities with the given client ids, recording issued tokens in `registry`.
    pub async fn start(registry: TokenRegistry, user_assigned_client_ids: Vec<String>) -> Result<Self, IdentityError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(IdentityError::Bind)?;
        let addr = listener.local_addr().map_err(IdentityError::Bind)?;
        let header = random_hex(24);
        for (n, client_id) in user_assigned_client_ids.into_iter().enumerate() {
            registry.identities().add(ManagedIdentity::user_assigned(&format!("identity-{}", n + 1), Some(client_id)));
        }
        let system_client_id = registry.identities().system().client_id;
        let handler = Arc::new(TokenHandler { header: header.clone(), registry: registry.clone() });
        let server = server::spawn(listener, None, move |req| {
            let handler = Arc::clone(&handler);
            async move { handler.handle(req) }
        });
        tracing::info!(%addr, "managed identity endpoint listening");
        Ok(Self {
            env: IdentityEnv { endpoint: format!("http://{addr}{TOKEN_PATH}"), header },
            addr,
            system_client_id,
            registry,
            server,
        })
    }

    /// IDENTITY_ENDPOINT and IDENTITY_HEADER for a process that should use this endpoint.
    pub fn env(&self) -> &IdentityEnv {
        &self.env
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The client id of the system-assigned identity (issued when the caller names none).
    pub fn system_client_id(&self) -> &str {
        &self.system_client_id
    }

    /// The registry of issued tokens.
    pub fn registry(&self) -> &TokenRegistry {
        &self.registry
    }

    /// Stops accepting requests and waits for open connections to finish.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

#[derive(Debug)]
struct TokenHandler {
    header: String,
    registry: TokenRegistry,
}

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    expires_on: String,
    resource: &'a str,
    token_type: &'static str,
    client_id: &'a str,
}

impl TokenHandler {
    fn handle(&self, req: Request<Incoming>) -> ServerResponse {
        if req.uri().path() != TOKEN_PATH {
            return error(StatusCode::NOT_FOUND, "No route matches the request path.");
        }
        if req.method() != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "Only GET is supported.");
        }
        // Missing header: the request is malformed (400). Present but wrong: the caller is not the app (401).
        match req.headers().get("x-identity-header").map(|v| v.as_bytes()) {
            None => return error(StatusCode::BAD_REQUEST, "Missing required header X-IDENTITY-HEADER."),
            Some(value) if value != self.header.as_bytes() => {
                tracing::warn!("identity request with a wrong x-identity-header");
                return error(StatusCode::UNAUTHORIZED, "The X-IDENTITY-HEADER value is not valid.");
            }
            Some(_) => {}
        }
        let query: HashMap<String, String> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
        match query.get("api-version").map(String::as_str) {
            Some(API_VERSION) => {}
            Some(other) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("api-version '{other}' is not supported; use {API_VERSION}."),
                );
            }
            None => return error(StatusCode::BAD_REQUEST, "Missing required query parameter api-version."),
        }
        let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
            return error(StatusCode::BAD_REQUEST, "Missing required query parameter resource.");
        };
        let selector = match selector(&query) {
            Ok(selector) => selector,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        let Some(identity) = self.registry.identities().select(&selector) else {
            tracing::warn!(?selector, "token requested for an identity not assigned to the app");
            return error(StatusCode::BAD_REQUEST, UNASSIGNED_MESSAGE);
        };
        let (token, info) = self.registry.issue_for(resource, &identity);
        let expires_on = info.expires_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        tracing::debug!(%resource, client_id = %identity.client_id, "token issued");
        let body = TokenResponse {
            access_token: &token,
            expires_on: expires_on.to_string(),
            resource: &info.resource,
            token_type: "Bearer",
            client_id: &identity.client_id,
        };
        server::json_response(StatusCode::OK, &body)
    }
}

/// The one selector a request names. App Service documents "at most one"; naming two is refused here (the
/// service's answer to that is undocumented).
fn selector(query: &HashMap<String, String>) -> Result<Selector, String> {
    let named: Vec<(&str, &String)> = ["client_id", "principal_id", "object_id", "mi_res_id"]
        .into_iter()
        .filter_map(|name| query.get(name).map(|value| (name, value)))
        .collect();
    match named.as_slice() {
        [] => Ok(Selector::System),
        [("client_id", id)] => Ok(Selector::ClientId((*id).clone())),
        [("principal_id" | "object_id", id)] => Ok(Selector::ObjectId((*id).clone())),
        [(_, id)] => Ok(Selector::ResourceId((*id).clone())),
        several => Err(format!(
            "Only one of client_id, principal_id (object_id) and mi_res_id may be given; this request named {}.",
            several.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(" and ")
        )),
    }
}

/// App Service's error body: `{"statusCode", "message", "correlationId"}`.
fn error(status: StatusCode, message: &str) -> ServerResponse {
    let body = serde_json::json!({
        "statusCode": status.as_u16(),
        "message": message,
        "correlationId": uuid::Uuid::new_v4().to_string(),
    });
    let mut response = server::json_response(status, &body);
    response.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

/// An unsigned JWT carrying the claims an Entra ID v1 access token for `info` would carry. The random
/// signature segment makes every token unique (the registry's key) and unguessable.
fn jwt(info: &TokenInfo, now: SystemTime) -> String {
    use base64::Engine as _;
    let encode = |value: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "kid": "keyturn-local" });
    let claims = serde_json::json!({
        "aud": info.resource,
        "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
        "iat": epoch(now),
        "nbf": epoch(now),
        "exp": epoch(info.expires_at),
        "tid": TENANT_ID,
        // A managed identity's token names it by object id (`oid`, `sub`), application id (`appid`) and ARM
        // resource id (`xms_mirid`), as Entra ID's v1 tokens for a managed identity do.
        "oid": info.object_id,
        "sub": info.object_id,
        "appid": info.client_id,
        "appidacr": "2",
        "idtyp": "app",
        "xms_mirid": info.resource_id,
        "ver": "1.0",
    });
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_hex(32));
    format!("{}.{}.{signature}", encode(&header), encode(&claims))
}

/// `bytes` random bytes as lowercase hex, from the OS CSPRNG (aws-lc-rs).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // aws-lc-rs's system RNG only fails if the OS cannot supply randomness at all; fall back to UUIDv4
    // (also OS randomness) rather than aborting.
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        for chunk in buf.chunks_mut(16) {
            let id = uuid::Uuid::new_v4();
            chunk.copy_from_slice(&id.as_bytes()[..chunk.len()]);
        }
    }
    let mut out = String::with_capacity(bytes * 2);
    for b in buf {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn claims(token: &str) -> serde_json::Value {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        serde_json::from_slice(&payload).unwrap()
    }

    #[test]
    fn tokens_are_jwts_with_the_claims_azurite_checks_and_each_is_unique() {
        let registry = TokenRegistry::default();
        let (token, info) = registry.issue("https://storage.azure.com/", "client-1");
        let claims = claims(&token);
        assert_eq!(claims["aud"], "https://storage.azure.com");
        assert_eq!(claims["iss"], format!("https://sts.windows.net/{TENANT_ID}/"));
        assert_eq!(claims["tid"], TENANT_ID);
        assert_eq!(claims["oid"], "client-1");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let (nbf, exp) = (claims["nbf"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
        assert!(nbf <= now && now - nbf < 5, "nbf {nbf}, now {now}");
        assert_eq!(claims["iat"].as_u64(), Some(nbf));
        assert_eq!(exp, info.expires_at.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(exp - nbf, TOKEN_LIFETIME.as_secs());

        let (again, _) = registry.issue("https://storage.azure.com", "client-1");
        assert_ne!(token, again);
        assert!(registry.validate(&token, "https://storage.azure.com").is_ok());
        assert_eq!(
            registry.validate(&token, "https://vault.azure.net"),
            Err(TokenRejection::WrongAudience {
                expected: "https://vault.azure.net".into(),
                actual: "https://storage.azure.com".into()
            })
        );
    }
}
