//! Delivering one batch to one subscription the way Event Grid does: POST an array with the `aeg-*`
//! headers, success only on 200-204, a final failure dead-lettered at once, anything else retried on the
//! service's schedule until the attempts or the time to live run out.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use keyturn_events::delivery::{self, DeliveryKind};
use keyturn_events::{Event, Schema};
use serde::Serialize;
use serde_json::Value;

use super::{EndpointType, Shared, Subscription};

/// Event Grid's retry schedule after the 1st, 2nd, ... failed attempt; every 12 h after the last.
const RETRY_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 60 * 60),
    Duration::from_secs(6 * 60 * 60),
];
const LATER_RETRIES: Duration = Duration::from_secs(12 * 60 * 60);

/// The wait after `failed_attempts` failed attempts, in event time (before the time scale).
pub(crate) fn retry_delay(failed_attempts: u32) -> Duration {
    let index = failed_attempts.saturating_sub(1) as usize;
    RETRY_SCHEDULE.get(index).copied().unwrap_or(LATER_RETRIES)
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub subscription: String,
    pub event_ids: Vec<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The HTTP status, or `None` when no response came (refused, reset, timed out).
    pub status: Option<u16>,
    /// Event Grid's name for the outcome: `Delivered`, `BadRequest`, `TimedOut`, `GenericError`, ...
    pub outcome: String,
    pub duplicate: bool,
}

/// A batch Event Grid gave up on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub subscription: String,
    /// `MaxDeliveryAttemptsExceeded`, `TimeToLiveExceeded`, or `UndeliverableDueToHttp<Outcome>` for a
    /// final failure (`UndeliverableDueToHttpBadRequest` is the one seen in real records).
    pub dead_letter_reason: String,
    pub delivery_attempts: u32,
    pub last_delivery_outcome: String,
    pub last_http_status_code: Option<u16>,
    pub publish_time: DateTime<Utc>,
    pub last_delivery_attempt_time: DateTime<Utc>,
    /// The events as the subscription would have received them.
    pub events: Vec<Value>,
}

/// Delivers `batch` to `subscription` until it succeeds or is dead-lettered (or dropped, without a
/// dead-letter destination). `duplicate` marks an injected extra copy: one attempt, no retries.
pub(crate) async fn deliver(shared: &Shared, subscription: &Subscription, batch: Vec<Event>, duplicate: bool) {
    let published = Instant::now();
    let publish_time = shared.clock.now();
    let body = render(subscription.schema, &batch);
    let event_ids: Vec<String> = batch.iter().map(|e| e.id.clone()).collect();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let (status, outcome) = post(shared, subscription, &body, attempts - 1).await;
        let attempt_time = shared.clock.now();
        shared.record(Attempt {
            subscription: subscription.name.clone(),
            event_ids: event_ids.clone(),
            attempt: attempts,
            status,
            outcome: outcome.clone(),
            duplicate,
        });
        if status.is_some_and(delivery::is_success) || duplicate {
            return;
        }
        let webhook = subscription.endpoint_kind == EndpointType::Webhook;
        let reason = if status.is_some_and(|s| delivery::is_final_failure(s, webhook)) {
            Some(format!("UndeliverableDueToHttp{outcome}"))
        } else if attempts >= subscription.max_delivery_attempts {
            Some("MaxDeliveryAttemptsExceeded".to_owned())
        } else {
            let delay = shared.scale(retry_delay(attempts));
            let age_in_event_time = shared.unscale(published.elapsed() + delay);
            (age_in_event_time > subscription.event_ttl).then(|| "TimeToLiveExceeded".to_owned())
        };
        if let Some(reason) = reason {
            let letter = DeadLetter {
                subscription: subscription.name.clone(),
                dead_letter_reason: reason,
                delivery_attempts: attempts,
                last_delivery_outcome: outcome,
                last_http_status_code: status,
                publish_time,
                last_delivery_attempt_time: attempt_time,
                events: batch_values(subscription.schema, &batch),
            };
            shared.dead_letter(subscription, letter).await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(shared.scale(retry_delay(attempts))) => {}
            () = shared.stopped() => return,
        }
    }
}

fn batch_values(schema: Schema, batch: &[Event]) -> Vec<Value> {
    batch
        .iter()
        .map(|event| {
            let mut event = event.clone();
            event.schema = schema;
            event.to_value()
        })
        .collect()
}

