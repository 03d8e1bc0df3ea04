//! One sweep pass (the steps are in the crate documentation): handle the dead letters, survey the vaults,
//! claim what is due per channel, deliver (with what the sweep repaired and the dead letters it did not
//! re-drive), complete or release each claim, resolve the pages of rotated objects.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use keyturn_events::{KeyVaultEventType, Lifecycle, ObjectKind, ObjectRef};
use keyturn_notify::{Action, ChannelId, Notice, Notification, Severity};
use keyturn_rotation::plan::{NEAR_EXPIRY_LEAD_DAYS, Native, ObjectFacts, Plan, plan};
use keyturn_rotation::{Request, RotationOutcome};
use keyturn_sweep::paged::Paged;
use keyturn_sweep::{
    Claim, ClaimToken, MAX_OBJECTS_PER_MESSAGE, ObjectVersion, Section, THRESHOLDS_TAG, ThresholdKey, Thresholds,
    digest,
};
use keyturn_vault::inventory::{Collection, Listed, current};

use crate::SweepDeps;
use crate::redrive::{self, Finding, Redrive};
use crate::routes::{is_pager, state_name};

/// How many objects per vault are looked at concurrently (each costs a paced versions read and a few state
/// writes); the pacer, not this, keeps Key Vault under its limits.
const OBJECTS_AT_ONCE: usize = 32;

/// Objects per list page: Key Vault's default `maxresults`, which the SDK's listings use.
const LIST_PAGE_SIZE: usize = 25;

/// What one pass did, for the outcome line.
#[derive(Debug, Default)]
pub struct PassReport {
    pub vaults: usize,
    /// Objects listed (every collection of every vault).
    pub objects: usize,
    /// Claims this pass won and delivered, per kind of delivery.
    pub notices: usize,
    pub pages: usize,
    pub messages: usize,
    pub resolved: usize,
    /// Claims released for a later sweep (their channel failed).
    pub released: usize,
    /// Missed near-expiry rotations the sweep made (repair on), and those held to their rotation window.
    pub repaired: usize,
    pub deferred: usize,
    /// What the sweep rotated for a lost near-expiry event, by object version before the rotation (also
    /// counted in `repaired`), with the engine's words in each notice's `plan`.
    pub repairs: Vec<Notice>,
    /// The dead letters this pass handled: re-driven, not re-driven (and why), unusable.
    pub dead_letters: Vec<Finding>,
    /// What went wrong: a vault that could not be listed, a channel that refused.
    pub failures: Vec<String>,
}

impl PassReport {
    /// One line for the outcome and the logs: the counts, then each repaired object and each dead letter.
    pub fn summary(&self) -> String {
        let mut line = self.counts();
        if !self.repairs.is_empty() {
            let repaired: Vec<String> =
                self.repairs.iter().map(|n| format!("{} ({})", n.object.described(), n.plan)).collect();
            line.push_str(&format!("; repaired: {}", repaired.join(", ")));
        }
        if !self.dead_letters.is_empty() {
            let redriven = self.dead_letters.iter().filter(|f| f.result.acted()).count();
            let unusable = self.dead_letters.iter().filter(|f| matches!(f.result, Redrive::Unusable(_))).count();
            let letters: Vec<String> = self.dead_letters.iter().map(Finding::line).collect();
            line.push_str(&format!(
                "; {} dead letters ({redriven} re-driven, {unusable} unusable): {}",
                self.dead_letters.len(),
                letters.join("; ")
            ));
        }
        line
    }

    fn counts(&self) -> String {
        format!(
            "swept {} objects in {} vaults: {} notices in {} digest messages, {} pages, {} pages resolved; {} \
             deliveries left for the next sweep; {} missed rotations repaired, {} held to their rotation window",
            self.objects,
            self.vaults,
            self.notices,
            self.messages,
            self.pages,
            self.resolved,
            self.released,
            self.repaired,
            self.deferred
        )
    }
}

/// A notice for one channel: a threshold this pass claimed (with its claim), or what the sweep repaired or
/// found dead-lettered (no claim: only the sweep that did it, or won the dead letter's claim, has it).
#[derive(Debug)]
struct Claimed {
    channel: ChannelId,
    notice: Notice,
    token: Option<ClaimToken>,
}

/// A page to resolve: `paged` on its channel, the object now at `current`.
#[derive(Debug)]
struct Resolve {
    paged: Paged,
    current: String,
}

