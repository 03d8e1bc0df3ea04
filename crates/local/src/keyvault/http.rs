//! One vault's HTTP surface: bearer challenge, api-version, RBAC, throttling, fault injection, then the route.
//!
//! Order matters and follows the service: a request without a valid token gets the 401 challenge before
//! anything else (the SDK's first request is always such a probe, sent with its body stripped), so it is
//! neither throttled nor faulted. Every operation is then checked against the role assignments: its data
//! action on the object it names (`…/vaults/<v>/secrets/<name>`), or on the vault for lists and restores.

use super::certs::{self, CertShape, CreateCertificateBody, UpdateCertificateBody};
use super::error::{ServiceError, error_response};
use super::keys::{self, CreateKeyBody, KeyBundle, RotationPolicyBody, UpdateKeyBody};
use super::limits::{FaultInjector, OperationKind, Throttler};
use super::secrets::{SecretBundle, SetSecretBody, Shape, UpdateSecretBody};
use super::server::{self, ServerResponse};
use super::store::StoredKind;
use super::store::VaultStore;
use super::wire::{self, Query};
use crate::identity::{TENANT_ID, TokenInfo, TokenRegistry, TokenRejection};
use crate::rbac::{Assignments, Scope};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The audience Key Vault tokens are issued for.
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";
const MAX_BODY: usize = 1024 * 1024;
const THROTTLED_BODY: &[u8] = br#"{"error":{"code":"Throttled","message":"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}}"#;

/// Everything one vault's listener needs to answer a request.
#[derive(Debug)]
pub struct VaultService {
    pub store: VaultStore,
    pub vault: String,
    pub tokens: TokenRegistry,
    pub tenant: String,
    pub throttler: Option<Throttler>,
    /// Requests answered 429 by the throttler, across every vault of the emulator.
    pub throttled: Arc<std::sync::atomic::AtomicUsize>,
    pub faults: Arc<FaultInjector>,
    pub assignments: Assignments,
    /// The region the 403 message names (`Vault: <name>;location=<region>`).
    pub location: String,
}

/// What an operation is checked against: the vault itself (lists, restores) or one named object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Vault,
    Object(StoredKind, String),
}

#[derive(Debug)]
enum Route {
    ListSecrets,
    SetSecret(String),
    GetSecret(String, Option<String>),
    UpdateSecret(String, Option<String>),
    SecretVersions(String),
    DeleteSecret(String),
    ListDeletedSecrets,
    GetDeletedSecret(String),
    PurgeSecret(String),
    RecoverSecret(String),
    ListKeys,
    CreateKey(String),
    GetKey(String, Option<String>),
    UpdateKey(String, Option<String>),
    KeyVersions(String),
    RotateKey(String),
    GetRotationPolicy(String),
    SetRotationPolicy(String),
    DeleteKey(String),
    ListDeletedKeys,
    GetDeletedKey(String),
    PurgeKey(String),
    RecoverKey(String),
    ListCertificates,
    CreateCertificate(String),
    CertificateOperation(String),
    GetCertificatePolicy(String),
    UpdateCertificatePolicy(String),
    GetCertificate(String, Option<String>),
    UpdateCertificate(String, Option<String>),
    CertificateVersions(String),
    DeleteCertificate(String),
    ListDeletedCertificates,
    GetDeletedCertificate(String),
    PurgeCertificate(String),
    RecoverCertificate(String),
    Backup(StoredKind, String),
    Restore(StoredKind),
}

