//! The `entra-app-secret` provider end to end: the engine in a handler-like child process (managed identity
//! tokens for Graph from the local identity endpoint, the SDK-backed vault), against the Key Vault emulator and
//! the Graph emulator (crates/local/src/graph.rs). The parent proves which secrets work by signing in with them
//! (client credentials against the emulator's token endpoint).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use keyturn_local::graph::{GraphEmulator, Permission, RunningGraph};
use keyturn_rotation::provider::Provider;
use keyturn_rotation::{Engine, InProcessLock, RotationOutcome};
use keyturn_vault::KeyVault;
use support::{Parent, SCENARIO, Step, VAULT, event, new_secret, rotate_until_crash, tags};

const TEST: &str = "entra_app_secrets";
const BOUND: Duration = Duration::from_secs(60);
/// The overlap the rotated secret sets: long enough to see the previous password kept, short enough to wait out.
const OVERLAP_SECS: u64 = 3;
/// A bound application Graph does not know.
const UNKNOWN_APP: &str = "00000000-0000-0000-0000-00000000abcd";

fn policy(app: &str, key_id: &str) -> keyturn_vault::model::Tags {
    tags(&[
        ("KeyturnRotation", "entra-app-secret"),
        ("ValidityPeriodDays", "60"),
        ("CredentialId", key_id),
        ("ProviderAddress", app),
        ("KeyturnOverlap", &format!("PT{OVERLAP_SECS}S")),
    ])
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap()
}

/// The child: the scenario through the engine, as the handler runs it.
async fn scenario() {
    let (app, crash_app, unowned, victim) =
        (var("KT_APP"), var("KT_CRASH_APP"), var("KT_UNOWNED_APP"), var("KT_VICTIM_APP"));
    let settings = support::child_settings(&[(
        "KEYTURN_ENTRA_APPLICATIONS",
        format!(
            "{VAULT}/app-secret={app};{VAULT}/crash-secret={crash_app};{VAULT}/unused-*={UNKNOWN_APP},{unowned};\
             other-vault={victim}"
        ),
    )]);
    let (vault, providers) = support::vault_and_providers(&settings);
    let provider: Arc<dyn Provider> = providers.get("entra-app-secret").unwrap().clone();
    let engine = Engine::new(vault.clone(), Arc::new(InProcessLock::default()), providers);
    let rotate = |name: &'static str, version: String| {
        let engine = engine.clone();
        async move { tokio::time::timeout(BOUND, engine.rotate(&event(name, &version))).await.unwrap() }
    };

    // A rotation (through Graph's throttling, which the parent switched on), then a duplicate delivery.
    let v0 = vault
        .set_secret(VAULT, "app-secret", new_secret(&var("KT_P0"), policy(&app, &var("KT_P0_KEY"))))
        .await
        .unwrap()
        .version;
    let first = rotate("app-secret", v0.clone()).await.unwrap();
    let RotationOutcome::Rotated { to: v1, .. } = first else { panic!("{first}") };
    let second = rotate("app-secret", v0.clone()).await.unwrap();
    assert!(matches!(second, RotationOutcome::AlreadyRotated { .. }), "{second}");
    let latest = vault.latest_secret(VAULT, "app-secret").await.unwrap();
    assert_eq!(latest.properties.tags["KeyturnPreviousCredential"], var("KT_P0_KEY"));
    assert_ne!(latest.properties.tags["CredentialId"], var("KT_P0_KEY"));

    // Once the overlap has passed, the next rotation removes the first password and keeps the one it replaces.
    tokio::time::sleep(Duration::from_millis(OVERLAP_SECS * 1000 + 500)).await;
    let third = rotate("app-secret", v1.clone()).await.unwrap();
    assert!(matches!(&third, RotationOutcome::Rotated { from, .. } if from == &v1), "{third}");

    // Killed after the password was added and its secret kept in the pending home: the replay resumes with it.
    let c0 = vault
        .set_secret(VAULT, "crash-secret", new_secret(&var("KT_CRASH_P0"), policy(&crash_app, &var("KT_CRASH_P0_KEY"))))
        .await
        .unwrap()
        .version;
    tokio::time::timeout(BOUND, rotate_until_crash(vault.clone(), provider, Step::Create, &event("crash-secret", &c0)))
        .await
        .unwrap();
    assert_eq!(vault.latest_secret(VAULT, "crash-secret").await.unwrap().properties.version, c0);
    let replay = rotate("crash-secret", c0.clone()).await.unwrap();
    assert!(matches!(replay, RotationOutcome::Rotated { .. }), "{replay}");

    // Graph's refusals are permanent and leave the secret as it was: an application Graph does not know, and one
    // the handler's identity does not own.
    for (name, target, code) in [
        ("unused-missing", UNKNOWN_APP, "404 (Request_ResourceNotFound)"),
        ("unused-unowned", unowned.as_str(), "403 (Authorization_RequestDenied)"),
    ] {
        let s0 = vault
            .set_secret(VAULT, name, new_secret("some-current-secret", policy(target, UNKNOWN_APP)))
            .await
            .unwrap()
            .version;
        let error = rotate(name, s0.clone()).await.unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(error.to_string().contains(code), "{error}");
        assert_eq!(vault.latest_secret(VAULT, name).await.unwrap().properties.version, s0);
    }

    // A writer of one secret names an application bound to another vault: refused, naming the missing binding,
    // before Graph is asked (the parent checks the application is untouched).
    let s0 = vault
        .set_secret(VAULT, "stolen", new_secret("mine-mine-mine", policy(&victim, UNKNOWN_APP)))
        .await
        .unwrap()
        .version;
    let error = rotate("stolen", s0.clone()).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("KEYTURN_ENTRA_APPLICATIONS has no entry"), "{error}");
    assert_eq!(vault.latest_secret(VAULT, "stolen").await.unwrap().properties.version, s0);
}

