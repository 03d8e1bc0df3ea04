//! `keyturn check`'s decisions and renderings, against hand-made facts (the real command runs end to end in
//! tests/e2e/tests/cli.rs and check_report.rs).

use chrono::DateTime;

use super::table::{short, thresholds_json};
use super::*;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

fn facts(kind: ObjectKind, tags: &[(&str, &str)], expires_in_days: Option<i64>) -> Facts {
    Facts {
        kind,
        listed: Listed {
            name: "obj".into(),
            version: Some("0123456789abcdef".into()),
            enabled: true,
            created: None,
            not_before: None,
            expires: expires_in_days.map(|d| now() + chrono::Duration::days(d)),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            managed: false,
        },
        native: Native::Unread,
    }
}

fn decide(f: &Facts) -> Row {
    row("kv-one", f, &["generated"], &Thresholds::default(), now())
}

#[test]
fn secrets_are_judged_as_the_engine_judges_them() {
    let rotating = decide(&facts(
        ObjectKind::Secret,
        &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60"), ("KeyturnFormat", "hex")],
        Some(10),
    ));
    assert_eq!(rotating.policy, "generated, hex(32 bytes), 60 days");
    assert_eq!(rotating.near_expiry.action, "rotate");
    assert!(rotating.near_expiry.detail.contains("60 days later (due now)"), "{:?}", rotating.near_expiry);

    let no_validity = decide(&facts(ObjectKind::Secret, &[("KeyturnRotation", "generated")], Some(40)));
    assert_eq!(no_validity.near_expiry.action, "reject");
    assert!(no_validity.near_expiry.detail.contains("ValidityPeriodDays"));

    let unknown =
        decide(&facts(ObjectKind::Secret, &[("KeyturnRotation", "vaultwarden"), ("ValidityPeriodDays", "5")], Some(5)));
    assert_eq!(unknown.near_expiry.action, "reject");
    // The engine's own words: one decision, one message.
    assert!(unknown.near_expiry.detail.contains("'vaultwarden' is not a provider this deployment has"));

    let plain = decide(&facts(ObjectKind::Secret, &[], Some(5)));
    assert_eq!((plain.policy.as_str(), plain.near_expiry.action), ("none", "notify"));
    assert_eq!(plain.expired.action, "notify");

    let never = decide(&facts(ObjectKind::Secret, &[("KeyturnRotation", "generated")], None));
    assert_eq!((never.near_expiry.action, never.expired.action), ("none", "none"));

    let broken = decide(&facts(ObjectKind::Secret, &[("ValidityPeriodDays", "soon")], Some(5)));
    assert!(broken.policy.starts_with("invalid (tag ValidityPeriodDays"), "{}", broken.policy);
    assert_eq!(broken.near_expiry.action, "reject");
}

#[test]
fn keys_and_certificates_defer_to_key_vaults_own_policies() {
    use keyturn_vault::model::{CertificatePolicy, KeyRotationPolicy};
    let mut key = facts(ObjectKind::Key, &[("KeyturnRotation", "enabled")], Some(20));
    key.native = Native::Key(KeyRotationPolicy { rotates: false, trigger: None });
    assert_eq!(decide(&key).near_expiry.action, "rotate");
    key.native = Native::Key(KeyRotationPolicy { rotates: true, trigger: Some("timeBeforeExpiry P30D".into()) });
    let native = decide(&key);
    assert_eq!(native.near_expiry.action, "skip");
    assert!(native.near_expiry.detail.contains("P30D"));

    let certificate = |issuer: &str, auto_renew, provider: Option<&str>| Native::Certificate {
        policy: CertificatePolicy { issuer: Some(issuer.into()), auto_renew },
        issuer_provider: provider.map(str::to_owned),
    };
    let mut cert = facts(ObjectKind::Certificate, &[("KeyturnRotation", "enabled")], Some(20));
    cert.native = certificate("Self", false, None);
    assert_eq!(decide(&cert).near_expiry.action, "renew");
    cert.native = certificate("Unknown", false, None);
    let manual = decide(&cert);
    assert_eq!(manual.near_expiry.action, "notify");
    assert!(manual.near_expiry.detail.contains("issued by 'Unknown'"), "{:?}", manual.near_expiry);
    cert.native = certificate("corp-ca", false, Some("DigiCert"));
    assert_eq!(decide(&cert).near_expiry.action, "renew");
    cert.native = certificate("Self", true, None);
    assert_eq!(decide(&cert).near_expiry.action, "skip");
    // An object that opts in whose native policy could not be read is not guessed at.
    cert.native = Native::Unread;
    assert_eq!(decide(&cert).near_expiry.action, "error");
}

#[test]
fn expired_and_new_version_follow_their_tags() {
    let disable = decide(&facts(ObjectKind::Secret, &[("KeyturnExpiredAction", "disable")], Some(-1)));
    assert_eq!(disable.expired.action, "disable");
    let rotate_without_policy = decide(&facts(ObjectKind::Secret, &[("KeyturnExpiredAction", "rotate")], Some(-1)));
    assert_eq!(rotate_without_policy.expired.action, "reject");
    let mirrored = decide(&facts(ObjectKind::Secret, &[("KeyturnMirror", "kv-dr, kv-eu")], None));
    assert_eq!(mirrored.new_version.text(), "notify: and replicate to kv-dr, kv-eu");
    let replica =
        decide(&facts(ObjectKind::Secret, &[("KeyturnReplicaOf", "kv-one/db/v1"), ("KeyturnMirror", "kv-dr")], None));
    assert!(replica.new_version.detail.contains("not replicated onward"));
}