/// What surveying one object found to deliver.
#[derive(Debug, Default)]
struct Found {
    claimed: Vec<Claimed>,
    resolves: Vec<Resolve>,
    failures: Vec<String>,
    repairs: Vec<Notice>,
    deferred: usize,
}

impl Found {
    fn absorb(&mut self, other: Found) {
        self.claimed.extend(other.claimed);
        self.resolves.extend(other.resolves);
        self.failures.extend(other.failures);
        self.repairs.extend(other.repairs);
        self.deferred += other.deferred;
    }
}

/// Runs one pass at `now`.
pub async fn run(deps: &SweepDeps, now: DateTime<Utc>) -> PassReport {
    let sweep_id = format!("sweep-{}", now.format("%Y%m%dT%H%M%S%.3fZ"));
    let mut report = PassReport::default();
    let paged = match deps.paged.list().await {
        Ok(paged) => paged,
        Err(error) => {
            // Without it no page can be resolved this pass; thresholds still go out.
            report.failures.push(format!("reading the paged versions: {error}"));
            Vec::new()
        }
    };
    let mut paged_by_object: HashMap<(String, ObjectKind, String), Vec<Paged>> = HashMap::new();
    for record in paged {
        let o = &record.object;
        paged_by_object.entry((o.vault().to_owned(), o.kind(), o.name().to_owned())).or_default().push(record);
    }

    // Dead letters first: what they re-drive is on its new version by the time the survey looks.
    if let Some(source) = &deps.dead_letters {
        let handled = redrive::run(deps, source.as_ref(), &sweep_id, now).await;
        report.failures.extend(handled.failures);
        report.dead_letters = handled.findings;
    }

    let vaults: Vec<String> =
        deps.core.settings().vaults.entries().iter().map(|v| v.name().to_ascii_lowercase()).collect();
    report.vaults = vaults.len();
    let (listed, mut found) = list_vaults(deps, &vaults).await;
    report.objects = listed.iter().map(Vec::len).sum();
    // Round-robin across the vaults, so that they advance together under the subscription's limit and no vault
    // is left alone at the end, where its own (lower) limit would set the pace.
    let (paged_by_object, sweep_id_ref) = (&paged_by_object, sweep_id.as_str());
    let objects = futures::stream::iter(interleave(listed))
        .map(|(vault, collection, item)| async move {
            survey_object(deps, &vault, kind_of(collection), collection, item, paged_by_object, sweep_id_ref, now).await
        })
        .buffer_unordered(OBJECTS_AT_ONCE * vaults.len().max(1));
    for result in objects.collect::<Vec<Found>>().await {
        found.absorb(result);
    }
    report.failures.extend(found.failures);
    report.repairs = found.repairs;
    report.repairs.extend(report.dead_letters.iter().filter(|f| f.result.acted()).filter_map(Finding::notice));
    report.repaired = report.repairs.len();
    report.deferred =
        found.deferred + report.dead_letters.iter().filter(|f| matches!(f.result, Redrive::Deferred { .. })).count();
    // What the sweep did and what it could not: to the channels the notice's severity routes to, no pagers.
    let mut claimed = found.claimed;
    let reported = report
        .repairs
        .iter()
        .cloned()
        .chain(report.dead_letters.iter().filter(|f| !f.result.acted()).filter_map(Finding::notice));
    for notice in reported {
        for channel in deps.policy.routes.channels(notice.severity).iter().filter(|c| !is_pager(c)) {
            claimed.push(Claimed { channel: channel.clone(), notice: notice.clone(), token: None });
        }
    }
    deliver(deps, claimed, &sweep_id, now, &mut report).await;
    resolve(deps, found.resolves, now, &mut report).await;
    tracing::info!(
        sweep = %sweep_id, vaults = report.vaults, objects = report.objects, notices = report.notices,
        messages = report.messages, pages = report.pages, resolved = report.resolved, released = report.released,
        failures = report.failures.len(), "sweep pass finished"
    );
    report
}