impl Route {
    fn parse(method: &Method, path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let s = |x: &str| x.to_string();
        // An empty trailing segment ("/secrets/name/") means "latest version".
        let v = |x: &str| (!x.is_empty()).then(|| x.to_string());
        use Route::*;
        let route = match (method.as_str(), segments.as_slice()) {
            ("POST", ["secrets", "restore"]) => Restore(StoredKind::Secret),
            ("POST", ["keys", "restore"]) => Restore(StoredKind::Key),
            ("POST", ["certificates", "restore"]) => Restore(StoredKind::Certificate),
            ("POST", ["secrets", name, "backup"]) => Backup(StoredKind::Secret, s(name)),
            ("POST", ["keys", name, "backup"]) => Backup(StoredKind::Key, s(name)),
            ("POST", ["certificates", name, "backup"]) => Backup(StoredKind::Certificate, s(name)),
            ("GET", ["secrets"] | ["secrets", ""]) => ListSecrets,
            ("PUT", ["secrets", name]) => SetSecret(s(name)),
            ("GET", ["secrets", name, "versions"]) => SecretVersions(s(name)),
            ("GET", ["secrets", name]) => GetSecret(s(name), None),
            ("GET", ["secrets", name, version]) => GetSecret(s(name), v(version)),
            ("PATCH", ["secrets", name]) => UpdateSecret(s(name), None),
            ("PATCH", ["secrets", name, version]) => UpdateSecret(s(name), v(version)),
            ("DELETE", ["secrets", name]) => DeleteSecret(s(name)),
            ("GET", ["deletedsecrets"] | ["deletedsecrets", ""]) => ListDeletedSecrets,
            ("GET", ["deletedsecrets", name]) => GetDeletedSecret(s(name)),
            ("DELETE", ["deletedsecrets", name]) => PurgeSecret(s(name)),
            ("POST", ["deletedsecrets", name, "recover"]) => RecoverSecret(s(name)),
            ("GET", ["keys"] | ["keys", ""]) => ListKeys,
            ("POST", ["keys", name, "create"]) => CreateKey(s(name)),
            ("POST", ["keys", name, "rotate"]) => RotateKey(s(name)),
            ("GET", ["keys", name, "rotationpolicy"]) => GetRotationPolicy(s(name)),
            ("PUT", ["keys", name, "rotationpolicy"]) => SetRotationPolicy(s(name)),
            ("GET", ["keys", name, "versions"]) => KeyVersions(s(name)),
            ("GET", ["keys", name]) => GetKey(s(name), None),
            ("GET", ["keys", name, version]) => GetKey(s(name), v(version)),
            ("PATCH", ["keys", name]) => UpdateKey(s(name), None),
            ("PATCH", ["keys", name, version]) => UpdateKey(s(name), v(version)),
            ("DELETE", ["keys", name]) => DeleteKey(s(name)),
            ("GET", ["deletedkeys"] | ["deletedkeys", ""]) => ListDeletedKeys,
            ("GET", ["deletedkeys", name]) => GetDeletedKey(s(name)),
            ("DELETE", ["deletedkeys", name]) => PurgeKey(s(name)),
            ("POST", ["deletedkeys", name, "recover"]) => RecoverKey(s(name)),
            (_, ["certificates", "contacts" | "issuers" | "restore", ..]) => return None,
            ("GET", ["certificates"] | ["certificates", ""]) => ListCertificates,
            ("POST", ["certificates", name, "create"]) => CreateCertificate(s(name)),
            ("GET", ["certificates", name, "pending"]) => CertificateOperation(s(name)),
            ("GET", ["certificates", name, "policy"]) => GetCertificatePolicy(s(name)),
            ("PATCH", ["certificates", name, "policy"]) => UpdateCertificatePolicy(s(name)),
            ("GET", ["certificates", name, "versions"]) => CertificateVersions(s(name)),
            ("GET", ["certificates", name]) => GetCertificate(s(name), None),
            ("GET", ["certificates", name, version]) => GetCertificate(s(name), v(version)),
            ("PATCH", ["certificates", name]) => UpdateCertificate(s(name), None),
            ("PATCH", ["certificates", name, version]) => UpdateCertificate(s(name), v(version)),
            ("DELETE", ["certificates", name]) => DeleteCertificate(s(name)),
            ("GET", ["deletedcertificates"] | ["deletedcertificates", ""]) => ListDeletedCertificates,
            ("GET", ["deletedcertificates", name]) => GetDeletedCertificate(s(name)),
            ("DELETE", ["deletedcertificates", name]) => PurgeCertificate(s(name)),
            ("POST", ["deletedcertificates", name, "recover"]) => RecoverCertificate(s(name)),
            _ => return None,
        };
        Some(route)
    }

