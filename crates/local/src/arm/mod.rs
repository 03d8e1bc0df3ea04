//! Azure Resource Manager emulator: the key operations of the Azure key family keyturn's `azure-key` provider
//! calls, over HTTPS with its own local CA, with bearer tokens from the local identity endpoint.
//!
//! # Layout
//! - this module: the listener, ARM's authentication and error shapes, the api-version check, and the router: a
//!   match on the path's provider namespace picks the resource type's module.
//! - [`keys`]: what every type shares: a resource with named keys, regeneration counters, list and regenerate.
//! - one module per resource type, each with its published API version, the resource id's shape, and the
//!   service's request and answer shapes: `storage` (Microsoft.Storage/storageAccounts), `cosmos`
//!   (Microsoft.DocumentDB/databaseAccounts), `redis` (Microsoft.Cache/redis), `messaging` (Microsoft.ServiceBus
//!   and Microsoft.EventHub authorization rules), `cognitive` (Microsoft.CognitiveServices/accounts), `search`
//!   (Microsoft.Search/searchServices).
//!
//! Like ARM: path segments match case-insensitively; a missing token is 401 `AuthenticationFailed`, a token
//! for another audience 401 `InvalidAuthenticationToken`; an unknown resource is 404 `ResourceNotFound` (an
//! unknown resource group `ResourceGroupNotFound`); a missing api-version 400 `MissingApiVersionParameter`, one the
//! type does not serve 400 `InvalidApiVersionParameter`. Cosmos DB regenerates in a long-running operation (202,
//! the new key visible a moment later). Not served: everything else ARM does (404 `NotServedByEmulator`).
//!
//! Role assignments are enforced as ARM's gateway enforces them, before the resource provider is asked (so before
//! the resource's existence is known): each request needs the action `<namespace>/<types>/<operation>/action`
//! (e.g. `Microsoft.ServiceBus/namespaces/queues/authorizationRules/regenerateKeys/action`), granted to the
//! token's principal by a role assignment at the resource or above ([`Builder::assignments`]: the stack's handler
//! identities hold infra/roles.json's `keyturn key operator` on the resources their deployment binds). Without it:
//! 403 `AuthorizationFailed`, ARM's message naming the client, the action and the scope.

mod cognitive;
pub mod consumers;
mod cosmos;
mod keys;
mod messaging;
mod redis;
mod search;
mod storage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use self::consumers::ConsumerApps;
use self::keys::{KeyType, Resource};
use crate::identity::{TokenInfo, TokenRegistry};
use crate::keyvault::server::{self, ServerHandle, ServerResponse};
use crate::rbac::{ArmAssignments, Scope};
use crate::roles::{MatrixError, RoleMatrix};
use crate::tls::{EmulatorCa, EmulatorCaError};

/// The audience of Resource Manager tokens.
pub const RESOURCE: &str = "https://management.azure.com";
/// The Microsoft.Storage API version the emulator follows (and requires).
pub const API_VERSION: &str = storage::STORAGE.api_version;

/// Failures starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("binding the ARM emulator on 127.0.0.1 failed: {0}")]
    Bind(std::io::Error),
    #[error("the ARM emulator's CA: {0}")]
    Ca(#[from] EmulatorCaError),
    #[error(
        "'{0}' is not the resource id of a type the ARM emulator serves ({types}; \
         /subscriptions/<s>/resourceGroups/<g>/providers/<type>/<name>)",
        types = keys::served_types()
    )]
    BadResourceId(String),
}

/// The resources by lowercase resource id. A std Mutex: held for a map operation only, never across an await.
type Resources = Arc<Mutex<BTreeMap<String, Resource>>>;

/// Configures an emulator.
#[derive(Debug, Default)]
pub struct Builder {
    resources: Vec<String>,
    consumers: ConsumerApps,
    ca_dir: Option<PathBuf>,
    assignments: ArmAssignments,
}

/// Entry point: `ArmEmulator::builder().resource(id).start(tokens)`.
#[derive(Debug)]
pub struct ArmEmulator;

