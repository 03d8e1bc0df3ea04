//! The Graph emulator's requests: routing, the bearer token and permission checks, the application
//! operations, and Graph's error shape.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Password, Permission, Shared, State, lock};
use crate::identity::{TokenInfo, TokenRegistry};
use crate::keyvault::server::{self, ServerResponse};

/// How long an added password lives when the request names no end (Graph's documented default).
const DEFAULT_LIFETIME_DAYS: i64 = 2 * 365;
const SELECTABLE: [&str; 4] = ["id", "appId", "displayName", "passwordCredentials"];

#[derive(Debug)]
pub(super) struct Service {
    pub(super) state: Shared,
    pub(super) tokens: TokenRegistry,
}

/// How a request names its application.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AppRef {
    ObjectId(String),
    AppId(String),
}

/// What a Graph request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operation {
    Get,
    AddPassword,
    RemovePassword,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddPasswordIn {
    password_credential: Option<PasswordCredentialIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordCredentialIn {
    display_name: Option<String>,
    start_date_time: Option<DateTime<Utc>>,
    end_date_time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemovePasswordIn {
    key_id: Option<String>,
}

impl Service {
    pub(super) async fn handle(self: Arc<Self>, req: Request<Incoming>) -> ServerResponse {
        let path = req.uri().path().to_owned();
        if path.ends_with("/oauth2/v2.0/token") {
            return super::login::sign_in(&self.state, &self.tokens, req).await;
        }
        let Some((app, operation)) = route(&path) else {
            return graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Resource not found for the segment '{}'.", path.rsplit('/').next().unwrap_or_default()),
            );
        };
        let expected = if operation == Operation::Get { Method::GET } else { Method::POST };
        if req.method() != expected {
            return graph_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request_BadRequest",
                &format!("The HTTP method '{}' is not allowed for this resource.", req.method()),
            );
        }
        let caller = match self.caller(&req) {
            Ok(caller) => caller,
            Err(refusal) => return *refusal,
        };
        {
            let mut state = lock(&self.state);
            if state.throttled > 0 {
                state.throttled -= 1;
                state.throttled_answers += 1;
                let mut response = graph_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests. Please retry after the time the Retry-After header gives.",
                );
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
        }
        let query: BTreeMap<String, String> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
        let body = match req.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "The request body could not be read.",
                );
            }
        };
        let (response, delay) = {
            let mut state = lock(&self.state);
            let response = match authorised_app(&state, &app, &caller) {
                Err(refusal) => *refusal,
                Ok(object_id) => match operation {
                    Operation::Get => get(&state, &object_id, query.get("$select").map(String::as_str)),
                    Operation::AddPassword => add_password(&mut state, &object_id, &body),
                    Operation::RemovePassword => remove_password(&mut state, &object_id, &body),
                },
            };
            (response, state.answer_delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        response
    }

    /// The caller's token, checked for Graph's audience.
    fn caller(&self, req: &Request<Incoming>) -> Result<TokenInfo, Box<ServerResponse>> {
        let unauthorised = |message: &str| {
            let mut response = graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", \
                     client_id=\"00000003-0000-0000-c000-000000000000\"",
                ),
            );
            response
        };
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Box::new(unauthorised("Access token is empty.")))?;
        self.tokens.validate(token, super::RESOURCE).map_err(|rejection| {
            tracing::warn!(%rejection, "Graph request with a token the emulator refuses");
            Box::new(unauthorised(&format!("Access token validation failure. Invalid audience or token: {rejection}.")))
        })
    }
}

