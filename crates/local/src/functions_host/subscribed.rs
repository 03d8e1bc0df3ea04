//! One handler behind the Functions host stand-in, subscribed to the local stack's Event Grid as its
//! deployment is subscribed: what `keyturn dev`, `keyturn demo` and the end-to-end tests all do, in one place.

use std::path::PathBuf;

use keyturn_app::{Canary, FunctionApp, Handler};

use super::{FunctionsHost, FunctionsHostBuilder, StartError};
use crate::eventgrid::{EndpointType, SubjectFilter, Subscription, SubscriptionError};
use crate::roles::{Deployment, MatrixError};
use crate::stack::LocalStack;

/// Why a subscribed handler did not start.
#[derive(Debug, thiserror::Error)]
pub enum SubscribedError {
    #[error("{function} did not start: {source}")]
    Start {
        function: String,
        #[source]
        source: StartError,
    },
    #[error("{function}'s identity (its grants in infra/roles.json): {source}")]
    Identity {
        function: String,
        #[source]
        source: MatrixError,
    },
    #[error("the stand-in's webhook URL for {function} is not a URL: {reason}")]
    Url { function: String, reason: String },
    #[error("subscribing {function} in Event Grid: {source}")]
    Subscribe {
        function: String,
        #[source]
        source: SubscriptionError,
    },
}

type Configure = Box<dyn FnOnce(FunctionsHostBuilder) -> FunctionsHostBuilder + Send>;

/// A handler to run and subscribe; [`SubscribedHandler::start`] does both.
///
/// Its app settings are, in order (a later one wins): what Core Tools needs (`FUNCTIONS_WORKER_RUNTIME`,
/// `AzureWebJobsStorage`), the stack's ([`LocalStack::handler_env`]: vaults, identity endpoint, CA), then this
/// handler's own ([`SubscribedHandler::app_settings`]).
pub struct SubscribedHandler {
    function: String,
    executable: PathBuf,
    /// `false` for a timer-triggered handler (the sweep): started, never subscribed.
    subscribe: bool,
    event_types: Vec<String>,
    subject_filter: Option<SubjectFilter>,
    settings: Vec<(String, String)>,
    identity: Option<Deployment>,
    configure: Option<Configure>,
}

impl std::fmt::Debug for SubscribedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscribedHandler")
            .field("function", &self.function)
            .field("executable", &self.executable)
            .field("event_types", &self.event_types)
            .field("subject_filter", &self.subject_filter)
            // Settings can hold channel URLs with tokens: names only.
            .field("settings", &self.settings.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl SubscribedHandler {
    /// `executable` as `function`, subscribed to every event type (narrow it with [`Self::event_types`]).
    pub fn new(function: impl Into<String>, executable: impl Into<PathBuf>) -> Self {
        Self {
            function: function.into(),
            executable: executable.into(),
            subscribe: true,
            event_types: Vec::new(),
            subject_filter: None,
            settings: Vec::new(),
            identity: None,
            configure: None,
        }
    }

    /// `handler` as infra deploys it: its event types, the canary rule on `canary` (test-event takes only the
    /// canary's events, every other handler all but those), and `KEYTURN_CANARY_SECRET`. A timer handler (the
    /// sweep) is started without a subscription: [`FunctionsHost::invoke_timer`] fires it.
    pub fn deployed(handler: &Handler, executable: impl Into<PathBuf>, canary: &str) -> Self {
        let canary_only = vec![canary.to_owned()];
        let started = Self::new(handler.name, executable).app_settings([("KEYTURN_CANARY_SECRET", canary)]);
        match handler.canary() {
            None => started.unsubscribed(),
            Some(rule) => started.event_types(handler.event_types().iter().copied()).subject_filter(match rule {
                Canary::Only => SubjectFilter::In(canary_only),
                Canary::Exclude => SubjectFilter::NotIn(canary_only),
            }),
        }
    }

    /// Starts the handler without subscribing it (a timer-triggered function).
    pub fn unsubscribed(mut self) -> Self {
        self.subscribe = false;
        self
    }

    /// The subscription's `includedEventTypes`.
    pub fn event_types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// The subscription's advanced filter on the subject.
    pub fn subject_filter(mut self, filter: SubjectFilter) -> Self {
        self.subject_filter = Some(filter);
        self
    }

    /// This handler's own app settings, over the stack's: its notification channels, retry settings, and
    /// (when each handler gets its own identity, as deployed) that identity's client id.
    pub fn app_settings<K: Into<String>, V: Into<String>>(
        mut self,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.settings.extend(settings.into_iter().map(|(name, value)| (name.into(), value.into())));
        self
    }

    /// Runs the handler under an identity of its own holding exactly its grants in `infra/roles.json` for
    /// `deployment` ([`LocalStack::handler_identity`]), as each deployed function app has: its
    /// `AZURE_CLIENT_ID` goes into its settings. The function's name is the matrix's handler name.
    pub fn identity(mut self, deployment: Deployment) -> Self {
        self.identity = Some(deployment);
        self
    }

    /// Adjusts the stand-in before it starts (timeouts, grace period).
    pub fn host(
        mut self,
        configure: impl FnOnce(FunctionsHostBuilder) -> FunctionsHostBuilder + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Starts the handler behind a stand-in serving `app` (only this function) and subscribes it in the
    /// stack's Event Grid as an Azure Function endpoint (no handshake, as in Azure). Ready when this returns.
    pub async fn start(self, stack: &LocalStack, app: &FunctionApp) -> Result<FunctionsHost, SubscribedError> {
        let function = self.function;
        let mut settings: Vec<(String, String)> =
            keyturn_app::local_settings::func_start_defaults().into_iter().collect();
        settings.extend(stack.handler_env());
        // Its own identity, as each deployed function app has; without one, the stack's system-assigned
        // identity, which holds only what a test assigned it.
        if let Some(deployment) = &self.identity {
            let identity = stack
                .handler_identity(&function, deployment)
                .map_err(|source| SubscribedError::Identity { function: function.clone(), source })?;
            settings.extend(identity.app_settings());
        }
        settings.extend(self.settings);
        let mut builder = FunctionsHost::builder(app.clone())
            .executable(self.executable)
            .only([function.as_str()])
            .app_settings(settings)
            // Every setting is given: a developer's local.settings.json (kept for `func start` against Azure,
            // real channels in it) must not reach the local stack's handlers.
            .without_local_settings();
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let host =
            builder.start().await.map_err(|source| SubscribedError::Start { function: function.clone(), source })?;

        if !self.subscribe {
            return Ok(host);
        }
        let endpoint = match url::Url::parse(&host.webhook_url(&function)) {
            Ok(endpoint) => endpoint,
            Err(error) => {
                host.shutdown().await;
                return Err(SubscribedError::Url { function, reason: error.to_string() });
            }
        };
        let mut subscription =
            Subscription::new(&function, endpoint, EndpointType::AzureFunction).event_types(self.event_types);
        if let Some(filter) = self.subject_filter {
            subscription = subscription.subject_filter(filter);
        }
        if let Err(source) = stack.grid().subscribe(subscription).await {
            host.shutdown().await;
            return Err(SubscribedError::Subscribe { function, source });
        }
        Ok(host)
    }
}