    /// The data action (without the `Microsoft.KeyVault/vaults/` prefix) and what it is checked on.
    ///
    /// Published: secrets get/set/update/delete/recover/purge/backup/restore and list (readMetadata); keys
    /// create/rotate/read/update/delete/...; rotation policies keyrotationpolicies/read|write; certificates
    /// create/read/update/delete/.... Undocumented, chosen here: reading deleted objects uses the kind's read
    /// action (secrets: readMetadata), and listing one object's versions is checked on that object (a list of
    /// the whole collection is checked on the vault, as observed on the service).
    fn authorization(&self) -> (&'static str, Target) {
        use Route::*;
        use StoredKind::{Certificate as C, Key as K, Secret as S};
        let on = |kind: StoredKind, name: &String| Target::Object(kind, name.clone());
        match self {
            ListSecrets | ListDeletedSecrets => ("secrets/readMetadata/action", Target::Vault),
            SetSecret(n) => ("secrets/setSecret/action", on(S, n)),
            GetSecret(n, _) => ("secrets/getSecret/action", on(S, n)),
            UpdateSecret(n, _) => ("secrets/update/action", on(S, n)),
            SecretVersions(n) | GetDeletedSecret(n) => ("secrets/readMetadata/action", on(S, n)),
            DeleteSecret(n) => ("secrets/delete", on(S, n)),
            PurgeSecret(n) => ("secrets/purge/action", on(S, n)),
            RecoverSecret(n) => ("secrets/recover/action", on(S, n)),
            ListKeys | ListDeletedKeys => ("keys/read", Target::Vault),
            CreateKey(n) => ("keys/create/action", on(K, n)),
            GetKey(n, _) | KeyVersions(n) | GetDeletedKey(n) => ("keys/read", on(K, n)),
            UpdateKey(n, _) => ("keys/update/action", on(K, n)),
            RotateKey(n) => ("keys/rotate/action", on(K, n)),
            GetRotationPolicy(n) => ("keyrotationpolicies/read", on(K, n)),
            SetRotationPolicy(n) => ("keyrotationpolicies/write", on(K, n)),
            DeleteKey(n) => ("keys/delete", on(K, n)),
            PurgeKey(n) => ("keys/purge/action", on(K, n)),
            RecoverKey(n) => ("keys/recover/action", on(K, n)),
            ListCertificates | ListDeletedCertificates => ("certificates/read", Target::Vault),
            CreateCertificate(n) => ("certificates/create/action", on(C, n)),
            CertificateOperation(n) | GetCertificatePolicy(n) | GetCertificate(n, _) | CertificateVersions(n) => {
                ("certificates/read", on(C, n))
            }
            GetDeletedCertificate(n) => ("certificates/read", on(C, n)),
            UpdateCertificatePolicy(n) | UpdateCertificate(n, _) => ("certificates/update/action", on(C, n)),
            DeleteCertificate(n) => ("certificates/delete", on(C, n)),
            PurgeCertificate(n) => ("certificates/purge/action", on(C, n)),
            RecoverCertificate(n) => ("certificates/recover/action", on(C, n)),
            Backup(kind, n) => (backup_action(*kind, "backup"), on(*kind, n)),
            // A restore names no object: it is checked on the vault.
            Restore(kind) => (backup_action(*kind, "restore"), Target::Vault),
        }
    }