/// `/v1.0/applications/{id}[/{action}]` or `/v1.0/applications(appId='{id}')[/{action}]`; actions may be
/// written with their namespace (`microsoft.graph.addPassword`), as the SDKs do.
fn route(path: &str) -> Option<(AppRef, Operation)> {
    let rest = path.strip_prefix("/v1.0/")?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let (app, action) = match segments.as_slice() {
        ["applications", id] => (AppRef::ObjectId((*id).to_ascii_lowercase()), None),
        ["applications", id, action] => (AppRef::ObjectId((*id).to_ascii_lowercase()), Some(*action)),
        [by_app_id] => (by_app_id_ref(by_app_id)?, None),
        [by_app_id, action] => (by_app_id_ref(by_app_id)?, Some(*action)),
        _ => return None,
    };
    let operation = match action.map(|a| a.trim_start_matches("microsoft.graph.").to_ascii_lowercase()).as_deref() {
        None => Operation::Get,
        Some("addpassword") => Operation::AddPassword,
        Some("removepassword") => Operation::RemovePassword,
        Some(_) => return None,
    };
    Some((app, operation))
}

fn by_app_id_ref(segment: &str) -> Option<AppRef> {
    let decoded = percent_decode(segment);
    let id = decoded.strip_prefix("applications(appId='")?.strip_suffix("')")?;
    Some(AppRef::AppId(id.to_ascii_lowercase()))
}

/// `%XX` escapes decoded (clients escape the quotes and parentheses of `(appId='...')` differently).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| segment.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The application a request names, if the caller may act on it: any Application permission to learn whether
/// it exists, and `ReadWrite.All` or ownership with `ReadWrite.OwnedBy` to read or change it.
fn authorised_app(state: &State, app: &AppRef, caller: &TokenInfo) -> Result<String, Box<ServerResponse>> {
    let denied = || {
        graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    };
    let caller_id = caller.object_id.to_ascii_lowercase();
    let permissions = state.grants.get(&caller_id).cloned().unwrap_or_default();
    if permissions.is_empty() {
        tracing::warn!(caller = %caller.object_id, "Graph request from a principal without an Application permission");
        return Err(Box::new(denied()));
    }
    let found = state.apps.values().find(|a| match app {
        AppRef::ObjectId(id) => a.ids.object_id.eq_ignore_ascii_case(id),
        AppRef::AppId(id) => a.ids.app_id.eq_ignore_ascii_case(id),
    });
    let Some(found) = found else {
        let (AppRef::ObjectId(id) | AppRef::AppId(id)) = app;
        return Err(Box::new(not_found(id)));
    };
    let allowed = permissions.contains(&Permission::ApplicationReadWriteAll)
        || (permissions.contains(&Permission::ApplicationReadWriteOwnedBy) && found.owners.contains(&caller_id));
    if !allowed {
        tracing::warn!(caller = %caller.object_id, app = %found.ids.object_id, "Graph request on an application the caller does not own");
        return Err(Box::new(denied()));
    }
    Ok(found.ids.object_id.clone())
}

fn not_found(id: &str) -> ServerResponse {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
    )
}

fn get(state: &State, object_id: &str, select: Option<&str>) -> ServerResponse {
    let Some(app) = state.apps.get(object_id) else { return not_found(object_id) };
    let selected: Vec<&str> = match select {
        None => SELECTABLE.to_vec(),
        Some(list) => list.split(',').map(str::trim).filter(|p| !p.is_empty()).collect(),
    };
    let mut body = serde_json::Map::new();
    body.insert(
        "@odata.context".to_owned(),
        Value::from(format!(
            "https://graph.microsoft.com/v1.0/$metadata#applications(${})/$entity",
            selected.join(",")
        )),
    );
    for property in selected {
        let value = match SELECTABLE.iter().find(|p| p.eq_ignore_ascii_case(property)) {
            Some(&"id") => Value::from(app.ids.object_id.clone()),
            Some(&"appId") => Value::from(app.ids.app_id.clone()),
            Some(&"displayName") => Value::from(app.display_name.clone()),
            Some(_) => Value::from(app.passwords.iter().map(|p| credential_json(p, false)).collect::<Vec<_>>()),
            None => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    &format!("Could not find a property named '{property}' on type 'microsoft.graph.application'."),
                );
            }
        };
        body.insert(property.to_owned(), value);
    }
    server::json_response(StatusCode::OK, &Value::Object(body))
}

