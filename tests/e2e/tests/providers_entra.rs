//! The `entra-app-secret` provider through the REAL `near-expiry` binary behind the Functions host stand-in,
//! against the Graph emulator (crates/local/src/graph.rs). The handler signs in to Graph with its own managed
//! identity (Graph audience), holding `Application.ReadWrite.OwnedBy` and owning the application, as deployed
//! (docs/operations.md). Which secrets work is proven by signing in with them (client credentials).
//!
//! The handler is SIGKILLed after each step of a rotation in turn, and Event Grid's redelivery must converge with
//! exactly one new password on the application. Each kill point is made deterministic by holding the handler in
//! what follows the step:
//!
//! | killed after | held in | how |
//! |---|---|---|
//! | addPassword (applied by Graph, secret not yet known to keyturn) | Graph's answer | the emulator delays its answers |
//! | the secret kept in the pending home | the promotion write | the vault delays every secret write by 2 s |
//! | promotion | the pending home's "promoted" write | the same delay |

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use keyturn_e2e::receivers::http_sink;
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, all_secret_values, assert_no_value_in, bounded, fast_retries, fast_stack, keyturn,
    publish_near_expiry, secret_versions, seed_secret, sigkill, tags, wait_for, workspace_binary,
};
use keyturn_host::Status;
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::graph::{AddedPassword, AppIds, GraphEmulator, Permission, RunningGraph};
use keyturn_local::keyvault::{FaultRule, Faults, KeyVaultEmulator, OperationKind};
use keyturn_local::stack::LocalStack;

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-entra";
const APP: &str = "kt-e2e-app";
const PENDING_SUFFIX: &str = "-keyturn-pending";
/// How long the vault holds a secret write, or Graph its answer, when a kill must land in one.
const HOLD: Duration = Duration::from_secs(2);

/// The Graph emulator with the test's application, sharing the stack's tokens, and the application's first
/// password (what the secret holds before any rotation).
async fn graph(stack: &LocalStack) -> (RunningGraph, AppIds, AddedPassword) {
    let graph =
        GraphEmulator::builder().application(APP).start(stack.emulator().token_registry().unwrap()).await.unwrap();
    let app = graph.application(APP).unwrap();
    let first = graph.add_password(&app.object_id, "created by the app's team", chrono::Duration::days(90)).unwrap();
    (graph, app, first)
}

/// The handler's settings: the stack's, a CA bundle trusting the vault and Graph, Graph's endpoint, the binding
/// of `secret` to the application, and short retries.
fn settings(
    stack: &LocalStack,
    graph: &RunningGraph,
    app: &AppIds,
    secret: &str,
    dir: &std::path::Path,
) -> Vec<(String, String)> {
    let bundle = dir.join("ca-bundle.pem");
    std::fs::write(&bundle, format!("{}\n{}", stack.emulator().ca_pem(), graph.ca_pem())).unwrap();
    let mut settings: Vec<(String, String)> =
        stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
    settings.push(("KEYTURN_CA_FILE".to_owned(), bundle.display().to_string()));
    settings.push(("KEYTURN_GRAPH_ENDPOINT".to_owned(), graph.url().to_owned()));
    settings.push(("KEYTURN_ENTRA_APPLICATIONS".to_owned(), format!("{VAULT}/{secret}={}", app.object_id)));
    settings.extend(fast_retries());
    settings
}

/// The deployment's manual step (docs/operations.md): the handler's identity gets Graph's
/// `Application.ReadWrite.OwnedBy` and becomes an owner of the application.
fn grant_handler(chain: &Chain, graph: &RunningGraph, app: &AppIds) {
    let identity = chain
        .stack
        .emulator()
        .identities()
        .list()
        .into_iter()
        .rfind(|identity| identity.name == format!("keyturn-{FUNCTION}"))
        .expect("the handler runs under an identity of its own");
    graph.grant(&identity.object_id, Permission::ApplicationReadWriteOwnedBy);
    assert!(graph.add_owner(&app.object_id, &identity.object_id));
}