    fn kind(&self) -> OperationKind {
        use OperationKind as K;
        use Route::*;
        match self {
            SetSecret(_) => K::SecretCreate,
            ListSecrets | GetSecret(..) | SecretVersions(_) | ListDeletedSecrets | GetDeletedSecret(_) => K::SecretRead,
            UpdateSecret(..) => K::SecretUpdate,
            DeleteSecret(_) | PurgeSecret(_) | RecoverSecret(_) => K::SecretDelete,
            CreateKey(_) | RotateKey(_) => K::KeyCreate,
            ListKeys | GetKey(..) | KeyVersions(_) | GetRotationPolicy(_) | ListDeletedKeys | GetDeletedKey(_) => {
                K::KeyRead
            }
            UpdateKey(..) | SetRotationPolicy(_) => K::KeyUpdate,
            DeleteKey(_) | PurgeKey(_) | RecoverKey(_) => K::KeyDelete,
            CreateCertificate(_) => K::CertificateCreate,
            ListCertificates
            | CertificateOperation(_)
            | GetCertificatePolicy(_)
            | GetCertificate(..)
            | CertificateVersions(_)
            | ListDeletedCertificates
            | GetDeletedCertificate(_) => K::CertificateRead,
            UpdateCertificatePolicy(_) | UpdateCertificate(..) => K::CertificateUpdate,
            DeleteCertificate(_) | PurgeCertificate(_) | RecoverCertificate(_) => K::CertificateDelete,
            Backup(StoredKind::Secret, _) => K::SecretRead,
            Backup(StoredKind::Key, _) => K::KeyRead,
            Backup(StoredKind::Certificate, _) => K::CertificateRead,
            Restore(StoredKind::Secret) => K::SecretCreate,
            Restore(StoredKind::Key) => K::KeyCreate,
            Restore(StoredKind::Certificate) => K::CertificateCreate,
        }
    }
}

