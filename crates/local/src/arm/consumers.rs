//! The consumer apps of the ARM emulator ([`crate::arm`]): App Service / Functions apps and Container Apps, as
//! far as the `new-version` handler's consumer refresh touches them, with counters per app and injected
//! failures.
//!
//! Served (after the emulator's token check):
//! - `POST /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Web/sites/{app}[/slots/{slot}]/config/
//!   configreferences/appsettings/refresh?api-version=...` (the Microsoft.Web versions in [`WEB_API_VERSIONS`])
//!   → 200 `{"value":[]}` (no app setting of an emulated app holds a Key Vault reference to report on);
//! - `GET .../Microsoft.App/containerApps/{app}/revisions?api-version=...` ([`CONTAINER_APPS_API_VERSIONS`])
//!   → 200 `{"value":[<Revision>...]}` in the shape of azure-rest-api-specs `ContainerAppsRevisions.json`;
//! - `POST .../containerApps/{app}/revisions/{revision}/restart?api-version=...` → 200, no body.
//!
//! Like ARM: path segments match case-insensitively; an unknown app or revision is 404 `ResourceNotFound`; a
//! missing api-version 400 `MissingApiVersionParameter`, an unknown one 400 `InvalidApiVersionParameter`; a
//! wrong method 405. [`ConsumerApps::fail_next`] makes an app's next refresh calls answer an error (e.g. 503
//! `ServiceUnavailable` with `Retry-After`), as Resource Manager does under load.
//!
//! Role assignments are checked as for the key family ([`crate::arm`]): the caller needs the request's action on
//! the app ([`Route::required_action`]), which the local stack's new-version identity holds through infra/roles.json's
//! Website Contributor / Container Apps Contributor on the apps its deployment binds; without it, 403
//! `AuthorizationFailed`. Differs from Azure: a restart restarts nothing (it is counted).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, StatusCode};

use crate::keyvault::server::{self, ServerResponse};

/// The Microsoft.Web API versions the emulator accepts for the Key Vault reference refresh.
pub const WEB_API_VERSIONS: &[&str] =
    &["2022-03-01", "2022-09-01", "2023-01-01", "2023-12-01", "2024-04-01", "2024-11-01"];
/// The Microsoft.App API versions the emulator accepts for revisions.
pub const CONTAINER_APPS_API_VERSIONS: &[&str] = &["2024-03-01", "2025-01-01", "2025-07-01"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    WebApp,
    ContainerApp,
}

#[derive(Debug, Clone)]
struct App {
    kind: Kind,
    /// The resource id as registered (responses use its spelling).
    id: String,
    /// Container Apps: `(revision name, active)`.
    revisions: Vec<(String, bool)>,
    /// Refresh or restart calls received, failed ones included.
    attempts: u32,
    /// Refresh or restart calls that succeeded (a Container App's restart of several revisions counts each).
    successes: u32,
    /// Calls still to fail, and with which status.
    failures: Option<(u32, StatusCode)>,
}

/// The emulated consumer apps, shared between the emulator and the test that inspects them.
#[derive(Debug, Clone, Default)]
pub struct ConsumerApps {
    apps: Arc<Mutex<BTreeMap<String, App>>>,
}

impl ConsumerApps {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an App Service or Functions app (or a slot: `.../sites/{app}/slots/{slot}`) by resource id.
    pub fn web_app(self, id: &str) -> Self {
        self.add(Kind::WebApp, id, Vec::new())
    }

    /// Adds a Container App by resource id with its revisions (`(name, active)`).
    pub fn container_app(self, id: &str, revisions: &[(&str, bool)]) -> Self {
        let revisions = revisions.iter().map(|(name, active)| ((*name).to_owned(), *active)).collect();
        self.add(Kind::ContainerApp, id, revisions)
    }

    fn add(self, kind: Kind, id: &str, revisions: Vec<(String, bool)>) -> Self {
        let app = App { kind, id: id.to_owned(), revisions, attempts: 0, successes: 0, failures: None };
        self.lock().insert(normalise(id), app);
        self
    }

