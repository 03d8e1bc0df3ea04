//! Runs one event through a handler, independent of how the event arrived: decoding, the "not configured"
//! short-circuit, panic isolation, the tracing span and the one log line per decision all live here, so every
//! adapter (Azure Functions today, AWS Lambda later) behaves the same and only maps a [`Verdict`] to its wire.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use keyturn_events::Event;
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use crate::outcome::{HandlerError, Outcome, Status};
use crate::timer::Tick;

tokio::task_local! {
    /// When the event the current task is handling reached this process: set by [`Invoker::invoke`] around the
    /// handler, so that work paced to a service's limits can count its wait from the event's arrival (Event
    /// Grid waits 30 s for an answer, from delivery, not from the call that is about to wait).
    static EVENT_ARRIVED: tokio::time::Instant;
}

/// When the event this task is handling arrived; `None` outside an invocation (a timer's run, a test).
pub fn event_arrived() -> Option<tokio::time::Instant> {
    EVENT_ARRIVED.try_with(|arrived| *arrived).ok()
}

/// What an adapter must tell its platform about one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledge the event: it was handled, skipped or can never be handled. Event Grid will not resend it.
    Acknowledge(Outcome),
    /// Fail the invocation so that Event Grid delivers the event again later.
    Retry(Failure),
}

impl Verdict {
    /// The line an adapter shows its platform: `done: ...`, `skipped: ...`, `rejected: ...` or the failure.
    pub fn log_line(&self) -> String {
        match self {
            Verdict::Acknowledge(outcome) => outcome.log_line(),
            Verdict::Retry(failure) => format!("retry: {failure}"),
        }
    }
}

/// Why an invocation failed (and will be retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Loading configuration or building clients failed at startup; every invocation fails with this message
    /// until the setting is fixed and the process restarted, while Event Grid keeps the events.
    NotConfigured(String),
    /// The handler returned [`HandlerError::retryable`].
    Retryable(String),
    /// The handler panicked; the panic's message, when it had one.
    Panicked(String),
    /// The runtime dropped the handler's task before it finished (the process is going down).
    Cancelled,
}

impl Failure {
    /// The short name of the failure in structured logs.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::NotConfigured(_) => "not_configured",
            Failure::Retryable(_) => "retryable_error",
            Failure::Panicked(_) => "panicked",
            Failure::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotConfigured(message) => write!(f, "not configured: {message}"),
            Failure::Retryable(message) => f.write_str(message),
            Failure::Panicked(message) => write!(f, "handler panicked: {message}"),
            Failure::Cancelled => f.write_str("handler cancelled: the process is shutting down"),
        }
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Outcome, HandlerError>> + Send>>;

/// One invocation's input, decoded: what the logs call it, and the handler call, not yet made (it is made
/// inside the invocation's own task, so even a panic while creating the handler's future is isolated).
struct Decoded {
    /// The event's id (empty for a timer tick, which has none on Azure).
    id: String,
    /// The event type, or `timer`.
    kind: String,
    call: Box<dyn FnOnce() -> HandlerFuture + Send>,
}

/// Decodes a raw input and binds it to the handler; an input that cannot be decoded is the error's text.
type BoxedHandler = Arc<dyn Fn(Value) -> Result<Decoded, String> + Send + Sync>;

/// What triggers a function: which binding its input arrives under, and how it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An Event Grid event (`eventGridTrigger`, or the webhook on Lambda), decoded as a
    /// [`keyturn_events::Event`].
    EventGrid,
    /// A schedule (`timerTrigger`, or an EventBridge schedule rule on Lambda), decoded as a [`Tick`].
    Timer,
}

impl Trigger {
    /// The binding name under the custom-handler envelope's `Data` (each function.json names it so).
    pub fn binding_name(self) -> &'static str {
        match self {
            Trigger::EventGrid => crate::azure_functions::wire::BINDING_NAME,
            Trigger::Timer => crate::timer::TIMER_BINDING_NAME,
        }
    }

    /// The binding type function.json declares.
    pub fn binding_type(self) -> &'static str {
        match self {
            Trigger::EventGrid => "eventGridTrigger",
            Trigger::Timer => "timerTrigger",
        }
    }
}

/// What an invocation runs: the handler, or the configuration error every invocation fails with.
#[derive(Clone)]
enum Handling {
    Ready(BoxedHandler),
    NotConfigured(Arc<str>),
}