/// Whether Entra ID (the emulator's token endpoint) accepts `secret` for `app_id`.
async fn signs_in(graph: &RunningGraph, app_id: &str, secret: &str) -> bool {
    match graph.sign_in(app_id, secret).await {
        Ok(_) => true,
        Err(refusal) => {
            assert!(refusal.starts_with("AADSTS7000215: "), "refused for another reason than the secret: {refusal}");
            false
        }
    }
}

#[tokio::test]
async fn entra_app_secrets() {
    match std::env::var(SCENARIO).as_deref() {
        Ok("entra") => return scenario().await,
        Ok(other) => panic!("unknown scenario {other}"),
        Err(_) => {}
    }
    let parent = Parent::start().await;
    let graph = GraphEmulator::builder()
        .application("billing-api")
        .application("crash-api")
        .application("unowned-api")
        .application("victim-api")
        .start(parent.kv.token_registry().unwrap())
        .await
        .unwrap();
    let [app, crash_app, unowned, victim] =
        ["billing-api", "crash-api", "unowned-api", "victim-api"].map(|name| graph.application(name).unwrap());
    // The child runs as the stack's system-assigned identity: Application.ReadWrite.OwnedBy, owner of all but one.
    let keyturn = parent.kv.identities().system().object_id;
    graph.grant(&keyturn, Permission::ApplicationReadWriteOwnedBy);
    for owned in [&app, &crash_app, &victim] {
        assert!(graph.add_owner(&owned.object_id, &keyturn));
    }
    let p0 = graph.add_password(&app.object_id, "initial", chrono::Duration::days(90)).unwrap();
    // Another consumer's secret on the same application: keyturn neither made nor replaced it, so never removes it.
    let foreign = graph.add_password(&app.object_id, "reporting job", chrono::Duration::days(90)).unwrap();
    let crash_p0 = graph.add_password(&crash_app.object_id, "initial", chrono::Duration::days(90)).unwrap();
    // Graph throttles the first two calls: the provider waits (Retry-After, within KEYTURN_RETRY_*) and goes on.
    graph.throttle_next(2);
    parent
        .run_child(
            TEST,
            "entra",
            &[graph.ca_pem().to_owned()],
            &[
                ("KEYTURN_GRAPH_ENDPOINT", graph.url().to_owned()),
                ("KT_APP", app.object_id.clone()),
                ("KT_CRASH_APP", crash_app.object_id.clone()),
                ("KT_UNOWNED_APP", unowned.object_id.clone()),
                ("KT_VICTIM_APP", victim.object_id.clone()),
                ("KT_P0", p0.secret_text.clone()),
                ("KT_P0_KEY", p0.key_id.clone()),
                ("KT_CRASH_P0", crash_p0.secret_text.clone()),
                ("KT_CRASH_P0_KEY", crash_p0.key_id.clone()),
            ],
        )
        .await;

    let versions = |name: &str| -> Vec<(String, std::collections::BTreeMap<String, String>)> {
        parent
            .kv
            .store()
            .list_secret_versions(VAULT, name)
            .unwrap()
            .into_iter()
            .map(|view| (view.version.data.value, view.version.tags))
            .collect()
    };
    let key_ids =
        |object_id: &str| -> Vec<String> { graph.passwords(object_id).into_iter().map(|p| p.key_id).collect() };

    // Two rotations of app-secret: three values; the first password went once its overlap ended, the second (the
    // one the third replaced) is kept through its overlap, the third is the secret's. Each key id is the version's.
    let all = versions("app-secret");
    assert_eq!(all.len(), 3);
    let (p1_key, p2_key) = (all[1].1["CredentialId"].clone(), all[2].1["CredentialId"].clone());
    assert_eq!(key_ids(&app.object_id), [foreign.key_id.clone(), p1_key.clone(), p2_key.clone()]);
    assert!(signs_in(&graph, &app.app_id, &foreign.secret_text).await, "another consumer's secret was touched");
    assert_eq!(all[2].1["KeyturnPreviousCredential"], p1_key);
    assert!(!signs_in(&graph, &app.app_id, &p0.secret_text).await, "the first password outlived its overlap");
    assert!(signs_in(&graph, &app.app_id, &all[1].0).await, "the replaced password stops before its overlap ends");
    assert!(signs_in(&graph, &app.app_id, &all[2].0).await, "the secret's value does not sign in");
    // Passwords keyturn added carry the secret and the version they replace; nothing else.
    let names: Vec<Option<String>> =
        graph.passwords(&app.object_id).into_iter().skip(1).map(|p| p.display_name).collect();
    let prefix = format!("keyturn:{VAULT}/app-secret:");
    assert!(names.iter().all(|n| n.as_deref().is_some_and(|n| n.starts_with(&prefix))), "{names:?}");

    // The crash and its replay added one password in all, and the vault holds it.
    let crash = versions("crash-secret");
    assert_eq!(crash.len(), 2);
    assert_eq!(key_ids(&crash_app.object_id), [crash_p0.key_id.clone(), crash[1].1["CredentialId"].clone()]);
    assert!(signs_in(&graph, &crash_app.app_id, &crash[1].0).await);
    assert!(
        signs_in(&graph, &crash_app.app_id, &crash_p0.secret_text).await,
        "the replaced password goes only at a rotation after its overlap, and none came"
    );

    // Refused rotations changed nothing: no password on the unowned or the unbound application.
    assert!(key_ids(&unowned.object_id).is_empty() && key_ids(&victim.object_id).is_empty());
    // The two throttled calls were answered 429 and retried.
    assert_eq!(graph.throttled_answers(), 2);
    // Adds: two for app-secret, one for crash-secret; removals: the first password of app-secret.
    assert_eq!(graph.calls(), (3, 1));
    graph.shutdown().await;
    parent.stop().await;
}