    /// The app's next `times` refresh (or restart) calls answer `status` (503 and 429 carry `Retry-After: 1`).
    pub fn fail_next(&self, id: &str, times: u32, status: StatusCode) {
        if let Some(app) = self.lock().get_mut(&normalise(id)) {
            app.failures = Some((times, status));
        }
    }

    /// `(calls received, calls that succeeded)` for the app's refresh (or restarts); `None` for an unknown app.
    pub fn calls(&self, id: &str) -> Option<(u32, u32)> {
        self.lock().get(&normalise(id)).map(|app| (app.attempts, app.successes))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, App>> {
        // A poisoned map only means a request panicked between two map operations; the map itself is valid.
        self.apps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer to a request for a consumer app, or `None` when the path is not one (the caller answers it).
    /// `refused(action, app)` is the 403 to answer when the caller may not perform `action` on `app`, else `None`.
    pub(crate) fn handle(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        refused: impl Fn(&str, &str) -> Option<ServerResponse>,
    ) -> Option<ServerResponse> {
        let route = Route::parse(path)?;
        let api_version = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(name, _)| name == "api-version")
            .map(|(_, value)| value.into_owned());
        let accepted = match route.action {
            Action::Refresh => WEB_API_VERSIONS,
            Action::ListRevisions | Action::Restart(_) => CONTAINER_APPS_API_VERSIONS,
        };
        match api_version.as_deref() {
            None => {
                return Some(arm_error(
                    StatusCode::BAD_REQUEST,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                ));
            }
            Some(version) if !accepted.contains(&version) => {
                return Some(arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidApiVersionParameter",
                    &format!(
                        "The api-version '{version}' is invalid. The supported versions are '{}'.",
                        accepted.join(",")
                    ),
                ));
            }
            Some(_) => {}
        }
        let expected = if route.action == Action::ListRevisions { Method::GET } else { Method::POST };
        if *method != expected {
            return Some(arm_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("The method '{method}' is not allowed for this request."),
            ));
        }
        if let Some(refusal) = refused(&route.required_action(), &route.app) {
            return Some(refusal);
        }
        let mut apps = self.lock();
        let Some(app) = apps.get_mut(&normalise(&route.app)).filter(|app| app.kind == route.kind) else {
            return Some(not_found(&route.app));
        };
        Some(match route.action {
            Action::ListRevisions => list_revisions(app),
            Action::Refresh | Action::Restart(_) => {
                if let Action::Restart(revision) = &route.action
                    && !app.revisions.iter().any(|(name, _)| name.eq_ignore_ascii_case(revision))
                {
                    return Some(not_found(&format!("{}/revisions/{revision}", app.id)));
                }
                app.attempts += 1;
                if let Some((left, status)) = app.failures.as_mut().filter(|(left, _)| *left > 0) {
                    *left -= 1;
                    return Some(injected(*status));
                }
                app.successes += 1;
                tracing::info!(app = %app.id, "consumer refreshed");
                match route.action {
                    Action::Refresh => server::json_response(StatusCode::OK, &serde_json::json!({ "value": [] })),
                    _ => server::empty(StatusCode::OK),
                }
            }
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Refresh,
    ListRevisions,
    Restart(String),
}

#[derive(Debug)]
struct Route {
    kind: Kind,
    app: String,
    action: Action,
}

impl Route {
    /// The management action the request needs, as the emulator names it (the role checked holds the type's `/*`).
    fn required_action(&self) -> String {
        let slot = if self.app.to_ascii_lowercase().contains("/slots/") { "/slots" } else { "" };
        match self.action {
            Action::Refresh => format!("Microsoft.Web/sites{slot}/config/configreferences/appsettings/refresh/action"),
            Action::ListRevisions => "Microsoft.App/containerApps/revisions/read".to_owned(),
            Action::Restart(_) => "Microsoft.App/containerApps/revisions/restart/action".to_owned(),
        }
    }

    /// The consumer route `path` names, if any.
    fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        if segments.len() < 8
            || !is(segments[0], "subscriptions")
            || !is(segments[2], "resourceGroups")
            || !is(segments[4], "providers")
            || segments[..8].iter().any(|s| s.is_empty())
        {
            return None;
        }
        let app_of = |n: usize| format!("/{}", segments[..n].join("/"));
        match &segments[5..] {
            [ns, kind, _, config, refs, settings, refresh]
                if is(ns, "Microsoft.Web")
                    && is(kind, "sites")
                    && is(config, "config")
                    && is(refs, "configreferences")
                    && is(settings, "appsettings")
                    && is(refresh, "refresh") =>
            {
                Some(Self { kind: Kind::WebApp, app: app_of(8), action: Action::Refresh })
            }
            [ns, kind, _, slots, slot, config, refs, settings, refresh]
                if is(ns, "Microsoft.Web")
                    && is(kind, "sites")
                    && is(slots, "slots")
                    && !slot.is_empty()
                    && is(config, "config")
                    && is(refs, "configreferences")
                    && is(settings, "appsettings")
                    && is(refresh, "refresh") =>
            {
                Some(Self { kind: Kind::WebApp, app: app_of(10), action: Action::Refresh })
            }
            [ns, kind, _, revisions]
                if is(ns, "Microsoft.App") && is(kind, "containerApps") && is(revisions, "revisions") =>
            {
                Some(Self { kind: Kind::ContainerApp, app: app_of(8), action: Action::ListRevisions })
            }
            [ns, kind, _, revisions, revision, restart]
                if is(ns, "Microsoft.App")
                    && is(kind, "containerApps")
                    && is(revisions, "revisions")
                    && !revision.is_empty()
                    && is(restart, "restart") =>
            {
                Some(Self { kind: Kind::ContainerApp, app: app_of(8), action: Action::Restart((*revision).to_owned()) })
            }
            _ => None,
        }
    }
}

fn normalise(id: &str) -> String {
    format!("/{}", id.trim_matches('/').to_ascii_lowercase())
}

fn list_revisions(app: &App) -> ServerResponse {
    let value: Vec<serde_json::Value> = app
        .revisions
        .iter()
        .map(|(name, active)| {
            serde_json::json!({
                "id": format!("{}/revisions/{name}", app.id),
                "name": name,
                "type": "Microsoft.App/containerApps/revisions",
                "properties": {
                    "active": active,
                    "replicas": if *active { 1 } else { 0 },
                    "trafficWeight": if *active { 100 } else { 0 },
                    "healthState": "Healthy",
                    "provisioningState": "Provisioned",
                    "runningState": if *active { "Running" } else { "Stopped" },
                }
            })
        })
        .collect();
    server::json_response(StatusCode::OK, &serde_json::json!({ "value": value }))
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> ServerResponse {
    server::json_response(status, &serde_json::json!({ "error": { "code": code, "message": message } }))
}

fn not_found(id: &str) -> ServerResponse {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!(
            "The Resource '{id}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

fn injected(status: StatusCode) -> ServerResponse {
    let (code, message) = match status {
        StatusCode::TOO_MANY_REQUESTS => ("TooManyRequests", "The request was throttled."),
        StatusCode::SERVICE_UNAVAILABLE => ("ServiceUnavailable", "The service is temporarily unavailable."),
        StatusCode::FORBIDDEN => {
            ("AuthorizationFailed", "The client does not have authorization to perform this action.")
        }
        _ => ("InternalServerError", "An internal error occurred."),
    };
    let mut response = arm_error(status, code, message);
    if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
        response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Web/sites/web-shop";
    const APP: &str = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.App/containerApps/orders";

    #[test]
    fn routes_are_recognised_case_insensitively_and_others_are_left_to_the_caller() {
        let refresh = Route::parse(&format!("{WEB}/config/configreferences/appsettings/refresh")).unwrap();
        assert_eq!((refresh.kind, refresh.app.as_str(), refresh.action), (Kind::WebApp, WEB, Action::Refresh));
        let slot = Route::parse(&format!("{WEB}/SLOTS/staging/Config/ConfigReferences/AppSettings/Refresh")).unwrap();
        assert_eq!(slot.app, format!("{WEB}/SLOTS/staging"));
        let restart = Route::parse(&format!("{APP}/revisions/orders--r2/restart")).unwrap();
        assert_eq!(restart.action, Action::Restart("orders--r2".into()));
        assert_eq!(Route::parse(&format!("{APP}/revisions")).unwrap().action, Action::ListRevisions);
        for other in [
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/listKeys",
            &format!("{WEB}/config/appsettings/list"),
            &format!("{APP}/revisions/r1"),
        ] {
            assert!(Route::parse(other).is_none(), "{other}");
        }
    }

    #[test]
    fn injected_failures_come_first_then_calls_succeed_and_every_call_is_counted() {
        let apps = ConsumerApps::new().web_app(WEB).container_app(APP, &[("orders--r1", false), ("orders--r2", true)]);
        apps.fail_next(WEB, 2, StatusCode::SERVICE_UNAVAILABLE);
        let refresh = format!("{WEB}/config/configreferences/appsettings/refresh");
        let query = Some("api-version=2022-03-01");
        let status =
            |path: &str, method: Method, query| apps.handle(&method, path, query, |_, _| None).unwrap().status();
        assert_eq!(status(&refresh, Method::POST, query), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(&refresh, Method::POST, query), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(&refresh, Method::POST, query), StatusCode::OK);
        assert_eq!(apps.calls(WEB), Some((3, 1)));
        assert_eq!(status(&refresh, Method::POST, None), StatusCode::BAD_REQUEST);
        assert_eq!(status(&refresh, Method::POST, Some("api-version=2019-08-01")), StatusCode::BAD_REQUEST);
        assert_eq!(status(&refresh, Method::GET, query), StatusCode::METHOD_NOT_ALLOWED);
        let gone = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Web/sites/gone/config/configreferences/appsettings/refresh";
        assert_eq!(status(gone, Method::POST, query), StatusCode::NOT_FOUND);

        let ca = Some("api-version=2025-07-01");
        assert_eq!(status(&format!("{APP}/revisions"), Method::GET, ca), StatusCode::OK);
        assert_eq!(status(&format!("{APP}/revisions/orders--r2/restart"), Method::POST, ca), StatusCode::OK);
        assert_eq!(status(&format!("{APP}/revisions/orders--r9/restart"), Method::POST, ca), StatusCode::NOT_FOUND);
        assert_eq!(apps.calls(APP), Some((1, 1)));
    }

    #[test]
    fn a_caller_without_the_action_on_the_app_is_refused_before_the_app_is_touched() {
        let apps = ConsumerApps::new().web_app(WEB).container_app(APP, &[("orders--r1", true)]);
        let asked = std::sync::Mutex::new(Vec::new());
        let refuse = |action: &str, app: &str| {
            asked.lock().unwrap().push((action.to_owned(), app.to_owned()));
            Some(arm_error(StatusCode::FORBIDDEN, "AuthorizationFailed", "no role"))
        };
        let refresh = format!("{WEB}/config/configreferences/appsettings/refresh");
        let answer = apps.handle(&Method::POST, &refresh, Some("api-version=2022-03-01"), refuse).unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        let restart = format!("{APP}/revisions/orders--r1/restart");
        let answer = apps.handle(&Method::POST, &restart, Some("api-version=2025-07-01"), refuse).unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        assert_eq!((apps.calls(WEB), apps.calls(APP)), (Some((0, 0)), Some((0, 0))), "nothing was counted");
        assert_eq!(
            asked.into_inner().unwrap(),
            [
                ("Microsoft.Web/sites/config/configreferences/appsettings/refresh/action".to_owned(), WEB.to_owned()),
                ("Microsoft.App/containerApps/revisions/restart/action".to_owned(), APP.to_owned()),
            ]
        );
    }
}