impl Handling {
    /// `handler` bound to its dependencies, its input decoded by `decode` (into the id and type the logs name
    /// it by, and the typed input); or the configuration error every invocation fails with.
    fn bind<D, E, I, F, Fut>(
        deps: Result<D, E>,
        decode: impl Fn(Value) -> Result<(String, String, I), String> + Send + Sync + 'static,
        handler: F,
    ) -> Self
    where
        D: Send + Sync + 'static,
        E: fmt::Display,
        I: Send + 'static,
        F: Fn(I, Arc<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, HandlerError>> + Send + 'static,
    {
        let deps = match deps {
            Ok(deps) => Arc::new(deps),
            Err(error) => return Handling::NotConfigured(error.to_string().into()),
        };
        let handler = Arc::new(handler);
        Handling::Ready(Arc::new(move |raw: Value| {
            let (id, kind, input) = decode(raw)?;
            let (deps, handler) = (Arc::clone(&deps), Arc::clone(&handler));
            Ok(Decoded { id, kind, call: Box::new(move || Box::pin(handler(input, deps)) as HandlerFuture) })
        }))
    }
}

/// One function's handler with its shared dependencies, ready to take invocations from any adapter.
///
/// Cheap to clone (shared state behind `Arc`s), so adapters hand a copy to every connection. Generic parameters
/// stop at [`Invoker::new`]: adapters and their route types stay non-generic.
#[derive(Clone)]
pub struct Invoker {
    function: &'static str,
    trigger: Trigger,
    target: Handling,
    in_flight: InFlight,
}

impl fmt::Debug for Invoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invoker")
            .field("function", &self.function)
            .field("trigger", &self.trigger)
            .field("configured", &self.not_configured().is_none())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Invoker {
    /// Wraps `handler` for `function`. `deps` is the result of loading configuration and building clients once;
    /// an `Err` does not stop anything: every invocation then fails with its message (see
    /// [`Failure::NotConfigured`]).
    pub fn new<D, E, F, Fut>(function: &'static str, deps: Result<D, E>, handler: F) -> Self
    where
        D: Send + Sync + 'static,
        E: fmt::Display,
        F: Fn(Event, Arc<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, HandlerError>> + Send + 'static,
    {
        let decode = |raw: Value| {
            let event = Event::from_value(raw).map_err(|error| error.to_string())?;
            Ok((event.id.clone(), event.event_type().to_owned(), event))
        };
        let target = Handling::bind(deps, decode, handler);
        Invoker { function, trigger: Trigger::EventGrid, target, in_flight: InFlight::default() }
    }

    /// Wraps a scheduled function's `handler` for `function` (the `sweep`): its input is a [`Tick`] from a
    /// timer trigger or an EventBridge schedule. `deps` as for [`Invoker::new`].
    pub fn timer<D, E, F, Fut>(function: &'static str, deps: Result<D, E>, handler: F) -> Self
    where
        D: Send + Sync + 'static,
        E: fmt::Display,
        F: Fn(Tick, Arc<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, HandlerError>> + Send + 'static,
    {
        let decode = |raw: Value| {
            let tick = Tick::from_value(&raw).map_err(|error| error.to_string())?;
            Ok((tick.id.clone().unwrap_or_default(), "timer".to_owned(), tick))
        };
        let target = Handling::bind(deps, decode, handler);
        Invoker { function, trigger: Trigger::Timer, target, in_flight: InFlight::default() }
    }

    /// What triggers this function.
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// The function this invoker serves (e.g. `near-expiry`): its route and the name in every log line.
    pub fn function(&self) -> &'static str {
        self.function
    }

    /// The configuration error every invocation fails with, if loading the dependencies failed.
    pub fn not_configured(&self) -> Option<&str> {
        match &self.target {
            Handling::Ready(_) => None,
            Handling::NotConfigured(message) => Some(message),
        }
    }

    /// How many invocations are running right now.
    pub fn in_flight(&self) -> usize {
        *self.in_flight.count.borrow()
    }

    /// Resolves once no invocation is running (immediately if none is). Used to drain before exiting.
    pub async fn idle(&self) {
        let mut count = self.in_flight.count.subscribe();
        // `wait_for` fails only when the sender is gone, and `self` holds it: nothing to handle.
        let _ = count.wait_for(|running| *running == 0).await;
    }

    /// Runs one input (an event's raw JSON in either schema, or a timer tick's) through the handler and logs
    /// the decision.
    ///
    /// The handler runs in its own tokio task: a panic fails this invocation only, and a handler keeps running
    /// to the end even if the adapter stops waiting (a caller that hung up must not leave a rotation
    /// half-done).
    pub async fn invoke(&self, invocation_id: &str, event: Value) -> Verdict {
        let arrived = tokio::time::Instant::now();
        let guard = self.in_flight.enter();
        let handler = match &self.target {
            Handling::Ready(handler) => Arc::clone(handler),
            Handling::NotConfigured(message) => {
                let failure = Failure::NotConfigured(message.to_string());
                let event_id = raw_event_id(&event);
                self.log_decision(invocation_id, event_id, None, &Verdict::Retry(failure.clone()));
                return Verdict::Retry(failure);
            }
        };

        let event_id = raw_event_id(&event).map(str::to_owned);
        let Decoded { id: event_id, kind: event_type, call } = match handler(event) {
            Ok(decoded) => decoded,
            Err(error) => {
                // Valid JSON that is not a well-formed input: delivering it again for 24 hours cannot help.
                let verdict = Verdict::Acknowledge(Outcome::rejected(error));
                self.log_decision(invocation_id, event_id.as_deref(), None, &verdict);
                return verdict;
            }
        };

        let span = tracing::info_span!(
            "invocation",
            invocation_id,
            function = self.function,
            event_id = %event_id,
            event_type = %event_type,
        );
        let trigger = self.trigger;
        let task = tokio::spawn(
            async move {
                // The guard lives as long as the handler, wherever the caller went: draining waits for it.
                let _guard = guard;
                match trigger {
                    // Event Grid's 30 s to answer run from delivery: paced work counts its wait from here.
                    Trigger::EventGrid => EVENT_ARRIVED.scope(arrived, call()).await,
                    // A timer's run answers no one within a deadline of its own.
                    Trigger::Timer => call().await,
                }
            }
            .instrument(span),
        );
        let verdict = match task.await {
            Ok(Ok(outcome)) => Verdict::Acknowledge(outcome),
            Ok(Err(error)) if error.is_retryable() => Verdict::Retry(Failure::Retryable(error.message().to_owned())),
            Ok(Err(error)) => Verdict::Acknowledge(Outcome::rejected(error.message().to_owned())),
            Err(join_error) if join_error.is_panic() => {
                Verdict::Retry(Failure::Panicked(panic_message(join_error.into_panic())))
            }
            Err(_) => Verdict::Retry(Failure::Cancelled),
        };
        self.log_decision(invocation_id, Some(&event_id), Some(&event_type), &verdict);
        verdict
    }

    /// The one structured line per decision, self-contained (it repeats the span's fields) so that it reads
    /// alone in any log query.
    fn log_decision(&self, invocation_id: &str, event_id: Option<&str>, event_type: Option<&str>, verdict: &Verdict) {
        let function = self.function;
        let event_id = event_id.unwrap_or("");
        let event_type = event_type.unwrap_or("");
        match verdict {
            Verdict::Acknowledge(outcome) if outcome.status == Status::Rejected => {
                let message = outcome.message();
                let action = outcome.action.as_deref().unwrap_or("");
                tracing::warn!(
                    invocation_id,
                    function,
                    event_id,
                    event_type,
                    outcome = "rejected",
                    action,
                    "{message}"
                );
            }
            Verdict::Acknowledge(outcome) => {
                let message = outcome.message();
                let action = outcome.action.as_deref().unwrap_or("");
                tracing::info!(
                    invocation_id,
                    function,
                    event_id,
                    event_type,
                    outcome = outcome.label(),
                    action,
                    "{message}"
                );
            }
            Verdict::Retry(failure) => {
                tracing::error!(
                    invocation_id,
                    function,
                    event_id,
                    event_type,
                    outcome = "retry",
                    failure = failure.label(),
                    "{failure}"
                );
            }
        }
    }
}

/// The `id` of an event that may not decode, so that even a rejected event can be found in the logs.
fn raw_event_id(event: &Value) -> Option<&str> {
    event.get("id").and_then(Value::as_str)
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Counts running invocations; a `watch` channel so that draining can wait for zero without polling.
#[derive(Clone)]
struct InFlight {
    count: Arc<watch::Sender<usize>>,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight { count: Arc::new(watch::Sender::new(0)) }
    }
}

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.count.send_modify(|running| *running += 1);
        InFlightGuard { count: Arc::clone(&self.count) }
    }
}

struct InFlightGuard {
    count: Arc<watch::Sender<usize>>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.count.send_modify(|running| *running -= 1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;
    use tokio::sync::oneshot;
    use tracing_subscriber::EnvFilter;

    use super::*;
    use crate::logging::capture::Captured;
    use crate::logging::json_subscriber;

    const NEAR_EXPIRY: &str = include_str!("../../events/fixtures/eventgrid-secret-near-expiry.json");

    fn near_expiry() -> Value {
        serde_json::from_str(NEAR_EXPIRY).unwrap()
    }

    /// An invoker whose handler answers with `answer` and counts its calls.
    fn invoker_answering(answer: fn(&Event) -> Result<Outcome, HandlerError>) -> (Invoker, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let deps: Result<Arc<AtomicUsize>, String> = Ok(Arc::clone(&calls));
        let invoker = Invoker::new("near-expiry", deps, move |event: Event, calls: Arc<Arc<AtomicUsize>>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            answer(&event)
        });
        (invoker, calls)
    }

    #[tokio::test]
    async fn the_handler_gets_the_decoded_event_and_its_outcome_is_acknowledged() {
        let (invoker, calls) =
            invoker_answering(|event| Ok(Outcome::done(format!("{} {}", event.id, event.event_type()))));
        let verdict = invoker.invoke("inv-1", near_expiry()).await;
        assert_eq!(
            verdict,
            Verdict::Acknowledge(Outcome::done(
                "b620eb99-826d-b5e8-970f-38ff3094f49b Microsoft.KeyVault.SecretNearExpiry"
            ))
        );
        assert_eq!(
            verdict.log_line(),
            "done: b620eb99-826d-b5e8-970f-38ff3094f49b Microsoft.KeyVault.SecretNearExpiry"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_handler_knows_when_its_event_arrived_and_nothing_else_does() {
        assert_eq!(event_arrived(), None, "outside an invocation");
        let before = tokio::time::Instant::now();
        let (invoker, _) = invoker_answering(|_| {
            let arrived = event_arrived().ok_or_else(|| HandlerError::permanent("no arrival time"))?;
            Ok(Outcome::done(format!("{}", arrived.elapsed() < Duration::from_secs(5))))
        });
        let verdict = invoker.invoke("inv", near_expiry()).await;
        assert_eq!(verdict.log_line(), "done: true", "arrived when invoked");
        assert!(before.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn skipped_and_rejected_outcomes_are_acknowledged() {
        let (invoker, _) = invoker_answering(|_| Ok(Outcome::skipped("not ours")));
        let verdict = invoker.invoke("inv", near_expiry()).await;
        assert_eq!(verdict.log_line(), "skipped: not ours");

        let (invoker, _) = invoker_answering(|_| Ok(Outcome::rejected("foreign vault")));
        let verdict = invoker.invoke("inv", near_expiry()).await;
        assert_eq!(verdict.log_line(), "rejected: foreign vault");
    }

    #[tokio::test]
    async fn a_retryable_error_asks_for_a_retry() {
        let (invoker, _) = invoker_answering(|_| Err(HandlerError::retryable("vault answered 503")));
        let verdict = invoker.invoke("inv", near_expiry()).await;
        assert_eq!(verdict, Verdict::Retry(Failure::Retryable("vault answered 503".into())));
    }

    #[tokio::test]
    async fn a_permanent_error_is_acknowledged_as_rejected() {
        let (invoker, _) = invoker_answering(|_| Err(HandlerError::permanent("no policy tag")));
        let verdict = invoker.invoke("inv", near_expiry()).await;
        assert_eq!(verdict, Verdict::Acknowledge(Outcome::rejected("no policy tag")));
    }

    #[tokio::test]
    async fn a_panic_fails_only_that_invocation() {
        let (invoker, calls) = invoker_answering(|event| {
            if event.subject == "db-password" {
                panic!("boom on {}", event.subject);
            }
            Ok(Outcome::done("fine"))
        });
        let verdict = invoker.invoke("inv-1", near_expiry()).await;
        assert_eq!(verdict, Verdict::Retry(Failure::Panicked("boom on db-password".into())));
        assert_eq!(verdict.log_line(), "retry: handler panicked: boom on db-password");

        let mut other = near_expiry();
        other["subject"] = json!("api-key");
        other["data"]["ObjectName"] = json!("api-key");
        other["data"]["Id"] =
            json!("https://sample-kv.vault.azure.net/secrets/api-key/c5aab54cb80a27d8b0355bb5af566194");
        assert_eq!(invoker.invoke("inv-2", other).await, Verdict::Acknowledge(Outcome::done("fine")));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(invoker.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_panic_while_creating_the_handler_future_is_caught_too() {
        let deps: Result<(), String> = Ok(());
        let invoker = Invoker::new("near-expiry", deps, |_event: Event, _deps: Arc<()>| {
            // A non-async handler that panics before it returns its future.
            panic!("not even started");
            #[allow(unreachable_code)]
            std::future::ready(Ok(Outcome::done(String::new())))
        });
        let verdict = invoker.invoke("inv", near_expiry()).await;
        assert_eq!(verdict, Verdict::Retry(Failure::Panicked("not even started".into())));
    }

    #[tokio::test]
    async fn not_configured_fails_every_invocation_with_the_same_message_without_calling_the_handler() {
        let deps: Result<(), String> = Err("KEYTURN_VAULTS is not set".into());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let invoker = Invoker::new("near-expiry", deps, move |_event: Event, _deps: Arc<()>| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Outcome::done(String::new())))
        });
        assert_eq!(invoker.not_configured(), Some("KEYTURN_VAULTS is not set"));
        for event in [near_expiry(), json!("not even an event")] {
            let verdict = invoker.invoke("inv", event).await;
            assert_eq!(verdict, Verdict::Retry(Failure::NotConfigured("KEYTURN_VAULTS is not set".into())));
            assert_eq!(verdict.log_line(), "retry: not configured: KEYTURN_VAULTS is not set");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_event_that_does_not_decode_is_rejected_with_its_path() {
        let (invoker, calls) = invoker_answering(|_| Ok(Outcome::done("never")));
        let mut event = near_expiry();
        event["data"]["EXP"] = json!(true);
        let verdict = invoker.invoke("inv", event).await;
        let Verdict::Acknowledge(Outcome { status: Status::Rejected, message: reason, .. }) = &verdict else {
            panic!("expected a rejection, got {verdict:?}");
        };
        assert!(reason.starts_with("data.EXP: "), "{reason}");
        assert!(verdict.log_line().starts_with("rejected: data.EXP: "));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn idle_waits_for_a_handler_whose_caller_went_away() {
        let (release, released) = oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let deps: Result<(), String> = Ok(());
        let invoker = Invoker::new("near-expiry", deps, move |_event: Event, _deps: Arc<()>| {
            let released = Arc::clone(&released);
            async move {
                if let Some(released) = released.lock().await.take() {
                    let _ = released.await;
                }
                Ok(Outcome::done("finished"))
            }
        });

        // The caller gives up (as a dropped HTTP connection would) while the handler still runs.
        let abandoned = tokio::time::timeout(Duration::from_millis(50), invoker.invoke("inv", near_expiry())).await;
        assert!(abandoned.is_err());
        assert_eq!(invoker.in_flight(), 1);
        let idle = tokio::time::timeout(Duration::from_millis(50), invoker.idle()).await;
        assert!(idle.is_err(), "idle must wait for the running handler");

        release.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), invoker.idle()).await.unwrap();
        assert_eq!(invoker.in_flight(), 0);
    }

    #[tokio::test]
    async fn each_decision_is_one_json_line_with_the_invocation_context() {
        let captured = Captured::default();
        let subscriber = json_subscriber(EnvFilter::new("info"), captured.clone());
        let _default = tracing::subscriber::set_default(subscriber);

        let deps: Result<(), String> = Ok(());
        let invoker = Invoker::new("near-expiry", deps, |_event: Event, _deps: Arc<()>| async {
            tracing::info!("handler speaking");
            Ok(Outcome::skipped("already rotated"))
        });
        invoker.invoke("inv-42", near_expiry()).await;

        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        // The handler's own line carries the invocation through the span.
        assert_eq!(lines[0]["message"], "handler speaking");
        assert_eq!(lines[0]["span"]["invocation_id"], "inv-42");
        assert_eq!(lines[0]["span"]["event_type"], "Microsoft.KeyVault.SecretNearExpiry");
        // The decision line stands alone.
        let decision = &lines[1];
        assert_eq!(decision["level"], "INFO");
        assert_eq!(decision["message"], "already rotated");
        assert_eq!(decision["outcome"], "skipped");
        assert_eq!(decision["invocation_id"], "inv-42");
        assert_eq!(decision["function"], "near-expiry");
        assert_eq!(decision["event_id"], "b620eb99-826d-b5e8-970f-38ff3094f49b");
    }
}