fn render(schema: Schema, batch: &[Event]) -> Vec<u8> {
    // A Vec<Value> always serializes; an empty body would only make the endpoint answer 400.
    serde_json::to_vec(&batch_values(schema, batch)).unwrap_or_default()
}

/// One HTTP attempt. Returns the status (if any response came) and Event Grid's outcome name.
async fn post(shared: &Shared, subscription: &Subscription, body: &[u8], delivery_count: u32) -> (Option<u16>, String) {
    let content_type = match subscription.schema {
        Schema::EventGrid => "application/json; charset=utf-8",
        Schema::CloudEvents => "application/cloudevents-batch+json; charset=utf-8",
    };
    let mut request = shared
        .http
        .post(subscription.endpoint.clone())
        .header("content-type", content_type)
        .header(delivery::EVENT_TYPE_HEADER, DeliveryKind::Notification.as_str())
        .header(delivery::DELIVERY_COUNT_HEADER, delivery_count.to_string())
        .header(delivery::SUBSCRIPTION_NAME_HEADER, subscription.name.to_ascii_uppercase())
        .header(delivery::METADATA_VERSION_HEADER, "1")
        .header(delivery::DATA_VERSION_HEADER, "1")
        .timeout(shared.options.delivery_timeout)
        .body(body.to_vec());
    for (name, value) in &subscription.delivery_headers {
        request = request.header(name.as_str(), value.as_str());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (Some(status), outcome_name(status).to_owned())
        }
        Err(e) if e.is_timeout() => (None, "TimedOut".to_owned()),
        Err(_) => (None, "GenericError".to_owned()),
    }
}

/// Event Grid's names for delivery outcomes, as they appear in `lastDeliveryOutcome`.
fn outcome_name(status: u16) -> &'static str {
    match status {
        s if delivery::is_success(s) => "Delivered",
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        408 => "TimedOut",
        413 => "RequestEntityTooLarge",
        429 | 503 => "Busy",
        _ => "GenericError",
    }
}

/// Where a dead-letter record goes inside the dead-letter directory, as the service names the blob:
/// `<SUBSCRIPTION-NAME>/YYYY/M/D/H/<guid>.json` (upper-cased name, no zero padding).
pub(crate) fn dead_letter_path(subscription: &str, at: DateTime<Utc>, id: &str) -> std::path::PathBuf {
    use chrono::{Datelike, Timelike};
    std::path::PathBuf::from(subscription.to_ascii_uppercase())
        .join(at.year().to_string())
        .join(at.month().to_string())
        .join(at.day().to_string())
        .join(at.hour().to_string())
        .join(format!("{id}.json"))
}

/// The blob body: the events, each with the dead-letter properties added, as Event Grid writes them.
pub(crate) fn dead_letter_blob(letter: &DeadLetter) -> Value {
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    Value::Array(
        letter
            .events
            .iter()
            .map(|event| {
                let mut event = event.clone();
                if let Value::Object(map) = &mut event {
                    map.insert("deadLetterReason".into(), letter.dead_letter_reason.clone().into());
                    map.insert("deliveryAttempts".into(), letter.delivery_attempts.into());
                    map.insert("lastDeliveryOutcome".into(), letter.last_delivery_outcome.clone().into());
                    map.insert("lastHttpStatusCode".into(), letter.last_http_status_code.into());
                    map.insert("publishTime".into(), stamp(letter.publish_time).into());
                    map.insert("lastDeliveryAttemptTime".into(), stamp(letter.last_delivery_attempt_time).into());
                }
                event
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_event_grids() {
        let minutes = |n: u64| Duration::from_secs(n * 60);
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(2), Duration::from_secs(30));
        assert_eq!(retry_delay(4), minutes(5));
        assert_eq!(retry_delay(9), minutes(6 * 60));
        assert_eq!(retry_delay(10), minutes(12 * 60));
        assert_eq!(retry_delay(29), minutes(12 * 60));
    }

    #[test]
    fn dead_letter_blobs_are_named_like_the_service_names_them() {
        let at = DateTime::parse_from_rfc3339("2019-08-08T05:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(
            dead_letter_path("My-Blob-Subscription", at, "1111").to_string_lossy(),
            "MY-BLOB-SUBSCRIPTION/2019/8/8/5/1111.json"
        );
    }
}
