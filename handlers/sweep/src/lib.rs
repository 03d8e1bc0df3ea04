//! The `sweep` handler: on a timer (an Azure Functions `timerTrigger`, an EventBridge schedule on Lambda), it
//! lists every allow-listed vault's secrets, keys and certificates and tells people about expiry thresholds
//! before Key Vault's one 30-day event, each threshold once per object version, however many sweeps run,
//! restart or overlap (docs/handlers.md, "sweep").
//!
//! One pass ([`pass::run`]):
//! 0. with `KEYTURN_SWEEP_DEAD_LETTER_*` set, handle the dead letters no sweep has handled yet: report each,
//!    and re-drive (rotate through the engine) those whose object still needs it ([`redrive`]);
//! 1. read which object versions are paged and not yet resolved ([`keyturn_sweep::PagedVersions`]);
//! 2. list each vault's three collections (every page, paced under Key Vault's limits by
//!    [`keyturn_sweep::Pacer`]); for each enabled object with an expiry whose threshold is due (or that was
//!    paged), read its versions to learn the current one;
//! 3. decide what keyturn will do with it from the same pure plan near-expiry and `keyturn check` use
//!    ([`keyturn_rotation::plan()`]); replicas are skipped (their source is swept);
//! 4. for each channel the due threshold's severity routes to ([`routes`]), claim (object, version,
//!    threshold, channel) in the durable store: exactly one sweep gets each claim;
//! 5. send: a digest per channel (at most 100 objects a message) to webhook, Slack, Teams and email; one
//!    page per object version to PagerDuty and Opsgenie. A delivered claim is completed; a failed one is
//!    released, so the next sweep sends it (and nothing a channel accepted is sent to it twice);
//! 6. resolve the pages of objects now on a newer version, and forget them once the pager accepted.
//!
//! With `KEYTURN_SWEEP_REPAIR=on`, step 3 also repairs a lost near-expiry event: an opted-in object more than
//! six hours inside Key Vault's 30-day window, not expired, still on the version that should have rotated, is
//! rotated through the rotation engine (near-expiry's idempotent, locked path), unless its
//! `KeyturnRotationWindow` is closed and opens before its expiry.
//!
//! The outcome is `done` with the counts; when a vault could not be listed or a delivery failed, the
//! invocation fails (retryable) with the same counts, after doing everything else, so monitoring sees it
//! and the next tick picks up what is left.
//!
//! # Layout
//! - this file: [`FUNCTION`], [`SweepDeps`] (built once), [`handle`]; `src/main.rs`: wiring only.
//! - [`routes`]: `KEYTURN_SWEEP_ROUTES`, severity → channels.
//! - [`pass`]: one sweep pass, as above.
//! - [`redrive`]: the dead-letter container: each dead-lettered event reported once, and re-driven where
//!   the object still needs it (step 0 of a pass, so the survey sees what it rotated).
//! - `src/tests.rs`: the pass against the in-memory fakes.

pub mod pass;
pub mod redrive;
pub mod routes;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use keyturn_config::SweepState;
use keyturn_deps::{Deps, DepsError};
use keyturn_host::timer::Tick;
use keyturn_host::{HandlerError, Outcome};
use keyturn_sweep::{
    BlobPagedVersions, BlobStateSetupError, BlobThresholdStore, DeadLetterError, DeadLetterReader, DeadLetters,
    Escalation, MemoryPagedVersions, MemoryThresholdStore, Pacer, PacerLimits, PagedVersions, ThresholdError,
    ThresholdStore, Thresholds,
};

pub use routes::{RouteError, Routes};

/// The function's name: its folder under function-definitions/, its route, its binary.
pub const FUNCTION: &str = "sweep";