impl VaultService {
    /// Answers one request, with the vault's time in its `Date` header.
    ///
    /// Key Vault sends `Date` on every response, the 401 challenge and errors included. Here it follows the
    /// stack's movable clock, which judges `exp` and raises the expiry events (left alone, hyper would stamp the
    /// machine's time): a handler that checks an event against the vault's own time sees the clock that expired
    /// the version, however far a test has moved it ahead of the machine's.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> ServerResponse {
        let now = self.store.clock().now();
        let mut response = self.answer(req).await;
        if let Some(date) = wire::http_date(now) {
            response.headers_mut().insert(header::DATE, date);
        }
        response
    }

    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> ServerResponse {
        let (parts, body) = req.into_parts();
        let caller = match self.authenticate(&parts.headers) {
            Ok(caller) => caller,
            Err(refusal) => return *refusal,
        };
        let query = Query::parse(parts.uri.query());
        if let Err(e) = query.check_api_version() {
            return e.to_response();
        }
        let Some(route) = Route::parse(&parts.method, parts.uri.path()) else {
            return ServiceError::NotSupported(format!(
                "{} {} is not an operation the local Key Vault emulator supports.",
                parts.method,
                parts.uri.path()
            ))
            .to_response();
        };
        if let Err(denied) = self.authorize(&caller, &route) {
            return denied.to_response();
        }
        let kind = route.kind();
        if let Some(throttler) = &self.throttler
            && let Err(retry_after) = throttler.admit(kind)
        {
            tracing::debug!(vault = %self.vault, ?kind, "throttled");
            self.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut response = server::json_bytes(StatusCode::TOO_MANY_REQUESTS, THROTTLED_BODY.to_vec());
            if let Some(after) = retry_after
                && let Ok(value) = HeaderValue::from_str(&after.as_secs().to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        let (latency, fault) = self.faults.decide(kind);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(status) = fault {
            tracing::debug!(vault = %self.vault, ?kind, %status, "fault injected");
            let code =
                if status == StatusCode::SERVICE_UNAVAILABLE { "ServiceUnavailable" } else { "InternalServerError" };
            return error_response(
                status,
                code,
                &format!("The local emulator injected this {} for a {kind:?} operation.", status.as_u16()),
                None,
            );
        }
        let body = if matches!(parts.method, Method::PUT | Method::PATCH | Method::POST) {
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    return ServiceError::BadParameter(format!("The request body could not be read: {error}"))
                        .to_response();
                }
            }
        } else {
            Bytes::new()
        };
        let base = base_url(&parts, &self.store, &self.vault);
        match self.dispatch(route, &query, &base, &body).await {
            Ok(response) => response,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::error!(vault = %self.vault, error = %e, "request failed");
                }
                e.to_response()
            }
        }
    }

    /// Checks `route`'s data action against the caller's role assignments; the service's 403 when none grants it.
    fn authorize(&self, caller: &TokenInfo, route: &Route) -> Result<(), ServiceError> {
        let (action, target) = route.authorization();
        let action = format!("{}{action}", keyturn_vault::rbac::PREFIX);
        let resource = match &target {
            Target::Vault => Scope::vault(&self.vault),
            Target::Object(kind, name) => Scope::object(&self.vault, *kind, name),
        };
        if self.assignments.allows(&caller.object_id, &action, &resource) {
            return Ok(());
        }
        tracing::warn!(vault = %self.vault, caller = %caller.object_id, %action, %resource, "denied by RBAC");
        Err(ServiceError::ForbiddenByRbac(denial_message(caller, &action, &resource, &self.vault, &self.location)))
    }

    /// The caller's token when the request carries one this stack issued for Key Vault; else the 401 to send.
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<TokenInfo, Box<ServerResponse>> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let message = match token {
            None => "AKV10000: Request is missing a Bearer or PoP token.".to_string(),
            Some(token) => match self.tokens.validate(token, VAULT_RESOURCE) {
                Ok(info) => return Ok(info),
                Err(TokenRejection::Unknown) => {
                    "AKV10032: Invalid issuer. The token was not issued by this local stack's identity endpoint."
                        .to_string()
                }
                Err(TokenRejection::Expired) => "AKV10013: Token expired.".to_string(),
                Err(TokenRejection::WrongAudience { expected, actual }) => {
                    format!("AKV10022: Invalid audience. Expected {expected}, found: {actual}.")
                }
            },
        };
        if token.is_some() {
            tracing::warn!(vault = %self.vault, %message, "bearer token refused");
        }
        let mut response = error_response(StatusCode::UNAUTHORIZED, "Unauthorized", &message, None);
        let challenge = format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"{VAULT_RESOURCE}\"",
            self.tenant
        );
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        Err(Box::new(response))
    }

    async fn dispatch(
        &self,
        route: Route,
        query: &Query,
        base: &str,
        body: &[u8],
    ) -> Result<ServerResponse, ServiceError> {
        let store = &self.store;
        let vault = self.vault.as_str();
        let ok = |value: &dyn erased::Json| Ok(server::json_bytes(StatusCode::OK, value.to_vec()));
        use Route::*;
        match route {
            ListSecrets => {
                let all = store.list_secrets(vault)?;
                let items: Vec<_> =
                    all.iter().map(|s| SecretBundle::new(base, &s.name, &s.version, Shape::ListItem)).collect();
                ok(&query.page(items, base, "/secrets")?)
            }
            SetSecret(name) => {
                let spec = parse::<SetSecretBody>(body)?.into_spec()?;
                let view = store.set_secret(vault, &name, spec)?;
                ok(&SecretBundle::new(base, &view.name, &view.version, Shape::Full))
            }
            GetSecret(name, version) => {
                let view = store.get_secret(vault, &name, version.as_deref())?;
                let mut bundle = SecretBundle::new(base, &view.name, &view.version, Shape::Full);
                if view.version.data.managed && query.api_version.as_deref().is_some_and(wire::has_previous_version) {
                    bundle.previous_version = store.previous_secret_version(vault, &name, &view.version.version);
                }
                ok(&bundle)
            }
            UpdateSecret(name, version) => {
                let patch = parse::<UpdateSecretBody>(body)?.into();
                let view = store.update_secret(vault, &name, version.as_deref(), patch)?;
                // The service answers an update without the value.
                ok(&SecretBundle::new(base, &view.name, &view.version, Shape::VersionItem))
            }
            SecretVersions(name) => {
                let all = store.list_secret_versions(vault, &name)?;
                let items: Vec<_> =
                    all.iter().map(|s| SecretBundle::new(base, &s.name, &s.version, Shape::VersionItem)).collect();
                ok(&query.page(items, base, &format!("/secrets/{name}/versions"))?)
            }
            DeleteSecret(name) => {
                let deleted = store.delete_secret(vault, &name)?;
                ok(&SecretBundle::deleted(base, &deleted, false))
            }
            ListDeletedSecrets => {
                let all = store.list_deleted_secrets(vault)?;
                let items: Vec<_> = all.iter().filter_map(|d| SecretBundle::deleted(base, d, true)).collect();
                ok(&query.page(items, base, "/deletedsecrets")?)
            }
            GetDeletedSecret(name) => {
                let deleted = store.get_deleted_secret(vault, &name)?;
                ok(&SecretBundle::deleted(base, &deleted, false))
            }
            PurgeSecret(name) => {
                store.purge_secret(vault, &name)?;
                Ok(server::empty(StatusCode::NO_CONTENT))
            }
            RecoverSecret(name) => {
                let view = store.recover_secret(vault, &name)?;
                ok(&SecretBundle::new(base, &view.name, &view.version, Shape::VersionItem))
            }
            ListKeys => {
                let all = store.list_keys(vault)?;
                let items: Vec<_> = all.iter().map(|k| KeyBundle::item(base, &k.name, &k.version, false)).collect();
                ok(&query.page(items, base, "/keys")?)
            }
            CreateKey(name) => {
                let input = parse::<CreateKeyBody>(body)?.into_input()?;
                let store = store.clone();
                let vault = vault.to_string();
                let view = blocking(move || store.create_key(&vault, &name, input)).await?;
                ok(&KeyBundle::full(base, &view.name, &view.version))
            }
            GetKey(name, version) => {
                let view = store.get_key(vault, &name, version.as_deref())?;
                ok(&KeyBundle::full(base, &view.name, &view.version))
            }
            UpdateKey(name, version) => {
                let b = parse::<UpdateKeyBody>(body)?;
                let view =
                    store.update_key(vault, &name, version.as_deref(), b.attributes.into(), b.tags, b.key_ops)?;
                ok(&KeyBundle::full(base, &view.name, &view.version))
            }
            KeyVersions(name) => {
                let all = store.list_key_versions(vault, &name)?;
                let items: Vec<_> = all.iter().map(|k| KeyBundle::item(base, &k.name, &k.version, true)).collect();
                ok(&query.page(items, base, &format!("/keys/{name}/versions"))?)
            }
            RotateKey(name) => {
                let store = store.clone();
                let vault = vault.to_string();
                let view = blocking(move || store.rotate_key(&vault, &name)).await?;
                ok(&KeyBundle::full(base, &view.name, &view.version))
            }
            GetRotationPolicy(name) => {
                let policy = store.get_rotation_policy(vault, &name)?;
                let display = store.get_key(vault, &name, None)?.name;
                ok(&keys::rotation_policy_json(base, &display, &policy))
            }
            SetRotationPolicy(name) => {
                let b = parse::<RotationPolicyBody>(body)?;
                let expiry = b.attributes.and_then(|a| a.expiry_time);
                let policy = store.set_rotation_policy(vault, &name, b.lifetime_actions, expiry)?;
                let display = store.get_key(vault, &name, None)?.name;
                ok(&keys::rotation_policy_json(base, &display, &policy))
            }
            DeleteKey(name) => {
                let deleted = store.delete_key(vault, &name)?;
                ok(&KeyBundle::deleted(base, &deleted, false))
            }
            ListDeletedKeys => {
                let all = store.list_deleted_keys(vault)?;
                let items: Vec<_> = all.iter().filter_map(|d| KeyBundle::deleted(base, d, true)).collect();
                ok(&query.page(items, base, "/deletedkeys")?)
            }
            GetDeletedKey(name) => {
                let deleted = store.get_deleted_key(vault, &name)?;
                ok(&KeyBundle::deleted(base, &deleted, false))
            }
            PurgeKey(name) => {
                store.purge_key(vault, &name)?;
                Ok(server::empty(StatusCode::NO_CONTENT))
            }
            RecoverKey(name) => {
                let view = store.recover_key(vault, &name)?;
                ok(&KeyBundle::full(base, &view.name, &view.version))
            }
            ListCertificates => {
                let all = store.list_certificates(vault)?;
                let items: Vec<_> = all.iter().map(|c| certs::certificate_json(base, c, CertShape::ListItem)).collect();
                ok(&query.page(items, base, "/certificates")?)
            }
            CreateCertificate(name) => {
                let b: CreateCertificateBody =
                    if body.is_empty() { CreateCertificateBody::default() } else { parse(body)? };
                let store2 = store.clone();
                let vault2 = vault.to_string();
                let (display, op) = blocking(move || {
                    store2.create_certificate(&vault2, &name, b.policy, b.attributes.into(), b.tags.unwrap_or_default())
                })
                .await?;
                let mut response = server::json_bytes(
                    StatusCode::ACCEPTED,
                    erased::Json::to_vec(&certs::operation_json(base, &display, &op)),
                );
                let wait = (op.completes_at - store.now()).max(0);
                let headers = response.headers_mut();
                if let Ok(location) = HeaderValue::from_str(&format!("{base}/certificates/{display}/pending")) {
                    headers.insert(header::LOCATION, location);
                }
                headers.insert(header::RETRY_AFTER, HeaderValue::from(wait));
                Ok(response)
            }
            CertificateOperation(name) => {
                let (display, op) = store.certificate_operation(vault, &name)?;
                ok(&certs::operation_json(base, &display, &op))
            }
            GetCertificatePolicy(name) => {
                let (display, policy) = store.get_certificate_policy(vault, &name)?;
                ok(&certs::policy_json(base, &display, &policy))
            }
            UpdateCertificatePolicy(name) => {
                let patch = parse(body)?;
                let (display, policy) = store.update_certificate_policy(vault, &name, patch)?;
                ok(&certs::policy_json(base, &display, &policy))
            }
            GetCertificate(name, version) => {
                let view = store.get_certificate(vault, &name, version.as_deref())?;
                ok(&certs::certificate_json(base, &view, CertShape::Full))
            }
            UpdateCertificate(name, version) => {
                let b: UpdateCertificateBody = parse(body)?;
                let view = store.update_certificate(vault, &name, version.as_deref(), b)?;
                ok(&certs::certificate_json(base, &view, CertShape::Full))
            }
            CertificateVersions(name) => {
                let all = store.list_certificate_versions(vault, &name)?;
                let items: Vec<_> =
                    all.iter().map(|c| certs::certificate_json(base, c, CertShape::VersionItem)).collect();
                ok(&query.page(items, base, &format!("/certificates/{name}/versions"))?)
            }
            DeleteCertificate(name) => {
                let deleted = store.delete_certificate(vault, &name)?;
                ok(&certs::deleted_certificate_json(base, &deleted, false))
            }
            ListDeletedCertificates => {
                let all = store.list_deleted_certificates(vault)?;
                let items: Vec<_> = all.iter().filter_map(|d| certs::deleted_certificate_json(base, d, true)).collect();
                ok(&query.page(items, base, "/deletedcertificates")?)
            }
            GetDeletedCertificate(name) => {
                let deleted = store.get_deleted_certificate(vault, &name)?;
                ok(&certs::deleted_certificate_json(base, &deleted, false))
            }
            PurgeCertificate(name) => {
                store.purge_certificate(vault, &name)?;
                Ok(server::empty(StatusCode::NO_CONTENT))
            }
            RecoverCertificate(name) => {
                let view = store.recover_certificate(vault, &name)?;
                ok(&certs::certificate_json(base, &view, CertShape::Full))
            }
            Backup(kind, name) => ok(&serde_json::json!({ "value": store.backup(vault, kind, &name)? })),
            Restore(kind) => {
                let blob = parse::<BackupBody>(body)?.value;
                let name = store.restore(vault, kind, &blob)?;
                match kind {
                    StoredKind::Secret => {
                        let state = store.vault(vault)?.read();
                        let (object, latest) = state.secrets.version(kind, &name, None)?;
                        ok(&SecretBundle::new(base, &object.name, latest, Shape::VersionItem))
                    }
                    StoredKind::Key => {
                        let view = store.get_key(vault, &name, None)?;
                        ok(&KeyBundle::full(base, &view.name, &view.version))
                    }
                    StoredKind::Certificate => {
                        let view = store.get_certificate(vault, &name, None)?;
                        ok(&certs::certificate_json(base, &view, CertShape::Full))
                    }
                }
            }
        }
    }
}