/// Seeds the secret holding the application's first password.
fn seed(stack: &LocalStack, name: &str, app: &AppIds, first: &AddedPassword, overlap: &str) -> String {
    seed_secret(
        stack,
        VAULT,
        name,
        &first.secret_text,
        365,
        tags(&[
            ("KeyturnRotation", "entra-app-secret"),
            ("ValidityPeriodDays", "60"),
            ("CredentialId", &first.key_id),
            ("ProviderAddress", &app.object_id),
            ("KeyturnOverlap", overlap),
        ]),
    )
}

fn publish(chain: &Chain, id: &str, name: &str, version: &str) {
    publish_near_expiry(chain, id, VAULT, name, version);
}

fn versions(stack: &LocalStack, name: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
    secret_versions(stack, VAULT, name)
}

/// Whether Entra ID accepts `secret` for the application; any refusal but "invalid client secret" fails the test.
async fn signs_in(graph: &RunningGraph, app: &AppIds, secret: &str) -> bool {
    match graph.sign_in(&app.app_id, secret).await {
        Ok(_) => true,
        Err(refusal) => {
            assert!(refusal.starts_with("AADSTS7000215: "), "refused for another reason than the secret: {refusal}");
            false
        }
    }
}

fn key_ids(graph: &RunningGraph, app: &AppIds) -> Vec<String> {
    graph.passwords(&app.object_id).into_iter().map(|p| p.key_id).collect()
}

/// The one outcome about `name`, once the handler has given it.
async fn outcome_about(chain: &Chain, name: &str) -> keyturn_host::Outcome {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(answer) = chain.outcomes_about(name).into_iter().next() {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no outcome about {name} within 60 s; invocations: {:#?}\nhandler output: {:#?}",
            chain.host.invocations(),
            chain.host.output().lines().into_iter().map(|l| l.text).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_rotation_under_ten_duplicates_and_the_old_secret_works_through_the_overlap_only() {
    const NAME: &str = "kt-e2e-app-secret";
    const OVERLAP: Duration = Duration::from_secs(15);
    bounded(Duration::from_secs(180), async {
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        let (graph, app, first) = graph(&stack).await;
        let mut settings = settings(&stack, &graph, &app, NAME, dir.path());
        // Real notification channels (signed webhook, Slack, Teams), whose messages join the leak scan.
        let sink = http_sink().await;
        settings.push(("KEYTURN_NOTIFY".to_owned(), sink.channels()));
        let v0 = seed(&stack, NAME, &app, &first, &format!("PT{}S", OVERLAP.as_secs()));
        let chain =
            Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;
        grant_handler(&chain, &graph, &app);

        // Ten deliveries of one event at the same moment, each its own invocation of the one handler process.
        for _ in 0..10 {
            publish(&chain, "entra-duplicates", NAME, &v0);
        }
        wait_for("an answer to every delivery", Duration::from_secs(90), || chain.outcomes().len() >= 10).await;
        assert!(chain.stack.grid().settled(Duration::from_secs(90)).await);
        assert!(chain.stack.grid().dead_letters().is_empty());
        let all = versions(&chain.stack, NAME);
        assert_eq!(all.len(), 2, "one rotation in all");
        let (v1, second, v1_tags) = all[1].clone();
        let outcomes = chain.outcomes();
        let rotated = outcomes
            .iter()
            .filter(|o| {
                (o.status, o.action.as_deref(), o.version_after.as_deref())
                    == (Status::Done, Some("rotated"), Some(v1.as_str()))
            })
            .count();
        let already = outcomes
            .iter()
            .filter(|o| (o.status, o.action.as_deref()) == (Status::Skipped, Some("already-rotated")))
            .count();
        assert_eq!((rotated, rotated + already), (1, outcomes.len()), "{outcomes:#?}");
        assert_eq!(graph.calls(), (1, 0), "one addPassword, nothing removed within the overlap");
        assert_eq!(v1_tags["CredentialId"], key_ids(&graph, &app)[1]);
        assert_eq!(v1_tags["KeyturnPreviousCredential"], first.key_id);
        assert!(signs_in(&graph, &app, &second).await, "the new secret signs in");
        assert!(signs_in(&graph, &app, &first.secret_text).await, "the old secret keeps working through the overlap");

        // After the overlap, the next rotation removes the first password, keeps the one it replaces, adds one.
        tokio::time::sleep(OVERLAP + Duration::from_secs(1)).await;
        assert!(signs_in(&graph, &app, &first.secret_text).await, "nothing removed the old secret on its own");
        publish(&chain, "entra-next", NAME, &v1);
        wait_for("the next rotation", Duration::from_secs(60), || versions(&chain.stack, NAME).len() == 3).await;
        assert!(chain.stack.grid().settled(Duration::from_secs(60)).await);
        let third = versions(&chain.stack, NAME)[2].1.clone();
        assert_eq!(graph.calls(), (2, 1));
        assert!(!signs_in(&graph, &app, &first.secret_text).await, "the old secret stops after its overlap");
        assert!(signs_in(&graph, &app, &second).await, "the replaced secret works through its own overlap");
        assert!(signs_in(&graph, &app, &third).await);

        chain.assert_notified_without_values(&sink, 2, &[VAULT]).await;
        chain.shutdown().await;
        graph.shutdown().await;
    })
    .await;
}

/// `keyturn rollback` (the real CLI, as a Key Vault Secrets Officer) within the overlap: the previous password is
/// still on the application, so it is written back as a new version, and it signs in.
#[tokio::test]
async fn a_rollback_within_the_overlap_restores_the_previous_password_which_still_signs_in() {
    const NAME: &str = "kt-e2e-app-rollback";
    bounded(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        stack.emulator().grant_system_identity("Key Vault Secrets Officer").unwrap();
        let (graph, app, first) = graph(&stack).await;
        let settings = settings(&stack, &graph, &app, NAME, dir.path());
        let v0 = seed(&stack, NAME, &app, &first, "P7D");
        let chain =
            Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings.clone())
                .await;
        grant_handler(&chain, &graph, &app);
        publish(&chain, "entra-rollback", NAME, &v0);
        wait_for("the rotation", Duration::from_secs(60), || versions(&chain.stack, NAME).len() == 2).await;
        let (v1, second, _) = versions(&chain.stack, NAME)[1].clone();

        let run = keyturn(&["rollback", &format!("{VAULT}/{NAME}")], &settings).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains(&format!("the value of {v0} (replacing {v1})")), "{run:?}");
        let (_, restored, restored_tags) = versions(&chain.stack, NAME).pop().unwrap();
        assert_eq!(restored, first.secret_text, "the password the rotation replaced");
        assert!(signs_in(&graph, &app, &restored).await, "the restored secret signs in");
        assert!(signs_in(&graph, &app, &second).await, "the rotation's password is not removed by a rollback");
        assert_eq!(restored_tags.get("KeyturnRollbackOf"), Some(&v0));
        assert_eq!(restored_tags.get("KeyturnRolledBackFrom"), Some(&v1));
        assert_eq!(graph.calls(), (1, 0), "one addPassword by the rotation; the rollback calls nothing");
        for secret in [&first.secret_text, &second] {
            assert!(!run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()), "no value printed");
        }
        chain.shutdown().await;
        graph.shutdown().await;
    })
    .await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KilledAfter {
    AddPassword,
    PendingStored,
    Promoted,
}