/// Lists every collection of every vault, the vaults side by side; returns each vault's listed objects (with
/// their collection) and the listings that failed.
async fn list_vaults(deps: &SweepDeps, vaults: &[String]) -> (Vec<Vec<(String, Collection, Listed)>>, Found) {
    let listings = vaults.iter().map(|vault| async move {
        let mut found = Found::default();
        let mut listed = Vec::new();
        for collection in Collection::ALL {
            deps.pacer.acquire(vault).await;
            match deps.core.inventory().list(vault, collection).await {
                Ok(items) => {
                    // The listing took one turn but sent a request per page: the later pages are paid for now,
                    // so the requests that follow keep the vault's (and the subscription's) rate where the
                    // limits want it.
                    for _ in 1..items.len().div_ceil(LIST_PAGE_SIZE) {
                        deps.pacer.acquire(vault).await;
                    }
                    listed.extend(items.into_iter().map(|item| (vault.clone(), collection, item)));
                }
                Err(error) => found.failures.push(format!("listing {vault}/{}: {error}", collection.as_str())),
            }
        }
        (listed, found)
    });
    let mut found = Found::default();
    let mut listed = Vec::new();
    for (vault_listed, vault_found) in futures::future::join_all(listings).await {
        listed.push(vault_listed);
        found.absorb(vault_found);
    }
    (listed, found)
}

/// The first item of each list, then the second of each, and so on.
fn interleave<T>(lists: Vec<Vec<T>>) -> impl Iterator<Item = T> {
    let mut lists: std::collections::VecDeque<std::vec::IntoIter<T>> = lists.into_iter().map(Vec::into_iter).collect();
    std::iter::from_fn(move || {
        // Take from the list in front and move it to the back; an empty list is dropped.
        while let Some(mut list) = lists.pop_front() {
            if let Some(item) = list.next() {
                lists.push_back(list);
                return Some(item);
            }
        }
        None
    })
}

fn kind_of(collection: Collection) -> ObjectKind {
    match collection {
        Collection::Secrets => ObjectKind::Secret,
        Collection::Keys => ObjectKind::Key,
        Collection::Certificates => ObjectKind::Certificate,
    }
}

/// One object: its due threshold claimed per routed channel, and its stale pages found.
#[allow(clippy::too_many_arguments)] // one call site; a struct for it would only rename the parameters
async fn survey_object(
    deps: &SweepDeps,
    vault: &str,
    kind: ObjectKind,
    collection: Collection,
    item: Listed,
    paged: &HashMap<(String, ObjectKind, String), Vec<Paged>>,
    sweep_id: &str,
    now: DateTime<Utc>,
) -> Found {
    let mut found = Found::default();
    // A certificate's backing key and secret raise no events and are renewed with it; a disabled version is
    // not in use.
    if item.managed || !item.enabled {
        return found;
    }
    let policy = &deps.policy;
    let (thresholds, tag_problem) =
        match Thresholds::for_object(item.tags.get(THRESHOLDS_TAG).map(String::as_str), &policy.thresholds) {
            Ok(thresholds) => (thresholds, None),
            Err(error) => (policy.thresholds.clone(), Some(error.to_string())),
        };
    let due = item.expires.and_then(|expires| thresholds.due(expires, now, &policy.escalation).map(|d| (expires, d)));
    let stale_pages = paged.get(&(vault.to_owned(), kind, item.name.to_ascii_lowercase()));
    let repair_candidate = policy.repair
        && item.tags.contains_key(keyturn_rotation::policy::ROTATION)
        && item.expires.is_some_and(|expires| in_repair_window(expires, now));
    if due.is_none() && stale_pages.is_none() && !repair_candidate {
        return found;
    }

    // The listing has no version: the current one is the one created last.
    deps.pacer.acquire(vault).await;
    let versions = match deps.core.inventory().versions(vault, collection, &item.name).await {
        Ok(versions) => versions,
        Err(error) => {
            found.failures.push(format!("reading the versions of {kind} {vault}/{}: {error}", item.name));
            return found;
        }
    };
    let Some(version) = current(&versions).and_then(|v| v.version.clone()) else { return found };

    for page in stale_pages.into_iter().flatten() {
        if !page.object.version().eq_ignore_ascii_case(&version) {
            found.resolves.push(Resolve { paged: page.clone(), current: version.clone() });
        }
    }
    let providers = deps.core.engine().providers().names();
    let facts = ObjectFacts { kind, event_version: None, latest_version: &version, tags: &item.tags };
    let decided = plan(&facts, &Native::Unread, &providers);
    if let Ok(Plan::Replica { .. }) = decided {
        return found;
    }
    let Some(object) = ObjectRef::new(vault, kind, &item.name, &version) else { return found };
    if repair_candidate && rotates(&decided) {
        match repair(deps, &object, sweep_id).await {
            // A new version: the old one's notices no longer apply; the next sweep starts from the new one.
            Ok(Repair::Rotated(outcome)) => {
                found.repairs.push(Notice {
                    object,
                    expires: item.expires.unwrap_or(now),
                    threshold: 0,
                    severity: keyturn_notify::Severity::Info,
                    plan: format!("its near-expiry event never came; the sweep {outcome}"),
                    section: Section::Repaired,
                });
                return found;
            }
            Ok(Repair::Deferred) => found.deferred += 1,
            Ok(Repair::NothingDone) => {}
            Err(failure) => found.failures.push(failure),
        }
    }
    let Some((expires, due)) = due else { return found };
    let mut what = plan_phrase(&decided);
    if let Some(problem) = tag_problem {
        what = format!("{what} (tag problem, the default thresholds apply: {problem})");
    }
    let notice = Notice {
        object,
        expires,
        threshold: due.threshold,
        severity: due.severity,
        plan: what,
        section: Section::Threshold,
    };
    let state_object = ObjectVersion::new(vault, kind, &item.name, &version);
    for channel in policy.routes.channels(due.severity) {
        let key = ThresholdKey::new(state_object.clone(), due.threshold).on_channel(&state_name(channel));
        match deps.store.claim(&key, sweep_id, now).await {
            Ok(Claim::Claimed(token)) => {
                found.claimed.push(Claimed { channel: channel.clone(), notice: notice.clone(), token: Some(token) })
            }
            Ok(Claim::AlreadyFired { .. } | Claim::InProgress { .. }) => {}
            Err(error) => found.failures.push(error.to_string()),
        }
    }
    found
}