/// `now()` is Thursday 2026-01-01 00:00 UTC; `Sat 02:00-04:00 UTC` next opens on 2026-01-03.
#[test]
fn a_rotation_window_is_judged_when_the_near_expiry_event_comes() {
    let windowed = |window: &str, days| {
        decide(&facts(
            ObjectKind::Secret,
            &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60"), ("KeyturnRotationWindow", window)],
            Some(days),
        ))
    };
    // Due now (10 days to expiry), closed now: it waits for Saturday.
    let waits = windowed("Sat 02:00-04:00 UTC", 10);
    assert_eq!((waits.near_expiry.action, waits.outcome()), ("rotate", "rotate"));
    assert!(
        waits.near_expiry.detail.ends_with("(due now); waits for its rotation window, open from 2026-01-03 02:00 UTC"),
        "{:?}",
        waits.near_expiry
    );
    // Expiring tomorrow, before the window: rotated at once.
    let at_once = windowed("Sat 02:00-04:00 UTC", 1);
    assert!(at_once.near_expiry.detail.contains("outside its rotation window, at once"), "{:?}", at_once.near_expiry);
    // A window tag that does not parse is a policy problem, as the handler would reject it.
    let mistyped = windowed("Caturday 02:00-04:00", 10);
    assert_eq!((mistyped.near_expiry.action, mistyped.outcome()), ("reject", "problem"));
    assert!(mistyped.near_expiry.detail.contains("'Caturday' is not a day"), "{:?}", mistyped.near_expiry);
}

#[test]
fn thresholds_come_from_the_tag_or_the_default_and_a_bad_tag_is_a_problem() {
    let plain = decide(&facts(ObjectKind::Secret, &[], Some(20)));
    assert_eq!(plain.thresholds.as_ref().map(Thresholds::days), Ok(&[60, 30, 14, 7, 3, 1, 0][..]));
    assert!(!plain.own_thresholds);
    let json = thresholds_json(&plain, now());
    assert_eq!(json["source"], "default");
    assert_eq!(json["next"]["days"], 14, "20 days before expiry, the 14-day notice comes next");
    let own = decide(&facts(ObjectKind::Secret, &[("KeyturnThresholds", "45, 5")], Some(20)));
    assert_eq!(own.thresholds.as_ref().map(Thresholds::days), Ok(&[45, 5][..]));
    assert_eq!(thresholds_json(&own, now())["source"], "tag");
    let bad = decide(&facts(ObjectKind::Secret, &[("KeyturnThresholds", "soon")], Some(20)));
    assert_eq!(bad.outcome(), "problem");
    assert!(thresholds_json(&bad, now())["error"].as_str().unwrap().contains("'soon' is not a whole number"));
}

#[test]
fn the_outcome_word_follows_the_near_expiry_plan_unless_a_tag_is_refused() {
    let outcome = |tags: &[(&str, &str)], days| decide(&facts(ObjectKind::Secret, tags, days)).outcome();
    assert_eq!(outcome(&[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")], Some(5)), "rotate");
    assert_eq!(outcome(&[], Some(5)), "notify");
    assert_eq!(outcome(&[], None), "nothing");
    assert_eq!(outcome(&[("KeyturnReplicaOf", "kv-one/db/v1")], Some(5)), "nothing");
    assert_eq!(outcome(&[("KeyturnExpiredAction", "explode")], Some(5)), "problem");
    assert_eq!(outcome(&[("KeyturnMirror", "not a vault!")], Some(5)), "problem");
}

#[test]
fn vaults_keep_their_configured_urls_unless_given_one() {
    let configured = "kv-one=https://127.0.0.1:1,kv-two=https://127.0.0.1:2";
    let (vaults, names) = select_vaults(configured, &[]).unwrap();
    assert_eq!((vaults.as_str(), names), (configured, vec!["kv-one".to_owned(), "kv-two".to_owned()]));
    let (vaults, names) = select_vaults(configured, &["kv-two".into(), "kv-prod".into()]).unwrap();
    assert_eq!(vaults, "kv-two=https://127.0.0.1:2,kv-prod");
    assert_eq!(names, ["kv-two", "kv-prod"]);
    let (vaults, _) = select_vaults(configured, &["kv-one=https://10.0.0.1".into()]).unwrap();
    assert_eq!(vaults, "kv-one=https://10.0.0.1");
    assert_eq!(select_vaults("", &[]).unwrap_err().status, ExitStatus::Setup);
}

#[test]
fn expiry_reads_as_a_person_would_say_it() {
    assert_eq!(relative(Some(now() + chrono::Duration::days(29)), now()), "in 29 days");
    assert_eq!(relative(Some(now() - chrono::Duration::days(3)), now()), "expired 3 days ago");
    assert_eq!(relative(Some(now() + chrono::Duration::hours(1)), now()), "in 1 hour");
    assert_eq!(relative(None, now()), "never");
    assert_eq!(short(Some("0123456789abcdef")), "01234567");
}
