//! The Entra ID sign-in endpoint for applications: the client credentials grant of
//! `POST https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`, accepting exactly the client secrets an
//! application has now (valid between their start and end), and refusing the rest with Entra ID's error shape
//! `{"error","error_description":"AADSTS…: …","error_codes":[…],"timestamp","trace_id","correlation_id"}`.

use std::collections::BTreeMap;

use chrono::Utc;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use super::{Shared, lock};
use crate::identity::{ManagedIdentity, TENANT_ID, TOKEN_LIFETIME, TokenRegistry};
use crate::keyvault::server::{self, ServerResponse};

pub(super) async fn sign_in(state: &Shared, tokens: &TokenRegistry, req: Request<Incoming>) -> ServerResponse {
    let tenant = req.uri().path().trim_start_matches('/').split('/').next().unwrap_or_default().to_owned();
    if req.method() != Method::POST {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        );
    }
    if !tenant.eq_ignore_ascii_case(TENANT_ID) {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
        );
    }
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body could not be read.",
            );
        }
    };
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "client_credentials" {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type; this endpoint serves client_credentials.",
        );
    }
    let client_id = field("client_id");
    let Some(resource) = field("scope").strip_suffix("/.default").filter(|r| !r.is_empty()) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with \
             /.default suffixed to the resource identifier (application ID URI).",
        );
    };
    let identity = {
        let state = lock(state);
        let Some(app) = state.apps.values().find(|a| a.ids.app_id.eq_ignore_ascii_case(client_id)) else {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!("Application with identifier '{client_id}' was not found in the directory '{TENANT_ID}'."),
            );
        };
        let secret = field("client_secret");
        if secret.is_empty() {
            return entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            );
        }
        let now = Utc::now();
        let matching: Vec<_> = app.passwords.iter().filter(|p| p.secret == secret).collect();
        if matching.is_empty() {
            return entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret \
                     value, not the client secret ID, for a secret added to app '{}'.",
                    app.ids.app_id
                ),
            );
        }
        if !matching.iter().any(|p| p.valid_at(now)) {
            return entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000222,
                &format!("The provided client secret keys for app '{}' are expired.", app.ids.app_id),
            );
        }
        ManagedIdentity {
            name: app.display_name.clone(),
            client_id: app.ids.app_id.clone(),
            object_id: app.ids.service_principal_id.clone(),
            resource_id: String::new(),
            system_assigned: false,
        }
    };
    let (token, _) = tokens.issue_for(resource, &identity);
    tracing::info!(app = %identity.client_id, %resource, "application signed in with a client secret");
    let lifetime = TOKEN_LIFETIME.as_secs();
    server::json_response(
        StatusCode::OK,
        &json!({ "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token }),
    )
}

fn entra_error(status: StatusCode, error: &str, code: u32, description: &str) -> ServerResponse {
    let trace = uuid::Uuid::new_v4().to_string();
    let now = Utc::now();
    server::json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Timestamp: {}", now.format("%Y-%m-%d %H:%M:%SZ")),
            "error_codes": [code],
            "timestamp": now.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": trace,
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        }),
    )
}