/// How long after Key Vault's near-expiry point (30 days before expiry) the sweep waits before it takes a
/// rotation that did not happen for a lost event: the event path goes first, and a delivery still in Event
/// Grid's first retries is not raced.
const REPAIR_GRACE: chrono::Duration = chrono::Duration::hours(6);

/// Inside Key Vault's near-expiry window (after the grace) and not yet expired: an expired object is the
/// `expired` handler's, with its own opt-in action.
fn in_repair_window(expires: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now >= keyturn_rotation::plan::near_expiry_at(expires) + REPAIR_GRACE && now < expires
}

/// Plans near-expiry carries out by making a new version.
fn rotates(decided: &Result<Plan, keyturn_rotation::policy::PolicyError>) -> bool {
    matches!(
        decided,
        Ok(Plan::RotateSecret { .. } | Plan::RotateKey | Plan::RenewCertificate { .. } | Plan::ReadNativePolicy)
    )
}

/// What a repair did.
#[derive(Debug)]
enum Repair {
    /// With the engine's words (`rotated from a to b, expires ...`).
    Rotated(String),
    /// Outside the object's rotation window, which opens before its expiry.
    Deferred,
    /// The engine decided otherwise (native policy, manual action, already rotated).
    NothingDone,
}

/// Rotates `object` (its current version) through the rotation engine, the same idempotent, locked path
/// near-expiry takes (its rotation window included): a rotation that near-expiry makes meanwhile is seen under
/// the lock and not repeated.
async fn repair(deps: &SweepDeps, object: &ObjectRef, sweep_id: &str) -> Result<Repair, String> {
    let request = Request { object: object.clone(), event_id: format!("{sweep_id}-repair") };
    match deps.core.engine().rotate(&request).await {
        Ok(outcome @ (RotationOutcome::Rotated { .. } | RotationOutcome::RenewalStarted { .. })) => {
            tracing::info!(object = %object.described(), outcome = outcome.label(), "missed near-expiry rotation repaired");
            Ok(Repair::Rotated(outcome.to_string()))
        }
        // The engine applies the object's rotation window, as for near-expiry.
        Ok(RotationOutcome::Deferred { until, .. }) => {
            tracing::info!(object = %object.described(), %until, "missed rotation held to its rotation window");
            Ok(Repair::Deferred)
        }
        Ok(outcome) => {
            tracing::info!(object = %object.described(), outcome = outcome.label(), "missed rotation: nothing to do");
            Ok(Repair::NothingDone)
        }
        Err(error) => Err(format!("repairing the missed rotation of {}: {error}", object.described())),
    }
}

