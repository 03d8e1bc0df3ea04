//! The sweep pass against the in-memory fakes: the vault, the notifier (which records per channel) and the
//! memory state stores. The blob state and the real channels are exercised end to end in
//! tests/e2e/tests/sweep.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use keyturn_config::SecretString;
use keyturn_deps::testing::World;
use keyturn_notify::testing::Sent;
use keyturn_notify::{Action, Severity};
use keyturn_sweep::{MemoryPagedVersions, MemoryThresholdStore};
use keyturn_vault::inventory::Collection;
use keyturn_vault::testing::FakeVersion;

use crate::pass::run;
use crate::{SweepDeps, policy};

const CHANNELS: &str = "slack://hooks.slack.com/services/T0/B0/X0 \
    pagerduty://0123456789abcdef0123456789abcdef@events.pagerduty.com";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

fn world(routes: &str) -> (World, Arc<SweepDeps>) {
    world_with(&[("KEYTURN_SWEEP_ROUTES", routes)])
}

fn world_with(settings: &[(&str, &str)]) -> (World, Arc<SweepDeps>) {
    let world = World::new(settings, CHANNELS).unwrap();
    let policy = policy(&world.deps).unwrap();
    let deps = SweepDeps::from_parts(
        world.deps.clone(),
        Arc::new(MemoryThresholdStore::default()),
        Arc::new(MemoryPagedVersions::default()),
        policy,
    );
    (world, Arc::new(deps))
}

