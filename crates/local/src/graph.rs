//! Microsoft Graph emulator: the application password operations keyturn's `entra-app-secret` provider calls,
//! and an Entra ID sign-in endpoint that accepts the applications' client secrets, over HTTPS with its own CA.
//!
//! Served (Microsoft Graph v1.0, `application: addPassword` / `removePassword` / `get`):
//! - `POST /v1.0/applications/{object id}/addPassword` (or `/applications(appId='{client id}')/addPassword`) with
//!   `{"passwordCredential":{"displayName","startDateTime","endDateTime"}}` (all optional: start now, end in two
//!   years) → 200, the new passwordCredential with `secretText` (the only time it is ever returned), `keyId`,
//!   `hint` (the secret's first three characters), the dates and the display name;
//! - `POST …/removePassword` with `{"keyId":"…"}` → 204;
//! - `GET /v1.0/applications/{id}[?$select=…]` → the application (`id`, `appId`, `displayName`,
//!   `passwordCredentials` with `secretText` null), only the `$select`ed properties when given;
//! - `POST /{tenant}/oauth2/v2.0/token` (login.microsoftonline.com's client credentials grant): `client_id` = the
//!   application's appId, `client_secret` = one of its passwords that is valid now, `scope` = `<resource>/.default`
//!   → a bearer token for that resource from the shared [`TokenRegistry`]; a wrong or expired secret is refused
//!   with Entra ID's `invalid_client` and AADSTS code. This is how a test proves which secrets work.
//!
//! Like Graph: tokens must be for [`RESOURCE`] (else 401 `InvalidAuthenticationToken`); the caller needs an
//! application permission granted to its service principal ([`Permission`]): `Application.ReadWrite.All`, or
//! `Application.ReadWrite.OwnedBy` on applications it owns (else 403 `Authorization_RequestDenied`); an unknown
//! application is 404 `Request_ResourceNotFound`, a malformed body 400 `Request_BadRequest`; throttling
//! ([`RunningGraph::throttle_next`]) answers 429 `TooManyRequests` with `Retry-After`. Every error has Graph's
//! shape `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`. Time is the
//! wall clock (as for tokens): a password's `endDateTime` is judged against real time.
//! docs/local-stack.md lists where it differs from Graph.

mod http;
mod login;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;

use crate::identity::TokenRegistry;
use crate::keyvault::server::{self, ServerHandle};
use crate::tls::{EmulatorCa, EmulatorCaError};

/// The audience of Microsoft Graph tokens.
pub const RESOURCE: &str = "https://graph.microsoft.com";

/// An application permission (app role) of Microsoft Graph granted to a service principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// `Application.ReadWrite.OwnedBy`: read and change the applications the caller owns (least privilege).
    ApplicationReadWriteOwnedBy,
    /// `Application.ReadWrite.All`: read and change every application.
    ApplicationReadWriteAll,
}

/// Failures starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("binding the Graph emulator on 127.0.0.1 failed: {0}")]
    Bind(std::io::Error),
    #[error("the Graph emulator's CA: {0}")]
    Ca(#[from] EmulatorCaError),
}

/// An application registration's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppIds {
    /// The application object's id (`id`): what `/applications/{id}` and keyturn's bindings name.
    pub object_id: String,
    /// The application (client) id (`appId`): what a sign-in names as `client_id`.
    pub app_id: String,
    /// The object id of the application's service principal in the tenant: the `oid` of its tokens.
    pub service_principal_id: String,
}

/// A password as `GET` shows it: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordInfo {
    pub key_id: String,
    pub display_name: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A password the emulator added: its key id and its secret text.
#[derive(Clone, PartialEq, Eq)]
pub struct AddedPassword {
    pub key_id: String,
    pub secret_text: String,
}

impl std::fmt::Debug for AddedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddedPassword").field("key_id", &self.key_id).field("secret_text", &"****").finish()
    }
}

#[derive(Debug, Clone)]
struct Password {
    info: PasswordInfo,
    secret: String,
}

