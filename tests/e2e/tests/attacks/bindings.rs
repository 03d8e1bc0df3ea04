//! The attacks the deployment's bindings refuse.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeDelta;
use keyturn_e2e::receivers::http_sink;
use keyturn_e2e::{Chain, NEW_VERSION_EVENT_TYPES, bounded, fast_stack, tags, workspace_binary};
use keyturn_host::Status;
use keyturn_local::keyvault::SecretSpec;
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::stack::LocalStack;

use crate::{last_about, notifications_about};

const VAULTS: [&str; 2] = ["kv-one", "kv-two"];

fn seed(stack: &LocalStack, vault: &str, name: &str, value: &str, tags: BTreeMap<String, String>) -> String {
    let now = stack.emulator().clock().now();
    let spec = SecretSpec {
        value: value.to_owned(),
        content_type: None,
        attributes: AttributeInput {
            nbf: Some((now - TimeDelta::days(1)).timestamp()),
            exp: Some((now + TimeDelta::days(90)).timestamp()),
            ..AttributeInput::default()
        },
        tags,
    };
    stack.emulator().store().set_secret(vault, name, spec).unwrap().version.version
}

/// Tried as a new user would on `keyturn dev --vault kv-one --vault kv-two`: kv-two holds a real `prod-db`; a
/// writer on kv-one sets `prod-db` there tagged `KeyturnMirror=kv-two`. kv-two's `prod-db` keeps its value
/// (one version), the event is rejected naming why, and a warning goes out. Beside it, the writer's own
/// `app-own` is mirrored into kv-two as before.
#[tokio::test]
async fn mirroring_never_overwrites_a_secret_that_is_not_a_replica_of_this_source() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let stack = fast_stack(&VAULTS).await;
        let url = |vault: &str| format!("{vault}={}", stack.emulator().vault_url(vault).unwrap());
        let mut settings: Vec<(String, String)> =
            stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_VAULTS").collect();
        settings.push(("KEYTURN_VAULTS".to_owned(), format!("{},{}", url("kv-one"), url("kv-two"))));
        settings.push(("KEYTURN_NOTIFY".to_owned(), sink.channels()));
        // Only app-* names are notified: the refusal must be told anyway.
        settings.push(("KEYTURN_NOTIFY_NEW_VERSION_NAMES".to_owned(), "app-*".to_owned()));
        // Both vaults are mirror destinations in this deployment (new-version holds Secrets Officer on each, as
        // infra/roles.json grants mirror vaults): the refusal must come from keyturn's rule, not from RBAC.
        let mut deployment = keyturn_e2e::deployment_of(&stack, &settings);
        deployment.mirror_vaults = vec!["kv-one".into(), "kv-two".into()];
        let binary = workspace_binary("new-version");
        let chain =
            Chain::start_as(stack, "new-version", &binary, &NEW_VERSION_EVENT_TYPES, settings, deployment).await;
        let stack = &chain.stack;
        let store = stack.emulator().store();

        seed(stack, "kv-two", "prod-db", "kv-two-real-value-0001", BTreeMap::new());
        chain.settle(1, Duration::from_secs(30)).await;
        seed(stack, "kv-one", "prod-db", "attacker-value-0002", tags(&[("KeyturnMirror", "kv-two")]));
        seed(stack, "kv-one", "app-own", "own-value-0003", tags(&[("KeyturnMirror", "kv-two")]));
        // Two new versions and the legitimate replica's own event.
        chain.settle(4, Duration::from_secs(60)).await;

        // Nothing outside the attacker's object changed.
        let victim = store.list_secret_versions("kv-two", "prod-db").unwrap();
        assert_eq!(victim.len(), 1);
        assert_eq!(store.get_secret("kv-two", "prod-db", None).unwrap().version.data.value, "kv-two-real-value-0001");
        // A permanent, clear refusal.
        let refused = last_about(&chain, "kv-one", "prod-db");
        assert_eq!((refused.status, refused.action.as_deref()), (Status::Rejected, Some("mirror-refused")));
        assert!(
            refused.message.contains("'kv-two' already holds a 'prod-db' that is not a replica of kv-one/prod-db"),
            "{refused:#?}"
        );
        // A warning notification about it, though the name filter selects app-* only.
        let warnings = notifications_about(&sink, "kv-one", "prod-db");
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_eq!(warnings[0]["severity"], "warning");

        // The legitimate path beside it: the writer's own secret is mirrored.
        let copy = store.get_secret("kv-two", "app-own", None).unwrap().version;
        assert_eq!(copy.data.value, "own-value-0003");
        assert!(copy.tags.get("KeyturnReplicaOf").is_some_and(|r| r.starts_with("kv-one/app-own/")));

        chain.assert_no_secret_leaked(&VAULTS, sink.bodies());
        chain.shutdown().await;
    })
    .await;
}