impl ArmEmulator {
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl Builder {
    /// Adds a resource of the family by resource id (its type read from the id), with fresh keys.
    pub fn resource(mut self, resource_id: impl Into<String>) -> Self {
        self.resources.push(resource_id.into());
        self
    }

    /// Adds a storage account by resource id, with two fresh keys (the same as [`Builder::resource`]).
    pub fn storage_account(self, resource_id: impl Into<String>) -> Self {
        self.resource(resource_id)
    }

    /// Serves these consumer apps too ([`consumers`]).
    pub fn consumers(mut self, apps: ConsumerApps) -> Self {
        self.consumers = apps;
        self
    }

    /// The role assignments to enforce, shared: pass the Key Vault emulator's
    /// ([`crate::keyvault::RunningEmulator::arm_assignments`]) so that handler identities hold their
    /// infra/roles.json grants here too. Default: none, so every call is refused (403), as in Azure for an identity
    /// nobody granted anything.
    pub fn assignments(mut self, assignments: ArmAssignments) -> Self {
        self.assignments = assignments;
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
        let mut resources = BTreeMap::new();
        for id in self.resources {
            let Some(Route { kind, resource, action: None }) = route(&id) else {
                return Err(ArmError::BadResourceId(id));
            };
            let resource = resource.trim_end_matches('/').to_owned();
            resources.insert(resource.to_ascii_lowercase(), Resource::new(resource, kind));
        }
        let ca = EmulatorCa::create(self.ca_dir, "keyturn-arm")?;
        let acceptor = ca.acceptor();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(ArmError::Bind)?;
        let addr = listener.local_addr().map_err(ArmError::Bind)?;
        let resources: Resources = Arc::new(Mutex::new(resources));
        let hold = Arc::new(AtomicU64::new(0));
        let assignments = self.assignments;
        let service = Arc::new(Service {
            resources: resources.clone(),
            consumers: self.consumers,
            tokens,
            assignments: assignments.clone(),
            hold: hold.clone(),
        });
        let server = server::spawn(listener, Some(acceptor), move |req| Arc::clone(&service).handle(req));
        let url = format!("https://127.0.0.1:{}", addr.port());
        tracing::info!(%url, "ARM emulator listening");
        Ok(RunningArm { url, ca, resources, assignments, hold, server: Some(server) })
    }
}

/// A running emulator. Dropping it stops the listener.
#[derive(Debug)]
pub struct RunningArm {
    url: String,
    ca: EmulatorCa,
    resources: Resources,
    assignments: ArmAssignments,
    /// How long every answer is held after the request was carried out, in milliseconds.
    hold: Arc<AtomicU64>,
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

    /// The role assignments this emulator enforces.
    pub fn assignments(&self) -> &ArmAssignments {
        &self.assignments
    }

    /// Assigns `principal_id` infra/roles.json's custom role `role` (e.g. `keyturn key operator`) at the resource
    /// `resource_id`: for a test that calls Resource Manager as a broad client, visibly.
    pub fn assign_role(&self, principal_id: &str, role: &str, resource_id: &str) -> Result<(), MatrixError> {
        let role = RoleMatrix::embedded()?.custom_role(role)?;
        self.assignments.assign(principal_id, role, Scope::arm(resource_id.trim_end_matches('/')));
        Ok(())
    }

    /// The current value of `key` of the resource `resource_id`, by the name its type's module gives it
    /// (`key1`/`key2`; `primary`/`secondary`; Cosmos DB's `primaryReadonly`/`secondaryReadonly`; any case).
    pub fn key(&self, resource_id: &str, key: &str) -> Option<String> {
        let resources = lock(&self.resources);
        let resource = resources.get(&normalise(resource_id))?;
        Some(resource.keys[resource.kind.index(key)?].value.clone())
    }

    /// How many times `key` of the resource was regenerated (counted when Resource Manager accepts the request).
    pub fn regenerations(&self, resource_id: &str, key: &str) -> Option<u32> {
        let resources = lock(&self.resources);
        let resource = resources.get(&normalise(resource_id))?;
        Some(resource.regenerations[resource.kind.index(key)?])
    }

    /// How many list calls the resource answered.
    pub fn lists(&self, resource_id: &str) -> Option<u32> {
        lock(&self.resources).get(&normalise(resource_id)).map(|r| r.lists)
    }

