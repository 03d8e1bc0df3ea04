//! Where and how `keyturn send` posts: the Event Grid webhook URL of a function, posted as Event Grid
//! delivers, with credentials (`code`, `sig`) kept out of everything shown.

use std::time::Duration;

use serde_json::Value;

use super::Args;
use crate::dev_state::{self, DevState};
use crate::exit::{CommandFailure, ExitStatus};

/// The Functions host's Event Grid extension endpoint.
pub const WEBHOOK_PATH: &str = "/runtime/webhooks/eventgrid";

/// The webhook URL for `function` at `--to`.
pub fn endpoint(args: &Args, function: &str) -> Result<url::Url, CommandFailure> {
    let base = if args.to == "dev" {
        let path = args.state_file.clone().unwrap_or_else(dev_state::default_path);
        let state = DevState::read(&path)?;
        state.functions.get(function).cloned().ok_or_else(|| {
            let running: Vec<&str> = state.functions.keys().map(String::as_str).collect();
            CommandFailure::setup(format!(
                "the running `keyturn dev` serves no function '{function}' (it serves: {})",
                if running.is_empty() { "none".to_owned() } else { running.join(", ") }
            ))
            .hint(format!("build it (`cargo build -p {function}`) and restart `keyturn dev`, or pass --function"))
        })?
    } else {
        args.to.clone()
    };
    webhook_url(&base, function, args.code.as_deref())
}

/// `<base>/runtime/webhooks/eventgrid?functionName=<function>[&code=<key>]`; a URL already holding the
/// webhook path keeps its query and gets what it lacks.
pub fn webhook_url(base: &str, function: &str, code: Option<&str>) -> Result<url::Url, CommandFailure> {
    let mut url = url::Url::parse(base).map_err(|error| CommandFailure {
        status: ExitStatus::Usage,
        message: format!("--to {:?} is not a URL ({error})", redact_text(base)),
        hint: Some("e.g. --to http://localhost:7071, --to https://<app>.azurewebsites.net, or --to dev".to_owned()),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CommandFailure {
            status: ExitStatus::Usage,
            message: format!("--to {}: only http and https URLs are supported", redact(&url)),
            hint: None,
        });
    }
    if !url.path().trim_end_matches('/').ends_with(WEBHOOK_PATH) {
        let path = format!("{}{WEBHOOK_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    let present: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    {
        let mut query = url.query_pairs_mut();
        if !present.iter().any(|k| k == "functionName") {
            query.append_pair("functionName", function);
        }
        if let Some(code) = code
            && !present.iter().any(|k| k == "code")
        {
            query.append_pair("code", code);
        }
    }
    Ok(url)
}

/// Query parameters that carry credentials: a function key (`code`), a SAS signature (`sig`).
const CREDENTIAL_PARAMETERS: [&str; 2] = ["code", "sig"];

/// The URL without its `code` or `sig` (a system key must not end up in terminals' scrollback or CI logs).
pub fn redact(url: &url::Url) -> url::Url {
    let mut shown = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if CREDENTIAL_PARAMETERS.contains(&k.as_ref()) { "****".to_owned() } else { v.into_owned() },
            )
        })
        .collect();
    if !pairs.is_empty() {
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown
}

/// [`redact`] for text that did not parse as a URL: every `code=`/`sig=` value up to the next `&`, `#` or
/// whitespace is replaced.
pub(super) fn redact_text(text: &str) -> String {
    let mut shown = text.to_owned();
    for parameter in CREDENTIAL_PARAMETERS {
        let needle = format!("{parameter}=");
        let mut from = 0;
        while let Some(found) = shown[from..].find(&needle) {
            let start = from + found + needle.len();
            let end = shown[start..].find(['&', '#', ' ', '"']).map_or(shown.len(), |n| start + n);
            shown.replace_range(start..end, "****");
            from = start + 4;
        }
    }
    shown
}

/// What the endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub reason: String,
    pub body: String,
}

/// Posts `batch` as Event Grid delivers: a JSON array of events with `aeg-event-type: Notification`.
pub async fn post(url: &url::Url, batch: &[Value], timeout: Duration) -> Result<Answer, CommandFailure> {
    let loopback = url.host_str().is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
    let mut client = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(10));
    if loopback {
        // A proxy configured for the internet has no business seeing calls to this machine.
        client = client.no_proxy();
    }
    let client =
        client.build().map_err(|error| CommandFailure::failed(format!("cannot build the HTTP client: {error}")))?;
    let response = client
        .post(url.clone())
        .header("Content-Type", "application/json")
        .header("aeg-event-type", "Notification")
        .header("aeg-delivery-count", "0")
        .header("aeg-data-version", "1")
        .header("aeg-metadata-version", "1")
        .json(batch)
        .send()
        .await
        .map_err(|error| unreachable_or_failed(url, error))?;
    let status = response.status();
    let body = response.text().await.map_err(|error| unreachable_or_failed(url, error))?;
    Ok(Answer { status: status.as_u16(), reason: status.canonical_reason().unwrap_or("").to_owned(), body })
}

fn unreachable_or_failed(url: &url::Url, error: reqwest::Error) -> CommandFailure {
    // reqwest's message names the URL, `code` included: the origin (and the redacted URL) say where.
    let error = error.without_url();
    let shown = redact(url);
    let origin = shown.origin().ascii_serialization();
    if error.is_connect() {
        CommandFailure::unreachable(format!(
            "nothing is listening at {origin}: is `func start` / `keyturn dev` running?"
        ))
        .hint(format!("check the URL given to --to ({error})"))
    } else if error.is_timeout() {
        CommandFailure::unreachable(format!("{origin} did not answer in time"))
            .hint("raise --timeout if the handler is slow, or check that the host is up")
    } else {
        CommandFailure::failed(format!("posting to {shown} failed: {error}"))
    }
}