impl Password {
    fn new(display_name: Option<String>, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            info: PasswordInfo { key_id: uuid::Uuid::new_v4().to_string(), display_name, start, end },
            secret: new_secret_text(),
        }
    }

    fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.info.start <= now && now < self.info.end
    }
}

#[derive(Debug, Clone)]
struct App {
    ids: AppIds,
    display_name: String,
    /// The object ids of the service principals that own the application.
    owners: BTreeSet<String>,
    passwords: Vec<Password>,
}

/// Everything the emulator holds. A std Mutex: held for a map operation only, never across an await.
#[derive(Debug, Default)]
struct State {
    /// By lowercase object id.
    apps: BTreeMap<String, App>,
    /// Application permissions by the grantee's (service principal's) object id, lowercase.
    grants: BTreeMap<String, BTreeSet<Permission>>,
    /// Requests still to answer 429 before serving again.
    throttled: u32,
    /// How many requests were answered 429.
    throttled_answers: u32,
    /// Extra time before a Graph answer leaves, after the operation was applied.
    answer_delay: Duration,
    adds: u32,
    removes: u32,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    // A poisoned map only means a request panicked between two operations; the state itself is valid.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Configures an emulator.
#[derive(Debug, Default)]
pub struct Builder {
    apps: Vec<String>,
    ca_dir: Option<PathBuf>,
}

/// Entry point: `GraphEmulator::builder().application("billing-api").start(tokens)`.
#[derive(Debug)]
pub struct GraphEmulator;

impl GraphEmulator {
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl Builder {
    /// Registers an application named `display_name` (fresh object and client ids, no password, no owner).
    pub fn application(mut self, display_name: impl Into<String>) -> Self {
        self.apps.push(display_name.into());
        self
    }

    /// Where the emulator's CA certificate is written (default: a new directory under the temp dir).
    pub fn ca_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.ca_dir = Some(dir.into());
        self
    }