    /// Holds every answer for `delay` after carrying out its request (zero: answer at once), so that a test can
    /// kill a client between a regeneration Resource Manager applied and the client learning of it.
    pub fn hold_answers(&self, delay: Duration) {
        self.hold.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Stops accepting and waits for open connections.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn normalise(resource_id: &str) -> String {
    resource_id.trim_end_matches('/').to_ascii_lowercase()
}

fn lock(resources: &Resources) -> std::sync::MutexGuard<'_, BTreeMap<String, Resource>> {
    // A poisoned map only means a request panicked between two map operations; the map itself is valid.
    resources.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request path split into the resource it addresses and the action after it.
struct Route<'a> {
    kind: &'static KeyType,
    /// The resource id, as the path spells it.
    resource: &'a str,
    /// What follows the resource id (`listKeys`, `regenerateAdminKey/primary`), if anything.
    action: Option<&'a str>,
}

/// The router: the provider namespace picks the type (a new resource provider is one more arm), whose module
/// says how long its resource ids are.
fn route(path: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let ["", subscriptions, subscription, groups, group, providers, namespace, rest @ ..] = segments.as_slice() else {
        return None;
    };
    let prefix_ok = subscriptions.eq_ignore_ascii_case("subscriptions")
        && groups.eq_ignore_ascii_case("resourceGroups")
        && providers.eq_ignore_ascii_case("providers")
        && !subscription.is_empty()
        && !group.is_empty();
    if !prefix_ok {
        return None;
    }
    let types: &[&'static KeyType] = match namespace.to_ascii_lowercase().as_str() {
        "microsoft.storage" => &[&storage::STORAGE],
        "microsoft.documentdb" => &[&cosmos::COSMOS_DB],
        "microsoft.cache" => &[&redis::REDIS],
        "microsoft.servicebus" => &[&messaging::SERVICE_BUS],
        "microsoft.eventhub" => &[&messaging::EVENT_HUBS],
        "microsoft.cognitiveservices" => &[&cognitive::COGNITIVE_SERVICES],
        "microsoft.search" => &[&search::SEARCH],
        _ => return None,
    };
    // The id is the path up to the end of the type's shape: 7 segments (with the leading empty one) + the shape.
    let (kind, length) = types.iter().find_map(|kind| kind.resource_length(rest).map(|length| (*kind, length)))?;
    let id_segments = 7 + length;
    let id_len = segments[..id_segments].iter().map(|s| s.len() + 1).sum::<usize>() - 1;
    let (resource, action) = path.split_at(id_len);
    let action = action.trim_matches('/');
    Some(Route { kind, resource, action: (!action.is_empty()).then_some(action) })
}

#[derive(Debug)]
struct Service {
    resources: Resources,
    consumers: ConsumerApps,
    tokens: TokenRegistry,
    assignments: ArmAssignments,
    hold: Arc<AtomicU64>,
}

/// The management action a request on `route` needs: the namespace, the resource types of the id (its names
/// left out) and the operation (`regenerateAdminKey/primary` → `regenerateAdminKey`), then `/action`.
fn required_action(route: &Route<'_>, operation: &str) -> String {
    // `/subscriptions/<s>/resourceGroups/<g>/providers/<namespace>/<type>/<name>[/<type>/<name>...]`
    let mut after_providers = route.resource.split('/').skip(6);
    let namespace = after_providers.next().unwrap_or_default();
    let types: Vec<&str> = after_providers.step_by(2).collect();
    let verb = operation.split('/').next().unwrap_or(operation);
    format!("{namespace}/{}/{verb}/action", types.join("/"))
}

/// ARM's 403 for a caller without the action: the gateway's code, message and failure-cause header.
fn authorization_failed(caller: &TokenInfo, action: &str, scope: &str) -> ServerResponse {
    let mut response = arm_error(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        &format!(
            "The client '{}' with object id '{}' does not have authorization to perform action '{action}' over \
             scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            caller.object_id, caller.object_id
        ),
    );
    response.headers_mut().insert("x-ms-failure-cause", http::HeaderValue::from_static("gateway"));
    response
}

/// ARM's error body.
pub(super) fn arm_error(status: StatusCode, code: &str, message: &str) -> ServerResponse {
    server::json_response(status, &serde_json::json!({ "error": { "code": code, "message": message } }))
}

impl Service {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> ServerResponse {
        let response = self.answer(req).await;
        let hold = self.hold.load(Ordering::Relaxed);
        if hold > 0 {
            tokio::time::sleep(Duration::from_millis(hold)).await;
        }
        response
    }