fn secret(world: &World, name: &str, version: &str, expires: DateTime<Utc>, tags: &[(&str, &str)]) {
    world.vault.push(
        "kv-one",
        Collection::Secrets,
        name,
        FakeVersion {
            version: version.to_owned(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            content_type: None,
            enabled: true,
            value: SecretString::new(format!("value-of-{version}")),
            not_before: None,
            expires: Some(expires),
        },
    );
}

/// (channel index, what it got) of every single-channel delivery since `from`.
fn deliveries(world: &World, from: usize) -> Vec<(usize, Sent)> {
    world.notifier.sent_to().into_iter().skip(from).collect()
}

#[tokio::test]
async fn each_threshold_goes_once_per_version_and_channel_over_repeated_passes() {
    let (world, deps) = world("info=slack;warning=slack;critical=slack,pagerduty");
    secret(&world, "db-password", "v1", t0() + Duration::days(20), &[]);
    secret(&world, "api-key", "a1", t0() + Duration::days(100), &[]);
    secret(&world, "signing", "s1", t0() + Duration::days(5), &[("KeyturnThresholds", "10,2")]);

    let report = run(&deps, t0()).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!((report.objects, report.notices, report.messages, report.pages), (3, 2, 1, 0));
    let sent = deliveries(&world, 0);
    let [(1, Sent::Digest(digest))] = &sent[..] else { panic!("{sent:#?}") };
    let lines: Vec<(String, u32, Severity)> = digest
        .groups
        .iter()
        .flat_map(|g| g.notices.iter().map(|n| (n.object.name().to_owned(), n.threshold, n.severity)))
        .collect();
    // signing's own list (10,2): 10 days is a warning; db-password is 20 days out: the 30-day threshold.
    assert_eq!(lines, [("signing".into(), 10, Severity::Warning), ("db-password".into(), 30, Severity::Warning)]);
    assert!(digest.groups[0].notices[0].plan.starts_with("manual rotation due: not opted in"));

    // An hour later: nothing new (a restart is the blob store's case, tested end to end).
    let again = run(&deps, t0() + Duration::hours(1)).await;
    assert_eq!((again.notices, again.pages), (0, 0), "{again:?}");
    assert_eq!(deliveries(&world, 1), []);

    // Four days later signing crosses 2 days (critical): the digest line and the page, once each.
    let later = run(&deps, t0() + Duration::days(4)).await;
    assert_eq!((later.notices, later.pages), (1, 1), "{later:?}");
    let [(1, Sent::Digest(d)), (2, Sent::Notification(page))] = &deliveries(&world, 1)[..] else { panic!() };
    assert_eq!((d.groups[0].threshold, d.severity(), page.severity), (2, Severity::Critical, Severity::Critical));
    assert_eq!((page.name.as_str(), page.version.as_deref()), ("signing", Some("s1")));
    assert!(matches!(&page.action, Action::NotRotated { reason } if reason.contains("2 days before expiry")));
    assert_eq!(run(&deps, t0() + Duration::days(4) + Duration::hours(1)).await.pages, 0);
}

#[tokio::test]
async fn a_channel_that_refuses_gets_the_notice_on_a_later_pass_and_nothing_twice() {
    let (world, deps) = world("warning=slack,pagerduty");
    secret(&world, "db-password", "v1", t0() + Duration::days(20), &[]);
    world.notifier.refuse(true);
    let down = run(&deps, t0()).await;
    assert_eq!((down.notices, down.pages, down.released), (0, 0, 2), "{down:?}");
    assert_eq!(down.failures.len(), 2, "{:?}", down.failures);

    world.notifier.refuse(false);
    let up = run(&deps, t0() + Duration::hours(1)).await;
    assert_eq!((up.notices, up.pages, up.released), (1, 1, 0), "{up:?}");
    let after = run(&deps, t0() + Duration::hours(2)).await;
    assert_eq!((after.notices, after.pages), (0, 0));
    assert_eq!(world.notifier.sent_to().len(), 2);
}

#[tokio::test]
async fn a_rotation_resolves_the_page_of_the_version_it_replaced_once() {
    let (world, deps) = world("critical=pagerduty");
    secret(&world, "db-password", "v1", t0() + Duration::days(3), &[]);
    let paged = run(&deps, t0()).await;
    assert_eq!(paged.pages, 1);

    // Rotated: v2 expires in 90 days; the sweep resolves v1's page, and only once.
    secret(&world, "db-password", "v2", t0() + Duration::days(90), &[]);
    let report = run(&deps, t0() + Duration::hours(1)).await;
    assert_eq!((report.resolved, report.pages), (1, 0), "{report:?}");
    let sent = deliveries(&world, 1);
    let [(2, Sent::Notification(resolve))] = &sent[..] else { panic!("{sent:#?}") };
    assert_eq!(resolve.version.as_deref(), Some("v1"));
    assert_eq!(resolve.action, Action::Rotated { new_version: "v2".into() });
    assert_eq!(run(&deps, t0() + Duration::hours(2)).await.resolved, 0);
}

#[tokio::test]
async fn two_hundred_and_fifty_due_objects_make_three_digest_messages() {
    let (world, deps) = world("warning=slack");
    for i in 0..250 {
        secret(&world, &format!("app-{i:03}"), "v1", t0() + Duration::days(10), &[]);
    }
    let report = run(&deps, t0()).await;
    assert_eq!((report.notices, report.messages), (250, 3), "{report:?}");
    let sizes: Vec<usize> = world
        .notifier
        .sent_to()
        .iter()
        .map(|(_, sent)| match sent {
            Sent::Digest(d) => d.objects(),
            Sent::Notification(_) => 0,
        })
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
}

#[tokio::test]
async fn replicas_and_disabled_or_unexpiring_objects_are_not_notified() {
    let (world, deps) = world("warning=slack");
    secret(&world, "copy", "c1", t0() + Duration::days(10), &[("KeyturnReplicaOf", "kv-one/db-password")]);
    world.vault.add("kv-one", Collection::Secrets, "forever", "f1", &[]);
    let report = run(&deps, t0()).await;
    assert_eq!((report.objects, report.notices), (2, 0), "{report:?}");
    assert!(world.notifier.sent_to().is_empty());
}

const OPTED_IN: &[(&str, &str)] = &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")];

/// A lost near-expiry event: with repair on, the sweep rotates an opted-in object inside the 30-day window
/// once (the new version is then far from its thresholds), holds one whose window is closed, and leaves
/// alone what is not opted in, not yet in the window, or has expired.
#[tokio::test]
async fn with_repair_on_a_missed_rotation_is_made_once_through_the_engine() {
    let (world, deps) = world_with(&[("KEYTURN_SWEEP_ROUTES", "warning=slack"), ("KEYTURN_SWEEP_REPAIR", "on")]);
    let now = Utc::now();
    secret(&world, "db-password", "v1", now + Duration::days(20), OPTED_IN);
    secret(&world, "manual", "m1", now + Duration::days(20), &[]);
    secret(&world, "early", "e1", now + Duration::days(40), OPTED_IN);
    secret(&world, "gone", "g1", now - Duration::days(1), OPTED_IN);
    // A window two hours from now, every day: closed now, open long before the expiry.
    let start = (now + Duration::hours(2)).format("%H:00").to_string();
    let end = (now + Duration::hours(3)).format("%H:00").to_string();
    let window = format!("{start}-{end} UTC");
    let mut held: Vec<(&str, &str)> = OPTED_IN.to_vec();
    held.push(("KeyturnRotationWindow", &window));
    secret(&world, "held", "h1", now + Duration::days(20), &held);

    let report = run(&deps, now).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!((report.repaired, report.deferred), (1, 1), "{report:?}");
    let versions = world.vault.versions_of("kv-one", Collection::Secrets, "db-password");
    assert_eq!(versions.len(), 2, "one rotation");
    assert!(versions[1].expires.unwrap() > now + Duration::days(59), "the new version's validity");
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "manual"), 1);
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "early"), 1);
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "gone"), 1, "expired: the expired handler's");
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "held"), 1);
    let names: Vec<String> = world
        .notifier
        .sent_to()
        .iter()
        .flat_map(|(_, sent)| match sent {
            Sent::Digest(d) => {
                d.groups.iter().flat_map(|g| g.notices.iter().map(|n| n.object.name().to_owned())).collect()
            }
            Sent::Notification(_) => Vec::new(),
        })
        .collect();
    assert!(!names.contains(&"db-password".to_owned()), "the rotated version is not warned about: {names:?}");

    let again = run(&deps, now + Duration::hours(1)).await;
    assert_eq!(again.repaired, 0, "{again:?}");
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "db-password"), 2);

    // Repair off (the default): nothing is rotated.
    let (off, off_deps) = world_with(&[("KEYTURN_SWEEP_ROUTES", "warning=slack")]);
    secret(&off, "db-password", "v1", now + Duration::days(20), OPTED_IN);
    assert_eq!(run(&off_deps, now).await.repaired, 0);
    assert_eq!(off.vault.count("kv-one", Collection::Secrets, "db-password"), 1);
}