/// What keyturn will do with the object, in a few words, from the same plan near-expiry carries out.
fn plan_phrase(decided: &Result<Plan, keyturn_rotation::policy::PolicyError>) -> String {
    let lead = NEAR_EXPIRY_LEAD_DAYS;
    match decided {
        Ok(Plan::NotOptedIn) => "manual rotation due: not opted in (no KeyturnRotation tag)".to_owned(),
        Ok(Plan::RotateSecret { provider, .. }) => {
            format!("keyturn rotates it {lead} days before expiry (provider {provider})")
        }
        Ok(Plan::RotateKey) => format!("keyturn rotates it {lead} days before expiry"),
        Ok(Plan::RenewCertificate { issuer }) => format!("keyturn renews it {lead} days before expiry ({issuer})"),
        Ok(Plan::ReadNativePolicy) => {
            format!("keyturn rotates it {lead} days before expiry unless Key Vault's own policy does")
        }
        Ok(Plan::NativeRotation { detail }) => format!("Key Vault's own policy renews it: {detail}"),
        Ok(Plan::ManualActionDue { reason }) => format!("manual action due: {reason}"),
        Ok(Plan::Replica { source }) => format!("a replica of {source}"),
        Ok(Plan::AlreadyRotated { latest, .. }) => format!("already rotated to {latest}"),
        Err(error) => format!("policy problem: {error}"),
    }
}

/// A notice to send, with its claim when it has one.
type ToSend = (Notice, Option<ClaimToken>);

/// Sends what was claimed, per channel, and completes or releases each claim.
async fn deliver(deps: &SweepDeps, claimed: Vec<Claimed>, sweep_id: &str, now: DateTime<Utc>, report: &mut PassReport) {
    let mut by_channel: Vec<(ChannelId, Vec<ToSend>)> = Vec::new();
    for Claimed { channel, notice, token } in claimed {
        match by_channel.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, list)) => list.push((notice, token)),
            None => by_channel.push((channel, vec![(notice, token)])),
        }
    }
    by_channel.sort_by_key(|(c, _)| c.index());
    let notifier = deps.core.notifier();
    for (channel, items) in by_channel {
        if is_pager(&channel) {
            for (notice, token) in items {
                let result = notifier.send_to(&channel, &page(&notice, now)).await;
                if let Err(failure) = &result {
                    report.failures.push(failure.to_string());
                } else {
                    let paged = Paged {
                        channel: state_name(&channel),
                        object: ObjectVersion::new(
                            notice.object.vault(),
                            notice.object.kind(),
                            notice.object.name(),
                            notice.object.version(),
                        ),
                    };
                    if let Err(error) = deps.paged.record(&paged).await {
                        // The page went out; only its automatic resolve is at risk. Say so, and carry on.
                        report.failures.push(format!("{error} (a rotation will not resolve this page by itself)"));
                    }
                }
                settle(deps, token.as_ref(), result.is_ok(), now, report).await;
                report.pages += usize::from(result.is_ok());
            }
            continue;
        }
        let mut tokens: HashMap<(ObjectRef, u32, Section), Option<ClaimToken>> = HashMap::new();
        let mut notices = Vec::with_capacity(items.len());
        for (notice, token) in items {
            tokens.insert((notice.object.clone(), notice.threshold, notice.section), token);
            notices.push(notice);
        }
        let id = format!("{sweep_id}-{}", state_name(&channel));
        for message in digest(notices, MAX_OBJECTS_PER_MESSAGE, &id) {
            let result = notifier.send_digest_to(&channel, &message).await;
            if let Err(failure) = &result {
                report.failures.push(failure.to_string());
            }
            report.messages += usize::from(result.is_ok());
            for notice in message.groups.iter().flat_map(|g| &g.notices) {
                if let Some(token) = tokens.remove(&(notice.object.clone(), notice.threshold, notice.section)) {
                    settle(deps, token.as_ref(), result.is_ok(), now, report).await;
                    report.notices += usize::from(result.is_ok() && notice.section == Section::Threshold);
                }
            }
        }
        // The digest folds a notice listed twice into one: its other claims were delivered with it.
        for token in tokens.into_values() {
            settle(deps, token.as_ref(), true, now, report).await;
        }
    }
}

