//! Event Grid's webhook delivery protocol, as pure functions: what an endpoint must answer before any
//! handler runs. The Functions host stand-in (`crates/local`) and the AWS Lambda adapter both speak it, so
//! it lives here once. Facts: ../shared/reference/event-grid.md ("Delivery semantics", "Validation handshakes").

use serde_json::{Value, json};

use crate::{DecodeError, Event, Payload, tolerant};

/// The header that says what a delivery is.
pub const EVENT_TYPE_HEADER: &str = "aeg-event-type";
/// How many times Event Grid has tried this delivery (1 on the first attempt).
pub const DELIVERY_COUNT_HEADER: &str = "aeg-delivery-count";
pub const SUBSCRIPTION_NAME_HEADER: &str = "aeg-subscription-name";
pub const METADATA_VERSION_HEADER: &str = "aeg-metadata-version";
pub const DATA_VERSION_HEADER: &str = "aeg-data-version";

/// CloudEvents abuse-protection handshake (an HTTP OPTIONS request).
pub const WEBHOOK_REQUEST_ORIGIN: &str = "WebHook-Request-Origin";
pub const WEBHOOK_ALLOWED_ORIGIN: &str = "WebHook-Allowed-Origin";
pub const WEBHOOK_ALLOWED_RATE: &str = "WebHook-Allowed-Rate";

/// What a delivery is, from its `aeg-event-type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    SubscriptionValidation,
    Notification,
    SubscriptionDeletion,
}

/// The `aeg-event-type` header is missing or says something Event Grid never sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error(
        "the {EVENT_TYPE_HEADER} header is missing (expected Notification, SubscriptionValidation or SubscriptionDeletion)"
    )]
    MissingEventTypeHeader,
    #[error(
        "the {EVENT_TYPE_HEADER} header is '{0}' (expected Notification, SubscriptionValidation or SubscriptionDeletion)"
    )]
    UnknownEventTypeHeader(String),
}

impl DeliveryKind {
    /// Reads the `aeg-event-type` header value. Event Grid's names are matched without regard to case, as the
    /// Functions extension does.
    pub fn from_header(value: Option<&str>) -> Result<Self, DeliveryError> {
        let value = value.map(str::trim).ok_or(DeliveryError::MissingEventTypeHeader)?;
        [Self::SubscriptionValidation, Self::Notification, Self::SubscriptionDeletion]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| DeliveryError::UnknownEventTypeHeader(value.to_owned()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionValidation => "SubscriptionValidation",
            Self::Notification => "Notification",
            Self::SubscriptionDeletion => "SubscriptionDeletion",
        }
    }
}

/// Splits a delivery body into its events: a JSON array (what Event Grid sends, even for one event), or a
/// single object (what `func start` accepts too). Each element stays raw JSON so one bad event fails alone.
pub fn split_batch(body: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: Value = serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError::from_serde("", e))?;
    de.end().map_err(|e| DecodeError::new("(batch)", e.to_string()))?;
    match value {
        Value::Array(events) => {
            if let Some((i, not_object)) = events.iter().enumerate().find(|(_, e)| !e.is_object()) {
                return Err(DecodeError::new(
                    format!("[{i}]"),
                    format!("expected an event object, found {}", tolerant::kind_of(not_object)),
                ));
            }
            Ok(events)
        }
        Value::Object(_) => Ok(vec![value]),
        other => Err(DecodeError::new(
            "(batch)",
            format!("expected an array of events or one event, found {}", tolerant::kind_of(&other)),
        )),
    }
}

/// The answer to a `SubscriptionValidation` delivery: `{"validationResponse": "<validationCode>"}`, from the
/// validation event in the batch.
pub fn validation_response(batch: &[Value]) -> Result<Value, DecodeError> {
    for (i, raw) in batch.iter().enumerate() {
        let event =
            Event::from_value(raw.clone()).map_err(|e| DecodeError::new(format!("[{i}].{}", e.path()), e.message()))?;
        if let Payload::SubscriptionValidation(v) = event.payload {
            return Ok(json!({ "validationResponse": v.validation_code }));
        }
    }
    Err(DecodeError::new(
        "(batch)",
        "a SubscriptionValidation delivery without a Microsoft.EventGrid.SubscriptionValidationEvent",
    ))
}

/// Whether Event Grid counts an HTTP status as delivered. Only 200-204: a 3xx or a 207 is a failure.
pub fn is_success(status: u16) -> bool {
    (200..=204).contains(&status)
}

/// Whether Event Grid gives up on a delivery at once (dead-letter or drop) instead of retrying.
/// 401 is final only for webhooks, not for `AzureFunction` endpoints.
pub fn is_final_failure(status: u16, webhook: bool) -> bool {
    matches!(status, 400 | 403 | 413) || (webhook && status == 401)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_matched_loosely_and_unknown_ones_are_errors() {
        assert_eq!(DeliveryKind::from_header(Some("Notification")), Ok(DeliveryKind::Notification));
        assert_eq!(
            DeliveryKind::from_header(Some(" subscriptionvalidation")),
            Ok(DeliveryKind::SubscriptionValidation)
        );
        assert_eq!(DeliveryKind::from_header(None), Err(DeliveryError::MissingEventTypeHeader));
        assert!(DeliveryKind::from_header(Some("Ping")).unwrap_err().to_string().contains("'Ping'"));
    }

    #[test]
    fn a_batch_is_an_array_or_one_object() {
        assert_eq!(split_batch(br#"[{"a":1},{"b":2}]"#).unwrap().len(), 2);
        assert_eq!(split_batch(br#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(split_batch(br#"[{"a":1}, 3]"#).unwrap_err().path(), "[1]");
        assert!(split_batch(b"not json").is_err());
        assert!(split_batch(br#""text""#).unwrap_err().message().contains("found a string"));
        assert!(split_batch(br#"[] trailing"#).is_err());
    }

    #[test]
    fn only_200_to_204_count_as_delivered() {
        assert!([200, 201, 202, 203, 204].into_iter().all(is_success));
        assert!(![205, 207, 301, 400, 500].into_iter().any(is_success));
        assert!(is_final_failure(401, true) && !is_final_failure(401, false));
        assert!(is_final_failure(413, false) && !is_final_failure(500, true));
    }
}