/// A dead-letter blob as Event Grid writes it: the `lifecycle` event of `kv-one/<name>` at `version`, with the
/// fields Event Grid adds.
fn dead_letter(
    id: &str,
    event_type: keyturn_events::KeyVaultEventType,
    name: &str,
    version: &str,
    exp: DateTime<Utc>,
) -> Vec<u8> {
    use keyturn_events::{Event, KeyVaultEvent, Payload, Schema, VaultObject};
    let object = VaultObject::new("kv-one", event_type.object_kind(), name, Some(version), None, Some(exp)).unwrap();
    let event = Event {
        id: id.into(),
        subject: name.into(),
        source: "/subscriptions/0/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one".into(),
        time: Some(exp - Duration::days(30)),
        schema: Schema::EventGrid,
        payload: Payload::KeyVault(KeyVaultEvent { event_type, object }),
    };
    let mut value = event.to_value();
    value["deadLetterReason"] = "MaxDeliveryAttemptsExceeded".into();
    value["deliveryAttempts"] = 30.into();
    serde_json::to_vec(&serde_json::json!([value])).unwrap()
}

/// Dead letters: a near-expiry event whose object still needs it is re-driven (one rotation, through the
/// engine); one whose object was rotated since is no longer needed; an expiry event is reported, not
/// re-driven; an unreadable blob is reported as unusable. Each once: the next pass finds nothing new. The
/// digest shows the repair and the dead letter not re-driven in their own sections.
#[tokio::test]
async fn dead_letters_are_re_driven_where_still_needed_and_each_reported_once() {
    use keyturn_events::KeyVaultEventType::{SecretExpired, SecretNearExpiry};
    use keyturn_sweep::{MemoryDeadLetters, Section};

    let (world, deps) =
        world_with(&[("KEYTURN_SWEEP_ROUTES", "info=slack;warning=slack"), ("KEYTURN_SWEEP_REPAIR", "on")]);
    let now = Utc::now();
    // 29 days 23 hours out: inside Key Vault's window, before the sweep's own repair grace.
    let exp = now + Duration::days(30) - Duration::hours(1);
    secret(&world, "db-password", "v1", exp, OPTED_IN);
    secret(&world, "api", "a1", exp, OPTED_IN);
    secret(&world, "api", "a2", now + Duration::days(90), OPTED_IN);
    let letters = MemoryDeadLetters::default();
    letters.put("KEYTURN-NEAR-EXPIRY/2027/1/1/0/1.json", dead_letter("e1", SecretNearExpiry, "db-password", "v1", exp));
    letters.put("KEYTURN-NEAR-EXPIRY/2027/1/1/0/2.json", dead_letter("e2", SecretNearExpiry, "api", "a1", exp));
    letters.put("KEYTURN-EXPIRED/2027/1/1/0/3.json", dead_letter("e3", SecretExpired, "old", "o1", now));
    letters.put("KEYTURN-EXPIRED/2027/1/1/0/4.json", b"[{\"id\": \"broken\"}]".to_vec());
    let deps = Arc::new(
        Arc::try_unwrap(deps)
            .unwrap()
            .with_dead_letters(Some(Arc::new(letters) as Arc<dyn keyturn_sweep::DeadLetters>)),
    );

    let report = run(&deps, now).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let results: Vec<(Option<&str>, &crate::redrive::Redrive)> =
        report.dead_letters.iter().map(|f| (f.event_id.as_deref(), &f.result)).collect();
    use crate::redrive::Redrive;
    assert!(
        matches!(results[0], (Some("e3"), Redrive::NotRedriven(why)) if why.contains("expiry event")),
        "{results:?}"
    );
    assert!(
        matches!(results[1], (Some("broken"), Redrive::Unusable(why)) if why.contains("does not decode")),
        "{results:?}"
    );
    assert!(
        matches!(results[2], (Some("e1"), Redrive::Rotated(how)) if how.starts_with("rotated from v1")),
        "{results:?}"
    );
    assert!(
        matches!(results[3], (Some("e2"), Redrive::NoLongerNeeded(why)) if why.contains("already rotated to a2")),
        "{results:?}"
    );
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "db-password"), 2, "re-driven: one rotation");
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "api"), 2, "no longer needed: no rotation");
    assert_eq!(report.repaired, 1);
    let summary = report.summary();
    assert!(summary.contains("; repaired: secret kv-one/db-password (its event e1 was dead-lettered"), "{summary}");
    assert!(summary.contains("4 dead letters (1 re-driven, 1 unusable)"), "{summary}");

    let sections: Vec<(Section, String)> = world
        .notifier
        .sent_to()
        .iter()
        .flat_map(|(_, sent)| match sent {
            Sent::Digest(d) => d
                .groups
                .iter()
                .flat_map(|g| g.notices.iter().map(|n| (g.section, n.object.name().to_owned())))
                .collect(),
            Sent::Notification(_) => Vec::new(),
        })
        .collect();
    assert!(sections.contains(&(Section::Repaired, "db-password".into())), "{sections:?}");
    assert!(sections.contains(&(Section::DeadLettered, "api".into())), "{sections:?}");
    assert!(sections.contains(&(Section::DeadLettered, "old".into())), "{sections:?}");

    let again = run(&deps, now + Duration::hours(1)).await;
    assert!(again.dead_letters.is_empty(), "each reported once: {:?}", again.dead_letters);
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "db-password"), 2);
}

