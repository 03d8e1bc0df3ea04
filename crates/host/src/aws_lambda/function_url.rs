//! The Lambda event a function URL (or an API Gateway HTTP API with payload format 2.0) sends for one HTTP
//! request, and the response it expects back.
//!
//! Modelled here with serde rather than taken from `lambda_http`: keyturn reads six fields of the request and
//! writes four of the response, while `lambda_http` brings `aws_lambda_events` with every AWS event source
//! and turns the payload into an `http::Request` that would be turned straight back into these fields. Both
//! directions are `Serialize` and `Deserialize` because the tests' local function URL uses them too, as
//! `azure_functions::wire` is shared with the Functions host stand-in.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One HTTP request as a payload-2.0 event. Header names arrive lower-cased; repeated headers arrive joined
/// with commas. Fields keyturn does not use (cookies, requestContext.authorizer, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    /// `"2.0"`.
    #[serde(default)]
    pub version: String,
    /// The path, e.g. `/` for a function URL.
    #[serde(default)]
    pub raw_path: String,
    /// The query string without `?`, still percent-encoded.
    #[serde(default)]
    pub raw_query_string: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub request_context: RequestContext,
    /// Absent for a request without a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Whether `body` is base64: function URLs encode any body whose content type they do not treat as text
    /// (`application/cloudevents-batch+json` among them).
    #[serde(default)]
    pub is_base64_encoded: bool,
}

/// `requestContext`: only the parts keyturn reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// The front's id for the request (not the Lambda request id).
    #[serde(default)]
    pub request_id: String,
    pub http: HttpDescription,
}

/// `requestContext.http`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpDescription {
    pub method: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub source_ip: String,
}

/// The Lambda event is not an HTTP request in payload format 2.0.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(
        "the Lambda event is not a function URL / API Gateway HTTP API (payload format 2.0) request: {0}; keyturn handlers on Lambda are invoked only through their function URL"
    )]
    NotAnHttpRequest(serde_json::Error),
    #[error("the request body is marked base64 but does not decode: {0}")]
    BadBase64(base64::DecodeError),
}

impl HttpRequest {
    /// Reads the Lambda event.
    pub fn from_event(event: Value) -> Result<Self, RequestError> {
        serde_json::from_value(event).map_err(RequestError::NotAnHttpRequest)
    }

    /// The body's bytes, decoded from base64 where the front encoded it.
    pub fn body_bytes(&self) -> Result<Vec<u8>, RequestError> {
        let Some(body) = &self.body else { return Ok(Vec::new()) };
        if self.is_base64_encoded {
            STANDARD.decode(body).map_err(RequestError::BadBase64)
        } else {
            Ok(body.clone().into_bytes())
        }
    }
}

/// The function's answer, which the front turns into the HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    pub status_code: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub is_base64_encoded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A function URL event as AWS documents it (urls-invocation.html, "Request payload format"), trimmed of
    /// the authorizer block.
    fn documented_event() -> Value {
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/my/path",
            "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
            "cookies": ["cookie1", "cookie2"],
            "headers": {"header1": "value1", "header2": "value1,value2"},
            "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "<urlid>",
                "domainName": "<url-id>.lambda-url.us-west-2.on.aws",
                "domainPrefix": "<url-id>",
                "http": {"method": "POST", "path": "/my/path", "protocol": "HTTP/1.1",
                         "sourceIp": "123.123.123.123", "userAgent": "agent"},
                "requestId": "id",
                "routeKey": "$default",
                "stage": "$default",
                "time": "12/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390u64
            },
            "body": "Hello from client!",
            "pathParameters": null,
            "isBase64Encoded": false,
            "stageVariables": null
        })
    }

    #[test]
    fn the_documented_event_decodes_and_round_trips() {
        let request = HttpRequest::from_event(documented_event()).unwrap();
        assert_eq!(request.request_context.http.method, "POST");
        assert_eq!(request.raw_query_string, "parameter1=value1&parameter1=value2&parameter2=value");
        assert_eq!(request.headers["header2"], "value1,value2");
        assert_eq!(request.body_bytes().unwrap(), b"Hello from client!");
        let again = HttpRequest::from_event(serde_json::to_value(&request).unwrap()).unwrap();
        assert_eq!(again, request);
    }

    #[test]
    fn base64_bodies_are_decoded_and_bad_ones_refused() {
        let mut event = documented_event();
        event["isBase64Encoded"] = json!(true);
        event["body"] = json!(STANDARD.encode(br#"[{"id":"1"}]"#));
        assert_eq!(HttpRequest::from_event(event.clone()).unwrap().body_bytes().unwrap(), br#"[{"id":"1"}]"#);
        event["body"] = json!("not base64!");
        let error = HttpRequest::from_event(event).unwrap().body_bytes().unwrap_err();
        assert!(error.to_string().starts_with("the request body is marked base64"));
    }

    #[test]
    fn other_lambda_events_are_refused_with_the_reason() {
        let scheduled = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events"});
        let error = HttpRequest::from_event(scheduled).unwrap_err();
        assert!(error.to_string().contains("missing field `requestContext`"), "{error}");
    }

    #[test]
    fn the_response_uses_lambdas_field_names() {
        let response = HttpResponse {
            status_code: 401,
            headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
            body: "{}".to_owned(),
            is_base64_encoded: false,
        };
        let encoded = serde_json::to_value(&response).unwrap();
        assert_eq!(
            encoded,
            json!({"statusCode": 401, "headers": {"content-type": "application/json"}, "body": "{}", "isBase64Encoded": false})
        );
        assert_eq!(serde_json::from_value::<HttpResponse>(encoded).unwrap(), response);
    }
}
