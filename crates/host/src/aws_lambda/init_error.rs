//! Telling Lambda why the process cannot start: `POST /2018-06-01/runtime/init/error`, so the reason shows
//! in the invocation's error instead of a bare `Runtime.ExitError`.

use std::time::Duration;

use http::{Method, Request};
use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{PooledClient, build_request};
use serde_json::json;

/// The `errorType` recorded for a process that cannot pick or start its adapter.
pub const ERROR_TYPE: &str = "keyturn.CannotStart";

/// How long the report may take: the process is exiting anyway.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Posts `message` as the init error to the Runtime API at `api` (`host:port`). A failure to report is
/// returned for logging; the caller exits either way.
pub async fn report(api: &str, message: &str) -> Result<(), String> {
    let endpoint = format!("http://{api}").parse::<http::Uri>().map_err(|error| error.to_string())?;
    let client = PooledClient::builder().with_endpoint(endpoint).build();
    let body = json!({ "errorType": ERROR_TYPE, "errorMessage": message }).to_string();
    let request: Request<Body> = build_request()
        .method(Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header("Lambda-Runtime-Function-Error-Type", ERROR_TYPE)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .map_err(|error| error.to_string())?;
    let response = tokio::time::timeout(REPORT_TIMEOUT, client.call(request))
        .await
        .map_err(|_| format!("no answer within {REPORT_TIMEOUT:?}"))?
        .map_err(|error| error.to_string())?;
    if response.status().is_success() { Ok(()) } else { Err(format!("the Runtime API answered {}", response.status())) }
}