/// A replica carrying its source's rotation tags (copied before issue 13, or written by hand) gets its
/// near-expiry event: keyturn does not rotate it (for single-user PostgreSQL, rotating the copy would kill the
/// source's password). Skipped, naming the rule, with a warning; the replica keeps its one version. Beside it,
/// the writer's own opted-in secret rotates as before.
#[tokio::test]
async fn a_replica_never_rotates_itself() {
    use keyturn_e2e::{NEAR_EXPIRY_EVENT_TYPES, fast_retries, secret_near_expiry, seed_secret};
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let stack = fast_stack(&["kv-one"]).await;
        let mut settings: Vec<(String, String)> = stack.handler_env();
        settings.push(("KEYTURN_NOTIFY".to_owned(), sink.channels()));
        settings.extend(fast_retries());
        let chain =
            Chain::start(stack, "near-expiry", &workspace_binary("near-expiry"), &NEAR_EXPIRY_EVENT_TYPES, settings)
                .await;
        let stack = &chain.stack;
        let policy = [("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")];
        let mut replica_tags = policy.to_vec();
        replica_tags.push(("KeyturnReplicaOf", "kv-two/db/src1"));
        let replica = seed_secret(stack, "kv-one", "db", "copied-value-0001", 20, tags(&replica_tags));
        let own = seed_secret(stack, "kv-one", "own", "own-value-0002", 20, tags(&policy));
        let exp = stack.emulator().clock().now() + TimeDelta::days(20);
        stack.grid().publish(secret_near_expiry("replica-1", "kv-one", "db", &replica, exp));
        stack.grid().publish(secret_near_expiry("own-1", "kv-one", "own", &own, exp));
        chain.settle(2, Duration::from_secs(60)).await;

        let store = stack.emulator().store();
        assert_eq!(store.list_secret_versions("kv-one", "db").unwrap().len(), 1, "the replica was not rotated");
        assert_eq!(store.get_secret("kv-one", "db", None).unwrap().version.data.value, "copied-value-0001");
        let skipped = last_about(&chain, "kv-one", "db");
        assert_eq!((skipped.status, skipped.action.as_deref()), (Status::Skipped, Some("replica")));
        assert!(skipped.message.contains("replica of kv-two/db/src1"), "{skipped:#?}");
        let warnings = notifications_about(&sink, "kv-one", "db");
        assert!(!warnings.is_empty(), "no notification about the replica: {:#?}", sink.received());
        assert_eq!(warnings[0]["severity"], "warning");

        // The legitimate path beside it.
        assert_eq!(store.list_secret_versions("kv-one", "own").unwrap().len(), 2, "the writer's own secret rotated");
        // The emulator raises its own near-expiry events too (20 days left): one delivery rotated, any other
        // found it already rotated.
        let about_own: Vec<Option<String>> = chain
            .host
            .invocations()
            .into_iter()
            .filter_map(|record| record.result.ok()?.outcome())
            .filter(|o| o.object.as_ref().is_some_and(|object| object.name() == "own"))
            .map(|o| o.action)
            .collect();
        assert_eq!(about_own.iter().filter(|a| a.as_deref() == Some("rotated")).count(), 1, "{about_own:?}");
        chain.shutdown().await;
    })
    .await;
}

/// With `KEYTURN_MIRROR_ROUTES` set, a writer on kv-one may only mirror to the destinations routed for their
/// secret's name: a destination keyturn can write to but that no route gives kv-one (kv-three), and a routed
/// destination for a name outside the route (`db`), are refused with a warning, and nothing reaches them.
/// Beside it, the writer's routed `app-own` is mirrored into kv-two.
#[tokio::test]
async fn a_mirror_tag_may_only_pick_the_routes_the_deployment_gives_its_source_and_name() {
    const ROUTED: [&str; 3] = ["kv-one", "kv-two", "kv-three"];
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let stack = fast_stack(&ROUTED).await;
        let mut settings: Vec<(String, String)> = stack.handler_env();
        settings.push(("KEYTURN_NOTIFY".to_owned(), sink.channels()));
        settings.push(("KEYTURN_MIRROR_ROUTES".to_owned(), "kv-one/app-*=kv-two".to_owned()));
        // new-version may write both destinations (RBAC allows it): the refusal must be keyturn's rule.
        let mut deployment = keyturn_e2e::deployment_of(&stack, &settings);
        deployment.mirror_vaults = vec!["kv-two".into(), "kv-three".into()];
        let binary = workspace_binary("new-version");
        let chain =
            Chain::start_as(stack, "new-version", &binary, &NEW_VERSION_EVENT_TYPES, settings, deployment).await;
        let stack = &chain.stack;
        let store = stack.emulator().store();

        seed(stack, "kv-one", "app-steer", "writer-value-0001", tags(&[("KeyturnMirror", "kv-three")]));
        seed(stack, "kv-one", "db", "writer-value-0002", tags(&[("KeyturnMirror", "kv-two")]));
        seed(stack, "kv-one", "app-own", "own-value-0003", tags(&[("KeyturnMirror", "kv-two")]));
        // Three new versions and the legitimate replica's own event.
        chain.settle(4, Duration::from_secs(60)).await;

        for (name, destination) in [("app-steer", "kv-three"), ("db", "kv-two")] {
            assert!(store.get_secret(destination, name, None).is_err(), "{name} reached {destination}");
            let refused = last_about(&chain, "kv-one", name);
            assert_eq!((refused.status, refused.action.as_deref()), (Status::Rejected, Some("mirror-refused")));
            let says = format!("'{destination}' is not a destination KEYTURN_MIRROR_ROUTES gives kv-one/{name}");
            assert!(refused.message.contains(&says), "{refused:#?}");
            let warnings = notifications_about(&sink, "kv-one", name);
            assert_eq!(warnings.len(), 1, "{warnings:#?}");
            assert_eq!(warnings[0]["severity"], "warning");
        }
        assert!(store.list_secrets("kv-three").unwrap().is_empty(), "nothing reached kv-three");

        // The legitimate path beside it: the routed secret is mirrored.
        let copy = store.get_secret("kv-two", "app-own", None).unwrap().version;
        assert_eq!(copy.data.value, "own-value-0003");
        assert!(copy.tags.get("KeyturnReplicaOf").is_some_and(|r| r.starts_with("kv-one/app-own/")));

        chain.assert_no_secret_leaked(&ROUTED, sink.bodies());
        chain.shutdown().await;
    })
    .await;
}
