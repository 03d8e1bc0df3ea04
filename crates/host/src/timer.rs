//! A timer trigger's tick: what a scheduled function (the `sweep`) is invoked with, on either platform.
//!
//! - Azure Functions (`timerTrigger` binding, see `reference/functions-custom-handler.md`): the host posts
//!   `{"Data": {"timer": {"Schedule": {...}, "ScheduleStatus": {"Last": ..., "Next": ..., "LastUpdated": ...},
//!   "IsPastDue": false}}, ...}`. The .NET host serialises the names in PascalCase; camelCase is accepted too
//!   (other workers' spelling), and every field is optional: `ScheduleStatus` is absent when schedule
//!   monitoring is off, and a manual run (`POST /admin/functions/sweep`) sends `{}`.
//! - AWS Lambda, an EventBridge scheduled rule: the payload is the EventBridge event itself,
//!   `{"source": "aws.events", "detail-type": "Scheduled Event", "time": "...", "id": "...", ...}`.
//!
//! A tick carries no instruction: whatever it says, a scheduled function does its whole job. Its fields are
//! for the logs (which run this was, whether the schedule was missed).

use serde_json::Value;

/// The binding name of the `timerTrigger` in the `sweep` function.json: the key under `Data`.
pub const TIMER_BINDING_NAME: &str = "timer";

/// One scheduled invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Which platform's scheduler sent it.
    pub source: TickSource,
    /// The run was due earlier and is late (the app was down, or a previous run overran).
    pub past_due: bool,
    /// When this run was scheduled for, as the scheduler said (RFC 3339), if it did.
    pub scheduled: Option<String>,
    /// The scheduler's id for the run, if it has one (EventBridge's event id).
    pub id: Option<String>,
}

/// Which scheduler sent a [`Tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickSource {
    /// An Azure Functions timer trigger.
    AzureTimer,
    /// An EventBridge scheduled rule invoking a Lambda function.
    EventBridge,
}

impl TickSource {
    /// As logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            TickSource::AzureTimer => "azure-timer",
            TickSource::EventBridge => "eventbridge-schedule",
        }
    }
}

/// A payload that is not a timer tick.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a timer tick: {0}")]
pub struct NotATick(String);

impl Tick {
    /// Decodes an Azure timer binding's value or an EventBridge scheduled event.
    pub fn from_value(value: &Value) -> Result<Self, NotATick> {
        let Value::Object(fields) = value else {
            return Err(NotATick(format!("expected a JSON object, found {}", keyturn_events::json_kind(value))));
        };
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
        if fields.contains_key("detail-type") || fields.get("source").and_then(Value::as_str) == Some("aws.events") {
            let detail_type = text(fields.get("detail-type")).unwrap_or_default();
            if detail_type != "Scheduled Event" {
                return Err(NotATick(format!(
                    "an EventBridge event of detail-type {detail_type:?}; only \"Scheduled Event\" (a schedule rule) \
                     invokes a scheduled function"
                )));
            }
            return Ok(Tick {
                source: TickSource::EventBridge,
                past_due: false,
                scheduled: text(fields.get("time")),
                id: text(fields.get("id")),
            });
        }
        // Either spelling of each field.
        let field = |pascal: &str, camel: &str| fields.get(pascal).or_else(|| fields.get(camel));
        if let Some(unknown) = fields.keys().find(|k| {
            !["Schedule", "schedule", "ScheduleStatus", "scheduleStatus", "IsPastDue", "isPastDue"]
                .contains(&k.as_str())
        }) {
            return Err(NotATick(format!(
                "unexpected field {unknown:?} (a timer binding has Schedule, ScheduleStatus, IsPastDue; is an event \
                 being posted to a timer function?)"
            )));
        }
        let past_due = match field("IsPastDue", "isPastDue") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(other) => {
                return Err(NotATick(format!("IsPastDue is {}, not a boolean", keyturn_events::json_kind(other))));
            }
        };
        let status = field("ScheduleStatus", "scheduleStatus");
        let scheduled = status.and_then(|s| text(s.get("Next").or_else(|| s.get("next"))));
        Ok(Tick { source: TickSource::AzureTimer, past_due, scheduled, id: None })
    }

    /// What the Functions host stand-in and tests post: a tick as the .NET host serialises one.
    pub fn azure_binding_value(past_due: bool, last: &str, next: &str) -> Value {
        serde_json::json!({
            "Schedule": {"AdjustForDST": true},
            "ScheduleStatus": {"Last": last, "Next": next, "LastUpdated": last},
            "IsPastDue": past_due,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_azure_timer_binding_decodes_in_either_spelling_and_with_fields_missing() {
        let tick =
            Tick::from_value(&Tick::azure_binding_value(true, "2027-01-01T00:00:00Z", "2027-01-01T01:00:00Z")).unwrap();
        assert_eq!(
            tick,
            Tick {
                source: TickSource::AzureTimer,
                past_due: true,
                scheduled: Some("2027-01-01T01:00:00Z".into()),
                id: None
            }
        );
        let camel = Tick::from_value(&json!({"isPastDue": false, "scheduleStatus": {"next": "x"}})).unwrap();
        assert_eq!((camel.past_due, camel.scheduled.as_deref()), (false, Some("x")));
        assert_eq!(Tick::from_value(&json!({})).unwrap().source, TickSource::AzureTimer, "a manual run");
    }

    #[test]
    fn an_eventbridge_schedule_decodes_and_other_eventbridge_events_do_not() {
        let scheduled = json!({"version": "0", "id": "53dc4d37", "detail-type": "Scheduled Event",
            "source": "aws.events", "time": "2027-01-01T00:00:00Z", "resources": ["arn:aws:events:..."], "detail": {}});
        let tick = Tick::from_value(&scheduled).unwrap();
        assert_eq!((tick.source, tick.id.as_deref()), (TickSource::EventBridge, Some("53dc4d37")));
        let other = json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2"});
        assert!(Tick::from_value(&other).unwrap_err().to_string().contains("only \"Scheduled Event\""));
    }

    #[test]
    fn an_event_posted_to_a_timer_function_is_refused_naming_what_it_found() {
        let event = json!({"id": "1", "eventType": "Microsoft.KeyVault.SecretNearExpiry", "data": {}});
        let error = Tick::from_value(&event).unwrap_err().to_string();
        assert!(error.contains("unexpected field") && error.contains("timer function"), "{error}");
        assert!(Tick::from_value(&json!({"IsPastDue": "yes"})).unwrap_err().to_string().contains("not a boolean"));
        assert!(Tick::from_value(&json!([1])).is_err());
    }
}
