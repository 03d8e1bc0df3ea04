//! The custom-handler wire format: what the Functions host posts to `POST /<function>` and what it expects
//! back (see `reference/functions-custom-handler.md`).
//!
//! These types are both `Serialize` and `Deserialize` because both sides use them: this adapter decodes
//! requests and encodes responses, and the Functions host stand-in (`crates/local`) does the opposite.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The name of the `eventGridTrigger` binding in every keyturn `function.json`: the key under `Data` that
/// holds the event.
pub const BINDING_NAME: &str = "eventGridEvent";

/// The environment variable through which the Functions host tells a custom handler which port to listen on.
pub const PORT_VARIABLE: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";

/// The request header carrying the host's id for one invocation; it goes into every log line about it.
pub const INVOCATION_ID_HEADER: &str = "X-Azure-Functions-InvocationId";

/// The body of `POST /<function>` for a non-HTTP trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRequest {
    /// One entry per input binding, keyed by binding name; the event is under [`BINDING_NAME`], as a JSON
    /// object (what the host sends) or a JSON-encoded string (accepted defensively).
    #[serde(rename = "Data")]
    pub data: Map<String, Value>,
    /// Trigger metadata. Plain strings inside arrive JSON-encoded twice, so keyturn never relies on it;
    /// absent is accepted as `null`.
    #[serde(rename = "Metadata", default)]
    pub metadata: Value,
}

impl InvocationRequest {
    /// The request the Functions host sends for one Event Grid event, with empty metadata.
    pub fn for_event(event: Value) -> Self {
        let mut data = Map::new();
        data.insert(BINDING_NAME.to_owned(), event);
        InvocationRequest { data, metadata: Value::Object(Map::new()) }
    }
}

/// The body of a `200` answer. Any non-2xx answer fails the invocation and its body is ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationResponse {
    /// Output bindings by name; keyturn functions have none.
    #[serde(rename = "Outputs", default)]
    pub outputs: Map<String, Value>,
    /// Lines the host copies into its own log for this invocation.
    #[serde(rename = "Logs", default)]
    pub logs: Vec<String>,
    /// The function's return value: keyturn handlers return their typed outcome's JSON
    /// ([`crate::Outcome`], docs/handlers.md).
    #[serde(rename = "ReturnValue", default)]
    pub return_value: Value,
}

impl InvocationResponse {
    /// The answer for an acknowledged event: the outcome's one line in `Logs`, its JSON in `ReturnValue`.
    pub fn for_outcome(outcome: &crate::Outcome) -> Self {
        InvocationResponse {
            outputs: Map::new(),
            logs: vec![outcome.log_line()],
            // Serialising plain strings and a derived struct cannot fail; `null` would only lose the fields.
            return_value: serde_json::to_value(outcome).unwrap_or(Value::Null),
        }
    }

    /// The typed outcome in `ReturnValue`, if the answer carries one.
    pub fn outcome(&self) -> Option<crate::Outcome> {
        crate::Outcome::from_return_value(&self.return_value)
    }

    /// A successful answer with no outputs, the given log lines and a `null` return value.
    pub fn with_logs(logs: Vec<String>) -> Self {
        InvocationResponse { outputs: Map::new(), logs, return_value: Value::Null }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_uses_the_hosts_field_names_and_round_trips() {
        let request = InvocationRequest::for_event(json!({"id": "1"}));
        let encoded = serde_json::to_value(&request).unwrap();
        assert_eq!(encoded, json!({"Data": {"eventGridEvent": {"id": "1"}}, "Metadata": {}}));
        let decoded: InvocationRequest = serde_json::from_value(encoded).unwrap();
        assert_eq!(decoded, request);
    }

    #[test]
    fn request_without_metadata_is_accepted() {
        let decoded: InvocationRequest = serde_json::from_value(json!({"Data": {"eventGridEvent": {}}})).unwrap();
        assert_eq!(decoded.metadata, Value::Null);
    }

    #[test]
    fn response_uses_the_hosts_field_names_and_round_trips() {
        let response = InvocationResponse::with_logs(vec!["done: x".to_owned()]);
        let encoded = serde_json::to_value(&response).unwrap();
        assert_eq!(encoded, json!({"Outputs": {}, "Logs": ["done: x"], "ReturnValue": null}));
        let decoded: InvocationResponse = serde_json::from_value(encoded).unwrap();
        assert_eq!(decoded, response);
    }
}