    async fn answer(&self, req: Request<Incoming>) -> ServerResponse {
        let caller = match self.caller(&req) {
            Ok(caller) => caller,
            Err(refusal) => return *refusal,
        };
        let refused = |action: &str, app: &str| {
            (!self.assignments.allows(&caller.object_id, action, &Scope::arm(app))).then(|| {
                tracing::warn!(principal = %caller.object_id, %action, %app, "ARM request refused: no role grants it");
                authorization_failed(&caller, action, app)
            })
        };
        if let Some(response) = self.consumers.handle(req.method(), req.uri().path(), req.uri().query(), refused) {
            return response;
        }
        let path = req.uri().path().to_owned();
        let Some(Route { kind, resource, action: Some(action) }) = route(&path) else {
            return not_served(&path);
        };
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
            Some(version) if version == kind.api_version => {}
            Some(other) => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidApiVersionParameter",
                    &format!(
                        "The api-version '{other}' is invalid. The local emulator supports '{}' for '{}'.",
                        kind.api_version, kind.name
                    ),
                );
            }
        }
        let Some(operation) = kind.operation(action) else { return not_served(&path) };
        let route = Route { kind, resource, action: Some(action) };
        let needed = required_action(&route, action);
        if !self.assignments.allows(&caller.object_id, &needed, &Scope::arm(resource)) {
            tracing::warn!(principal = %caller.object_id, action = %needed, %resource, "ARM request refused: no role grants it");
            return authorization_failed(&caller, &needed, resource);
        }
        if req.method() != Method::POST {
            return arm_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("The method '{}' is not allowed for '{action}'.", req.method()),
            );
        }
        let body: Bytes = match req.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "The request body could not be read.",
                );
            }
        };
        let mut resources = lock(&self.resources);
        if !resources.contains_key(&normalise(resource)) {
            return not_found(kind, resource, &resources);
        }
        keys::apply(&self.resources, &mut resources, &normalise(resource), operation, &body)
    }

    /// Who calls, from a valid Resource Manager token; else the 401 to answer (boxed: a response is large).
    fn caller(&self, req: &Request<Incoming>) -> Result<TokenInfo, Box<ServerResponse>> {
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
            return Err(Box::new(challenge(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )));
        };
        self.tokens.validate(token.trim(), RESOURCE).map_err(|rejection| {
            tracing::warn!(%rejection, "ARM request with a token the emulator refuses");
            Box::new(challenge("InvalidAuthenticationToken", &format!("The access token is invalid: {rejection}.")))
        })
    }
}