    /// Starts the HTTPS listener on 127.0.0.1 (port 0). Graph requests must carry tokens `tokens` issued for
    /// [`RESOURCE`]; sign-ins with a client secret get tokens recorded in `tokens`.
    pub async fn start(self, tokens: TokenRegistry) -> Result<RunningGraph, GraphError> {
        let mut state = State::default();
        for display_name in self.apps {
            let ids = AppIds {
                object_id: uuid::Uuid::new_v4().to_string(),
                app_id: uuid::Uuid::new_v4().to_string(),
                service_principal_id: uuid::Uuid::new_v4().to_string(),
            };
            state.apps.insert(
                ids.object_id.clone(),
                App { ids, display_name, owners: BTreeSet::new(), passwords: Vec::new() },
            );
        }
        let ca = EmulatorCa::create(self.ca_dir, "keyturn-graph")?;
        let acceptor = ca.acceptor();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(GraphError::Bind)?;
        let addr = listener.local_addr().map_err(GraphError::Bind)?;
        let state: Shared = Arc::new(Mutex::new(state));
        let service = Arc::new(http::Service { state: state.clone(), tokens });
        let server = server::spawn(listener, Some(acceptor), move |req| Arc::clone(&service).handle(req));
        let url = format!("https://127.0.0.1:{}", addr.port());
        tracing::info!(%url, "Graph emulator listening");
        Ok(RunningGraph { url, ca, state, server: Some(server) })
    }
}

/// A running emulator. Dropping it stops the listener.
#[derive(Debug)]
pub struct RunningGraph {
    url: String,
    ca: EmulatorCa,
    state: Shared,
    server: Option<ServerHandle>,
}

impl RunningGraph {
    /// `https://127.0.0.1:<port>`: the value of `KEYTURN_GRAPH_ENDPOINT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client credentials token endpoint of the local tenant (login.microsoftonline.com's
    /// `/{tenant}/oauth2/v2.0/token`).
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.url, crate::identity::TENANT_ID)
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        self.ca.ca_pem()
    }

    /// The ids of the application registered as `display_name`.
    pub fn application(&self, display_name: &str) -> Option<AppIds> {
        lock(&self.state).apps.values().find(|a| a.display_name == display_name).map(|a| a.ids.clone())
    }

    /// Makes the service principal `principal_object_id` an owner of the application `object_id`.
    pub fn add_owner(&self, object_id: &str, principal_object_id: &str) -> bool {
        let mut state = lock(&self.state);
        let Some(app) = state.apps.get_mut(&object_id.to_ascii_lowercase()) else { return false };
        app.owners.insert(principal_object_id.to_ascii_lowercase());
        true
    }

    /// Grants the service principal `principal_object_id` a Graph application permission (what an admin's
    /// consent to an app role assignment does).
    pub fn grant(&self, principal_object_id: &str, permission: Permission) {
        lock(&self.state).grants.entry(principal_object_id.to_ascii_lowercase()).or_default().insert(permission);
    }

    /// Adds a password directly (as an admin in the portal would), valid from now for `lifetime`.
    pub fn add_password(
        &self,
        object_id: &str,
        display_name: &str,
        lifetime: chrono::Duration,
    ) -> Option<AddedPassword> {
        let mut state = lock(&self.state);
        let app = state.apps.get_mut(&object_id.to_ascii_lowercase())?;
        let now = Utc::now();
        let password = Password::new(Some(display_name.to_owned()), now, now + lifetime);
        let added = AddedPassword { key_id: password.info.key_id.clone(), secret_text: password.secret.clone() };
        app.passwords.push(password);
        Some(added)
    }

    /// The application's passwords (no secret), in the order they were added.
    pub fn passwords(&self, object_id: &str) -> Vec<PasswordInfo> {
        lock(&self.state)
            .apps
            .get(&object_id.to_ascii_lowercase())
            .map(|a| a.passwords.iter().map(|p| p.info.clone()).collect())
            .unwrap_or_default()
    }

    /// How many addPassword and removePassword calls succeeded, in all.
    pub fn calls(&self) -> (u32, u32) {
        let state = lock(&self.state);
        (state.adds, state.removes)
    }

    /// How many Graph requests were answered 429 so far.
    pub fn throttled_answers(&self) -> u32 {
        lock(&self.state).throttled_answers
    }

    /// Answers the next `requests` Graph requests with 429 and `Retry-After: 1`.
    pub fn throttle_next(&self, requests: u32) {
        lock(&self.state).throttled = requests;
    }

    /// Holds every Graph answer `delay` after the operation was applied (a slow network on the way back):
    /// a caller that dies meanwhile has changed the application without learning the result.
    pub fn delay_answers(&self, delay: Duration) {
        lock(&self.state).answer_delay = delay;
    }

    /// Signs in as the application `app_id` with `secret` through the token endpoint, over HTTPS as any client
    /// would (client credentials, Graph's scope): `Ok(access token)`, or `Err` with Entra ID's answer
    /// (`error_description`, which starts with its AADSTS code). What the tests use to prove which secrets work.
    pub async fn sign_in(&self, app_id: &str, secret: &str) -> Result<String, String> {
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", app_id)
            .append_pair("client_secret", secret)
            .append_pair("scope", &format!("{RESOURCE}/.default"))
            .finish();
        let ca = reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let response = client
            .post(self.token_url())
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let answer: serde_json::Value = response.json().await.map_err(|e| e.without_url().to_string())?;
        match answer["access_token"].as_str() {
            Some(token) => Ok(token.to_owned()),
            None => Err(answer["error_description"].as_str().unwrap_or("no error_description").to_owned()),
        }
    }

    /// Stops accepting and waits for open connections.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// A secret shaped like Entra ID's: 40 characters of letters, digits and `~._-`, from the OS CSPRNG.
fn new_secret_text() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";
    let mut bytes = [0u8; 40];
    // The OS CSPRNG does not fail on supported platforms; the emulator's secrets are never production secrets.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    // The slight modulo bias (256 is not a multiple of 66) does not matter for an emulator's test secrets.
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}