fn add_password(state: &mut State, object_id: &str, body: &[u8]) -> ServerResponse {
    let parsed: AddPasswordIn = match serde_json::from_slice(if body.is_empty() { b"{}" } else { body }) {
        Ok(parsed) => parsed,
        Err(_) => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "Invalid request body: expected {\"passwordCredential\":{...}}.",
            );
        }
    };
    let requested = parsed.password_credential.unwrap_or(PasswordCredentialIn {
        display_name: None,
        start_date_time: None,
        end_date_time: None,
    });
    let start = requested.start_date_time.unwrap_or_else(Utc::now);
    let end = requested.end_date_time.unwrap_or(start + chrono::Duration::days(DEFAULT_LIFETIME_DAYS));
    if end <= start {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "Invalid value specified for property 'endDateTime' of resource 'PasswordCredential': it must be after startDateTime.",
        );
    }
    let Some(app) = state.apps.get_mut(object_id) else { return not_found(object_id) };
    let password = Password::new(requested.display_name, start, end);
    let mut response = credential_json(&password, true);
    tracing::info!(app = %object_id, key_id = %password.info.key_id, "password added");
    app.passwords.push(password);
    state.adds += 1;
    if let Value::Object(map) = &mut response {
        map.insert(
            "@odata.context".to_owned(),
            Value::from("https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.passwordCredential"),
        );
    }
    server::json_response(StatusCode::OK, &response)
}

fn remove_password(state: &mut State, object_id: &str, body: &[u8]) -> ServerResponse {
    let key_id = serde_json::from_slice::<RemovePasswordIn>(body).ok().and_then(|b| b.key_id);
    let Some(key_id) = key_id.filter(|k| uuid::Uuid::parse_str(k).is_ok()) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "Invalid request body: 'keyId' must be a GUID.",
        );
    };
    let Some(app) = state.apps.get_mut(object_id) else { return not_found(object_id) };
    let before = app.passwords.len();
    app.passwords.retain(|p| !p.info.key_id.eq_ignore_ascii_case(&key_id));
    if app.passwords.len() == before {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            &format!("No password credential found with keyId '{key_id}'."),
        );
    }
    tracing::info!(app = %object_id, %key_id, "password removed");
    state.removes += 1;
    server::empty(StatusCode::NO_CONTENT)
}

/// A passwordCredential as Graph shows it; `secretText` only in addPassword's answer.
fn credential_json(password: &Password, with_secret: bool) -> Value {
    let hint: String = password.secret.chars().take(3).collect();
    json!({
        "customKeyIdentifier": null,
        "displayName": password.info.display_name,
        "endDateTime": graph_time(password.info.end),
        "hint": hint,
        "keyId": password.info.key_id,
        "secretText": if with_secret { Value::from(password.secret.clone()) } else { Value::Null },
        "startDateTime": graph_time(password.info.start),
    })
}

fn graph_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Graph's error body: `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
pub(super) fn graph_error(status: StatusCode, code: &str, message: &str) -> ServerResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": graph_time(Utc::now()),
                "request-id": request_id,
                "client-request-id": request_id,
            }
        }
    });
    let mut response = server::json_response(status, &body);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_the_application_by_object_id_or_app_id() {
        assert_eq!(route("/v1.0/applications/ABC"), Some((AppRef::ObjectId("abc".into()), Operation::Get)));
        assert_eq!(
            route("/v1.0/applications/abc/addPassword"),
            Some((AppRef::ObjectId("abc".into()), Operation::AddPassword))
        );
        assert_eq!(
            route("/v1.0/applications/abc/microsoft.graph.removePassword"),
            Some((AppRef::ObjectId("abc".into()), Operation::RemovePassword))
        );
        assert_eq!(
            route("/v1.0/applications(appId='F00')/addPassword"),
            Some((AppRef::AppId("f00".into()), Operation::AddPassword))
        );
        assert_eq!(route("/v1.0/applications(appId=%27f00%27)"), Some((AppRef::AppId("f00".into()), Operation::Get)));
        for unserved in
            ["/beta/applications/abc", "/v1.0/applications/abc/addKey", "/v1.0/users/abc", "/v1.0/applications"]
        {
            assert_eq!(route(unserved), None, "{unserved}");
        }
    }
}