/// Completes a delivered claim, or releases an undelivered one for the next sweep. A notice without a
/// claim (a repair, a dead letter) is not sent again: it stays in the outcome and the logs.
async fn settle(
    deps: &SweepDeps,
    token: Option<&ClaimToken>,
    delivered: bool,
    now: DateTime<Utc>,
    report: &mut PassReport,
) {
    let Some(token) = token else { return };
    let result = if delivered { deps.store.complete(token, now).await } else { deps.store.release(token).await };
    if !delivered {
        report.released += 1;
    }
    if let Err(error) = result {
        report.failures.push(error.to_string());
    }
}

/// Resolves the pages of objects the pass found on a newer version; a record is forgotten once its pager
/// accepted the resolve.
async fn resolve(deps: &SweepDeps, resolves: Vec<Resolve>, now: DateTime<Utc>, report: &mut PassReport) {
    let channels = deps.core.notifier().channels();
    for Resolve { paged, current } in resolves {
        let Some(channel) = channels.iter().find(|c| state_name(c) == paged.channel) else {
            // The channel list changed: the page's channel is gone, and so is any way to resolve it.
            tracing::warn!(channel = %paged.channel, object = %paged.object, "paged on a channel no longer configured; forgetting it");
            let _ = deps.paged.forget(&paged).await;
            continue;
        };
        match deps.core.notifier().send_to(channel, &resolution(&paged.object, &current, now)).await {
            Ok(()) => {
                report.resolved += 1;
                if let Err(error) = deps.paged.forget(&paged).await {
                    report.failures.push(error.to_string());
                }
            }
            Err(failure) => report.failures.push(failure.to_string()),
        }
    }
}

/// The page for a notice: a near-expiry (or, at threshold 0, expired) notification about the object version
/// at the notice's severity, which the pager keys by object version.
fn page(notice: &Notice, now: DateTime<Utc>) -> Notification {
    let lifecycle = if notice.threshold == 0 { Lifecycle::Expired } else { Lifecycle::NearExpiry };
    let object = &notice.object;
    let event_type = event_type(object.kind(), lifecycle);
    let days = match notice.threshold {
        0 => "expiry".to_owned(),
        1 => "1 day before expiry".to_owned(),
        days => format!("{days} days before expiry"),
    };
    Notification {
        event_id: format!("sweep-page:{}/{}d", object_path(object), notice.threshold),
        event_type,
        severity: notice.severity,
        vault: object.vault().to_owned(),
        kind: object.kind(),
        name: object.name().to_owned(),
        version: Some(object.version().to_owned()),
        expires: Some(notice.expires),
        action: Action::NotRotated { reason: format!("the sweep's threshold {days} is reached; {}", notice.plan) },
        portal_link: None,
        occurred_at: Some(now),
    }
}

/// The resolve of a page: the object has a newer version than the paged one.
fn resolution(paged: &ObjectVersion, current: &str, now: DateTime<Utc>) -> Notification {
    Notification {
        event_id: format!("sweep-resolve:{}", paged.path()),
        event_type: event_type(paged.kind(), Lifecycle::NewVersionCreated),
        severity: Severity::Info,
        vault: paged.vault().to_owned(),
        kind: paged.kind(),
        name: paged.name().to_owned(),
        version: Some(paged.version().to_owned()),
        expires: None,
        action: Action::Rotated { new_version: current.to_owned() },
        portal_link: None,
        occurred_at: Some(now),
    }
}

fn event_type(kind: ObjectKind, lifecycle: Lifecycle) -> KeyVaultEventType {
    // Secrets, keys and certificates have every lifecycle event; only a vault (never swept) has none.
    KeyVaultEventType::for_object(kind, lifecycle).unwrap_or(KeyVaultEventType::SecretNearExpiry)
}

/// `<vault>/<kind>/<name>/<version>`, as the state names it.
fn object_path(object: &ObjectRef) -> String {
    ObjectVersion::new(object.vault(), object.kind(), object.name(), object.version()).path()
}

#[cfg(test)]
mod interleave_tests {
    use super::interleave;

    #[test]
    fn the_vaults_take_turns_until_each_runs_out() {
        let lists = vec![vec!["a1", "a2", "a3"], vec![], vec!["b1"], vec!["c1", "c2"]];
        assert_eq!(interleave(lists).collect::<Vec<_>>(), ["a1", "b1", "c1", "a2", "c2", "a3"]);
        assert_eq!(interleave(Vec::<Vec<u8>>::new()).count(), 0);
    }
}