/// Without repair, a dead letter that still needs its rotation is reported for a person, not re-driven.
#[tokio::test]
async fn with_repair_off_a_dead_letter_is_reported_not_re_driven() {
    use keyturn_events::KeyVaultEventType::SecretNearExpiry;
    let (world, deps) = world_with(&[("KEYTURN_SWEEP_ROUTES", "warning=slack")]);
    let exp = Utc::now() + Duration::days(29);
    secret(&world, "db-password", "v1", exp, OPTED_IN);
    let letters = keyturn_sweep::MemoryDeadLetters::default();
    letters.put("KEYTURN-NEAR-EXPIRY/1.json", dead_letter("e1", SecretNearExpiry, "db-password", "v1", exp));
    let deps = Arc::try_unwrap(deps)
        .unwrap()
        .with_dead_letters(Some(Arc::new(letters) as Arc<dyn keyturn_sweep::DeadLetters>));
    let report = run(&deps, Utc::now()).await;
    let [finding] = &report.dead_letters[..] else { panic!("{:?}", report.dead_letters) };
    assert!(
        matches!(&finding.result, crate::redrive::Redrive::NotRedriven(why) if why.contains("KEYTURN_SWEEP_REPAIR=on")),
        "{finding:?}"
    );
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "db-password"), 1);
    let warned = world.notifier.sent_to();
    let [(1, Sent::Digest(digest))] = &warned[..] else { panic!("{warned:?}") };
    assert!(digest.groups.iter().any(|g| g.section == keyturn_sweep::Section::DeadLettered), "{digest:?}");
}