/// Why the sweep cannot work: every tick fails with this message until the setting is fixed.
#[derive(Debug, thiserror::Error)]
pub enum SweepDepsError {
    #[error(transparent)]
    Deps(#[from] DepsError),
    #[error(transparent)]
    Thresholds(#[from] ThresholdError),
    #[error("{0}")]
    Escalation(String),
    #[error(transparent)]
    Routes(#[from] RouteError),
    #[error(transparent)]
    State(#[from] BlobStateSetupError),
    #[error("KEYTURN_SWEEP_DEAD_LETTER_*: {0}")]
    DeadLetters(#[from] DeadLetterError),
    #[error("{0}")]
    Http(#[from] keyturn_vault::VaultError),
}

/// What the sweep decides with: the deployment's thresholds, escalation and routing.
#[derive(Debug, Clone)]
pub struct SweepPolicy {
    pub thresholds: Thresholds,
    pub escalation: Escalation,
    pub routes: Routes,
    /// Missed-event repair (`KEYTURN_SWEEP_REPAIR=on`).
    pub repair: bool,
}

/// Everything a sweep needs, built once per process: the handlers' shared [`Deps`] (vaults, notifier,
/// engine), the durable state, the policy and the pacer.
#[derive(Debug)]
pub struct SweepDeps {
    pub core: Arc<Deps>,
    pub store: Arc<dyn ThresholdStore>,
    pub paged: Arc<dyn PagedVersions>,
    pub policy: SweepPolicy,
    /// Shared by every pass of this process, so overlapping passes stay under the limits together.
    pub pacer: Arc<Pacer>,
    /// The dead-letter container (`KEYTURN_SWEEP_DEAD_LETTER_*`); `None`: dead letters are not looked at.
    pub dead_letters: Option<Arc<dyn DeadLetters>>,
}

impl SweepDeps {
    /// Reads the settings from the process environment (docs/configuration.md) and builds everything.
    pub fn from_env() -> Result<Self, SweepDepsError> {
        Self::from_core(Deps::from_env()?)
    }

    /// Builds the state and policy over already built handler deps.
    pub fn from_core(core: Deps) -> Result<Self, SweepDepsError> {
        let settings = core.settings().clone();
        let policy = policy(&core)?;
        let options = keyturn_vault::http::client_options(&settings.retry, settings.ca_file.as_deref())?;
        let (store, paged): (Arc<dyn ThresholdStore>, Arc<dyn PagedVersions>) = match &settings.sweep.state {
            SweepState::InMemory => {
                tracing::warn!(
                    "sweep state in memory (KEYTURN_SWEEP_STATE_ACCOUNT_URL unset): a restart forgets which \
                     thresholds fired, and separate instances each notify"
                );
                (Arc::new(MemoryThresholdStore::default()), Arc::new(MemoryPagedVersions::default()))
            }
            SweepState::Blob { account_url, container } => {
                let store =
                    BlobThresholdStore::new(account_url, container, core.credential().clone(), options.clone())?;
                let paged = BlobPagedVersions::beside(&store);
                (Arc::new(store), Arc::new(paged))
            }
        };
        let dead_letters = match &settings.sweep.dead_letters {
            Some(source) => {
                let reader =
                    DeadLetterReader::new(&source.account_url, &source.container, core.credential().clone(), options)?;
                Some(Arc::new(reader) as Arc<dyn DeadLetters>)
            }
            None => None,
        };
        Ok(Self::from_parts(Arc::new(core), store, paged, policy).with_dead_letters(dead_letters))
    }

    /// The same deps reading dead letters from `source` (unit tests pass a `MemoryDeadLetters`).
    pub fn with_dead_letters(mut self, source: Option<Arc<dyn DeadLetters>>) -> Self {
        self.dead_letters = source;
        self
    }

    /// Sweep deps over any parts (unit tests use the in-memory fakes and stores).
    pub fn from_parts(
        core: Arc<Deps>,
        store: Arc<dyn ThresholdStore>,
        paged: Arc<dyn PagedVersions>,
        policy: SweepPolicy,
    ) -> Self {
        Self { core, store, paged, policy, pacer: Arc::new(Pacer::new(PacerLimits::key_vault())), dead_letters: None }
    }
}

/// The deployment's policy from its settings, checked against its channel list.
pub fn policy(core: &Deps) -> Result<SweepPolicy, SweepDepsError> {
    let sweep = &core.settings().sweep;
    let thresholds = Thresholds::for_deployment(sweep)?;
    let escalation =
        Escalation::new(sweep.warning_within_days, sweep.critical_within_days).map_err(SweepDepsError::Escalation)?;
    let routes = Routes::parse(sweep.routes.as_deref(), &core.notifier().channels())?;
    for severity in
        [keyturn_notify::Severity::Info, keyturn_notify::Severity::Warning, keyturn_notify::Severity::Critical]
    {
        if routes.channels(severity).is_empty() {
            tracing::warn!(%severity, "no channel is routed this severity: its thresholds are claimed by nobody and not sent");
        }
    }
    Ok(SweepPolicy { thresholds, escalation, routes, repair: sweep.repair })
}

/// One tick: one sweep pass (see the crate documentation).
pub async fn handle(tick: Tick, deps: Arc<SweepDeps>) -> Result<Outcome, HandlerError> {
    if tick.past_due {
        tracing::info!(source = tick.source.as_str(), scheduled = ?tick.scheduled, "this tick is past due; sweeping now");
    }
    let report = pass::run(&deps, chrono::Utc::now()).await;
    let line = report.summary();
    if report.failures.is_empty() {
        Ok(Outcome::done(line).action("swept"))
    } else {
        Err(HandlerError::retryable(format!("{line}; {}", report.failures.join("; "))))
    }
}