/// ARM's 404 for a resource it does not hold: `ResourceGroupNotFound` when no resource lives in the group.
fn not_found(kind: &KeyType, resource: &str, resources: &BTreeMap<String, Resource>) -> ServerResponse {
    let group_of = |id: &str| id.split('/').nth(4).map(str::to_ascii_lowercase);
    let group = group_of(resource).unwrap_or_default();
    if resources.values().any(|r| group_of(&r.id).as_deref() == Some(group.as_str())) {
        let name = resource.rsplit('/').next().unwrap_or(resource);
        arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!(
                "The Resource '{}/{name}' under resource group '{group}' was not found. For more details please go \
                 to https://aka.ms/ARMResourceNotFoundFix",
                kind.name
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

fn not_served(path: &str) -> ServerResponse {
    arm_error(
        StatusCode::NOT_FOUND,
        "NotServedByEmulator",
        &format!(
            "The local ARM emulator serves the list and regenerate key operations of {} only, not '{path}'.",
            keys::served_types()
        ),
    )
}

/// ARM's timestamp shape: seven fractional digits (100 ns ticks), `Z`.
pub(super) fn arm_time(time: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike as _;
    format!("{}.{:07}Z", time.format("%Y-%m-%dT%H:%M:%S"), time.nanosecond() % 1_000_000_000 / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_finds_each_types_resource_and_action_case_insensitively() {
        let base = "/subscriptions/s1/resourceGroups/rg/providers";
        for (path, name, resource_len, action) in [
            (
                "Microsoft.Storage/storageAccounts/acct/listKeys",
                "Microsoft.Storage/storageAccounts",
                3,
                Some("listKeys"),
            ),
            ("MICROSOFT.STORAGE/STORAGEACCOUNTS/acct", "Microsoft.Storage/storageAccounts", 3, None),
            (
                "Microsoft.DocumentDB/databaseAccounts/c/regenerateKey",
                "Microsoft.DocumentDB/databaseAccounts",
                3,
                Some("regenerateKey"),
            ),
            (
                "Microsoft.ServiceBus/namespaces/n/authorizationRules/r/listKeys",
                "Microsoft.ServiceBus/namespaces/authorizationRules",
                5,
                Some("listKeys"),
            ),
            (
                "Microsoft.ServiceBus/namespaces/n/queues/q/authorizationRules/r/regenerateKeys",
                "Microsoft.ServiceBus/namespaces/authorizationRules",
                7,
                Some("regenerateKeys"),
            ),
            (
                "Microsoft.EventHub/namespaces/n/eventhubs/h/authorizationRules/r",
                "Microsoft.EventHub/namespaces/authorizationRules",
                7,
                None,
            ),
            (
                "Microsoft.Search/searchServices/s/regenerateAdminKey/primary",
                "Microsoft.Search/searchServices",
                3,
                Some("regenerateAdminKey/primary"),
            ),
        ] {
            let full = format!("{base}/{path}");
            let route = route(&full).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(route.kind.name, name, "{path}");
            let expected: Vec<&str> = path.split('/').take(resource_len).collect();
            assert_eq!(route.resource, format!("{base}/{}", expected.join("/")), "{path}");
            assert_eq!(route.action, action, "{path}");
        }
        for bad in [
            format!("{base}/Microsoft.Sql/servers/a/listKeys"),
            format!("{base}/Microsoft.Storage/storageAccounts"),
            "/subscriptions//resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a".to_owned(),
            format!("{base}/Microsoft.ServiceBus/namespaces/n/listKeys"),
        ] {
            assert!(route(&bad).is_none(), "{bad}");
        }
    }

    /// The one place the key family's actions are written is infra/roles.json's `keyturn key operator`; what the
    /// emulator demands of each type it serves (the provider's table's calls: the e2e tests run the provider against
    /// it) must be exactly that list, so a type added here without its actions there fails.
    #[test]
    fn the_key_operator_role_holds_exactly_the_actions_the_served_operations_need() {
        use std::collections::BTreeSet;
        let role = RoleMatrix::embedded().unwrap().custom_role("keyturn key operator").unwrap();
        let granted: BTreeSet<String> = role.actions.iter().map(|a| a.to_ascii_lowercase()).collect();
        let mut needed = BTreeSet::new();
        for kind in keys::SERVED {
            let namespace = kind.name.split('/').next().unwrap();
            for shape in kind.shapes {
                // A resource id of this shape: every `*` a name, every `a|b` each of its literals in turn.
                let alternatives: Vec<Vec<&str>> = shape.iter().map(|p| p.split('|').collect()).collect();
                let widest = alternatives.iter().map(Vec::len).max().unwrap();
                for choice in 0..widest {
                    let segments: Vec<&str> = alternatives
                        .iter()
                        .map(|a| if a == &["*"] { "name" } else { a[choice.min(a.len() - 1)] })
                        .collect();
                    let id = format!("/subscriptions/s/resourceGroups/g/providers/{namespace}/{}", segments.join("/"));
                    let regenerate = match kind.regenerate {
                        keys::Regenerate::Body { action, .. } => action.to_owned(),
                        keys::Regenerate::Path { action, names } => format!("{action}/{}", names[0]),
                    };
                    for operation in [kind.list_action.to_owned(), regenerate] {
                        let path = format!("{id}/{operation}");
                        let route = route(&path).unwrap_or_else(|| panic!("{path}"));
                        needed.insert(required_action(&route, route.action.unwrap()).to_ascii_lowercase());
                    }
                }
            }
        }
        assert_eq!(needed, granted);
        let path =
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Search/searchServices/x/regenerateAdminKey/primary";
        let route = route(path).unwrap();
        assert_eq!(
            required_action(&route, route.action.unwrap()),
            "Microsoft.Search/searchServices/regenerateAdminKey/action"
        );
    }

    #[test]
    fn arm_timestamps_have_seven_fractional_digits() {
        let time = chrono::DateTime::parse_from_rfc3339("2021-03-18T04:42:22.432283612Z").unwrap().to_utc();
        assert_eq!(arm_time(time), "2021-03-18T04:42:22.4322836Z");
    }
}