/// The service's RBAC denial text: lines joined by CRLF, ending in one, the resource lower-cased, and the
/// trailing space after the decision reason that the service sends.
pub fn denial_message(caller: &TokenInfo, action: &str, resource: &Scope, vault: &str, location: &str) -> String {
    let lines = [
        "Caller is not authorized to perform action on resource.".to_owned(),
        "If role assignments, deny assignments or role definitions were changed recently, please observe propagation time."
            .to_owned(),
        format!("Caller: appid={};oid={};iss=https://sts.windows.net/{TENANT_ID}/", caller.client_id, caller.object_id),
        format!("Action: '{action}'"),
        format!("Resource: '{}'", resource.as_str().to_ascii_lowercase()),
        "Assignment: (not found)".to_owned(),
        "DenyAssignmentId: null".to_owned(),
        "DecisionReason: 'DeniedWithNoValidRBAC' ".to_owned(),
        format!("Vault: {vault};location={location}"),
    ];
    let mut message = lines.join("\r\n");
    message.push_str("\r\n");
    message
}

/// Serialising any model through one `&dyn` keeps `dispatch` free of a generic closure per arm.
mod erased {
    pub(super) trait Json {
        fn to_vec(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_vec(&self) -> Vec<u8> {
            // Models have string keys only, so serialisation cannot fail; an empty body would surface as a
            // client-side parse error rather than a panic here.
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}

/// `{"value": "<blob>"}`, the body of a restore.
#[derive(serde::Deserialize)]
struct BackupBody {
    value: String,
}

/// `secrets/backup/action`, `keys/restore/action`, ...
fn backup_action(kind: StoredKind, op: &str) -> &'static str {
    match (kind, op) {
        (StoredKind::Secret, "backup") => "secrets/backup/action",
        (StoredKind::Secret, _) => "secrets/restore/action",
        (StoredKind::Key, "backup") => "keys/backup/action",
        (StoredKind::Key, _) => "keys/restore/action",
        (StoredKind::Certificate, "backup") => "certificates/backup/action",
        (StoredKind::Certificate, _) => "certificates/restore/action",
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(body).map_err(|e| ServiceError::BadParameter(format!("The request body is not valid: {e}")))
}

/// Runs CPU-heavy work (key generation) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Internal(format!("The emulator's worker failed: {e}")))?
}

/// `https://<Host header>`: ids point back at the address the client used (127.0.0.1, localhost, or
/// `<vault>.vault.azure.net` resolved locally); the vault's canonical URL when no Host was sent.
fn base_url(parts: &http::request::Parts, store: &VaultStore, vault: &str) -> String {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    match host {
        Some(host) => format!("https://{host}"),
        None => store.vault(vault).map(|v| v.base_url.clone()).unwrap_or_default(),
    }
}