#[tokio::test]
async fn a_rotation_killed_after_each_step_converges_with_exactly_one_new_password() {
    bounded(Duration::from_secs(300), async {
        let dir = tempfile::tempdir().unwrap();
        for step in [KilledAfter::AddPassword, KilledAfter::PendingStored, KilledAfter::Promoted] {
            // A chain per kill: like the real host, the stand-in stops after a handler's third crash in 30 minutes.
            // Event Grid at half of real time: its first retry comes 5 s after the failed attempt, by when a held
            // write has landed or died with its connection.
            let stack = LocalStack::start(
                KeyVaultEmulator::builder().vault(VAULT),
                EventGridOptions { time_scale: 0.5, ..EventGridOptions::default() },
            )
            .await
            .unwrap();
            let name = format!("kt-e2e-kill-{}", format!("{step:?}").to_ascii_lowercase());
            let home = format!("{name}{PENDING_SUFFIX}");
            let (graph, app, first) = graph(&stack).await;
            let settings = settings(&stack, &graph, &app, &name, dir.path());
            let v0 = seed(&stack, &name, &app, &first, "PT1H");
            let chain =
                Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;
            grant_handler(&chain, &graph, &app);
            let emulator = chain.stack.emulator();
            match step {
                KilledAfter::AddPassword => graph.delay_answers(HOLD * 4),
                KilledAfter::PendingStored | KilledAfter::Promoted => emulator.set_faults(
                    Faults::none()
                        .with(OperationKind::SecretCreate, FaultRule { latency: HOLD, ..FaultRule::default() }),
                ),
            }
            let pid = chain.host.worker_pid().expect("the handler is running");
            publish(&chain, &format!("kill-after-{step:?}"), &name, &v0);

            // Wait until the handler is held right after the step, and kill it there.
            let pending_for_v0 = || {
                versions(&chain.stack, &home)
                    .last()
                    .is_some_and(|(_, _, tags)| tags.get("KeyturnPendingFor") == Some(&v0))
            };
            match step {
                KilledAfter::AddPassword => {
                    wait_for("addPassword", Duration::from_secs(30), || graph.calls().0 == 1).await;
                    assert!(!pending_for_v0(), "the secret must not have reached the pending home");
                }
                KilledAfter::PendingStored => {
                    wait_for("the pending value", Duration::from_secs(30), pending_for_v0).await;
                    // Reading the passwords to test the new one takes milliseconds; the promotion write then waits.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    assert_eq!(versions(&chain.stack, &name).len(), 1, "killed before the promotion landed");
                }
                KilledAfter::Promoted => {
                    wait_for("the promotion", Duration::from_secs(30), || versions(&chain.stack, &name).len() == 2)
                        .await;
                    let state = versions(&chain.stack, &home).last().unwrap().2.get("KeyturnPendingState").cloned();
                    assert_eq!(
                        state.as_deref(),
                        Some("pending"),
                        "the kill must land before the pending home is marked"
                    );
                }
            }
            assert_eq!(chain.host.worker_pid(), Some(pid), "{step:?}: the handler restarted before the kill");
            sigkill(pid);
            graph.delay_answers(Duration::ZERO);
            emulator.set_faults(Faults::none());

            // Event Grid redelivers to the restarted handler, which finishes the rotation or finds it done.
            let answer = outcome_about(&chain, &name).await;
            assert!(chain.stack.grid().settled(Duration::from_secs(60)).await);
            assert!(chain.stack.grid().dead_letters().is_empty());
            let all = versions(&chain.stack, &name);
            assert_eq!(all.len(), 2, "{step:?}: one new version in all");
            let (latest, value, latest_tags) = all[1].clone();
            let done = (answer.status, answer.action.as_deref());
            match step {
                KilledAfter::AddPassword => assert_eq!(done, (Status::Done, Some("rotated")), "{answer:#?}"),
                // The held promotion write either reached the vault or died with its connection.
                KilledAfter::PendingStored => assert!(
                    done == (Status::Done, Some("rotated")) || done == (Status::Skipped, Some("already-rotated")),
                    "{answer:#?}"
                ),
                KilledAfter::Promoted => assert_eq!(done, (Status::Skipped, Some("already-rotated")), "{answer:#?}"),
            }
            assert_eq!(latest_tags.get("KeyturnRotatedFrom"), Some(&v0), "{latest}");

            // Exactly one new password: the first one and the vault's; both sign in (the overlap is an hour).
            let new_key = latest_tags["CredentialId"].clone();
            assert_eq!(key_ids(&graph, &app), [first.key_id.clone(), new_key], "{step:?}");
            let expected_calls = if step == KilledAfter::AddPassword { (2, 1) } else { (1, 0) };
            assert_eq!(graph.calls(), expected_calls, "{step:?}: (addPassword, removePassword) calls");
            assert!(signs_in(&graph, &app, &value).await, "{step:?}: the vault's latest value does not sign in");
            assert!(signs_in(&graph, &app, &first.secret_text).await, "{step:?}: the old secret within its overlap");
            let killed = chain.host.invocations().into_iter().filter(|r| r.subject.as_deref() == Some(&name)).count();
            assert!(killed >= 2, "{step:?}: the killed invocation and the redelivery: {killed}");

            assert_no_value_in(&chain.everything_recorded(), &all_secret_values(&chain.stack, &[VAULT]));
            chain.shutdown().await;
            graph.shutdown().await;
        }
    })
    .await;
}
