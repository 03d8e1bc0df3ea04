//! The `azure-key` provider through the REAL `near-expiry` binary behind the Functions host stand-in, against the
//! ARM emulator (crates/local/src/arm/), for every resource type of its table: a storage account, a Cosmos DB
//! account (whose regeneration is a long-running operation), Azure Cache for Redis, Service Bus and Event Hubs
//! authorization rules (`regenerateKeys`), an Azure AI services account and an Azure AI Search service.
//!
//! Ten concurrent duplicate deliveries make one regeneration, for each type. The handler is SIGKILLed after each step of a
//! rotation in turn, and Event Grid's redelivery must converge with exactly one key changed, the vault holding it.
//! The kill test runs on a Cosmos DB account and a Service Bus rule: one long-running and one immediate
//! regeneration, the two ways the table's types answer. Each kill point is made deterministic by holding the handler in what follows the step:
//!
//! | killed | held in | how |
//! |---|---|---|
//! | while recording the key it is about to replace (nothing regenerated yet) | that vault write | the vault delays every secret write by 2 s |
//! | after the regeneration, before the promotion | Resource Manager's answer | the emulator holds its answers |
//! | after the promotion, before the pending home is marked | that vault write | the same vault delay |
//!
//! The ARM emulator enforces infra/roles.json: the handler's identity holds `keyturn key operator` on each resource
//! its deployment binds; a resource it holds no role on is refused with ARM's 403, a permanent rejection naming the
//! role.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use keyturn_e2e::receivers::http_sink;
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, all_secret_values, assert_no_value_in, bounded, deployment_of, fast_retries,
    fast_stack, publish_near_expiry, secret_versions, seed_secret, sigkill, tags, wait_for, workspace_binary,
};
use keyturn_host::Status;
use keyturn_local::arm::{ArmEmulator, RunningArm};
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::keyvault::{FaultRule, Faults, KeyVaultEmulator, OperationKind};
use keyturn_local::stack::LocalStack;

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-keys";
const PENDING_SUFFIX: &str = "-keyturn-pending";
const COSMOS: &str = "/subscriptions/0000/resourceGroups/rg-e2e/providers/Microsoft.DocumentDB/databaseAccounts/orders";
const BUS: &str =
    "/subscriptions/0000/resourceGroups/rg-e2e/providers/Microsoft.ServiceBus/namespaces/shop/authorizationRules/send";
const STORAGE: &str = "/subscriptions/0000/resourceGroups/rg-e2e/providers/Microsoft.Storage/storageAccounts/shopdata";
const REDIS: &str = "/subscriptions/0000/resourceGroups/rg-e2e/providers/Microsoft.Cache/redis/shop-cache";
const EVENT_HUBS: &str = "/subscriptions/0000/resourceGroups/rg-e2e/providers/Microsoft.EventHub/namespaces/shop-events/authorizationRules/send";
const AI_SERVICES: &str =
    "/subscriptions/0000/resourceGroups/rg-e2e/providers/Microsoft.CognitiveServices/accounts/shop-ai";
const SEARCH: &str = "/subscriptions/0000/resourceGroups/rg-e2e/providers/Microsoft.Search/searchServices/shop-search";
/// One resource of each type: `(resource, the key the secret holds, the key a rotation regenerates)`.
const RESOURCES: [(&str, &str, &str); 7] = [
    (COSMOS, "primary", "secondary"),
    (BUS, "primary", "secondary"),
    (STORAGE, "key1", "key2"),
    (REDIS, "primary", "secondary"),
    (EVENT_HUBS, "primary", "secondary"),
    (AI_SERVICES, "key1", "key2"),
    (SEARCH, "primary", "secondary"),
];
/// The kill test's: Cosmos DB (long-running regeneration) and Service Bus (immediate).
const KILLED: [(&str, &str, &str); 2] = [RESOURCES[0], RESOURCES[1]];
/// How long the vault holds a secret write, or Resource Manager its answer, when a kill must land in one.
const HOLD: Duration = Duration::from_secs(2);

async fn arm(stack: &LocalStack) -> RunningArm {
    // The stack's Resource Manager role assignments: the handler identity's, from infra/roles.json.
    let mut builder = ArmEmulator::builder().assignments(stack.emulator().arm_assignments().clone());
    for (resource, _, _) in RESOURCES {
        builder = builder.resource(resource);
    }
    builder.start(stack.emulator().token_registry().unwrap()).await.unwrap()
}

/// The handler's settings: the stack's, a CA bundle trusting the vault and Resource Manager, its endpoint, the
/// binding of the vault's secrets to both resources, and short retries.
fn settings(stack: &LocalStack, arm: &RunningArm, dir: &std::path::Path) -> Vec<(String, String)> {
    let bundle = dir.join("ca-bundle.pem");
    std::fs::write(&bundle, format!("{}\n{}", stack.emulator().ca_pem(), arm.ca_pem())).unwrap();
    let mut settings: Vec<(String, String)> =
        stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
    settings.push(("KEYTURN_CA_FILE".to_owned(), bundle.display().to_string()));
    settings.push(("KEYTURN_ARM_ENDPOINT".to_owned(), arm.url().to_owned()));
    let bound: Vec<&str> = RESOURCES.iter().map(|(resource, _, _)| *resource).collect();
    settings.push(("KEYTURN_AZURE_KEY_RESOURCES".to_owned(), format!("{VAULT}={}", bound.join(","))));
    settings.extend(fast_retries());
    settings
}

/// Seeds the secret holding `held` of `resource`.
fn seed(stack: &LocalStack, arm: &RunningArm, name: &str, resource: &str, held: &str) -> String {
    let value = arm.key(resource, held).unwrap();
    let policy = tags(&[
        ("KeyturnRotation", "azure-key"),
        ("ValidityPeriodDays", "60"),
        ("CredentialId", held),
        ("ProviderAddress", resource),
    ]);
    seed_secret(stack, VAULT, name, &value, 365, policy)
}

fn versions(stack: &LocalStack, name: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
    secret_versions(stack, VAULT, name)
}

/// How often `resource`'s two keys were regenerated: `(the one a secret holds, the other)`.
fn regenerations(arm: &RunningArm, resource: &str) -> (u32, u32) {
    let (_, held, other) = RESOURCES.iter().find(|(r, _, _)| *r == resource).unwrap();
    (arm.regenerations(resource, held).unwrap(), arm.regenerations(resource, other).unwrap())
}

#[tokio::test]
async fn ten_concurrent_duplicates_make_one_regeneration_per_resource() {
    bounded(Duration::from_secs(180), async {
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        let arm = arm(&stack).await;
        let mut settings = settings(&stack, &arm, dir.path());
        // Real notification channels, whose messages join the leak scan.
        let sink = http_sink().await;
        settings.push(("KEYTURN_NOTIFY".to_owned(), sink.channels()));
        let seeded: Vec<(String, String)> = RESOURCES
            .iter()
            .enumerate()
            .map(|(i, (resource, held, _))| {
                let name = format!("kt-e2e-key-{i}");
                let v0 = seed(&stack, &arm, &name, resource, held);
                (name, v0)
            })
            .collect();
        let chain =
            Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;

        for (name, v0) in &seeded {
            for _ in 0..10 {
                publish_near_expiry(&chain, &format!("{name}-duplicates"), VAULT, name, v0);
            }
        }
        let deliveries = 10 * RESOURCES.len();
        wait_for("an answer to every delivery", Duration::from_secs(120), || chain.outcomes().len() >= deliveries)
            .await;
        assert!(chain.stack.grid().settled(Duration::from_secs(90)).await);
        assert!(chain.stack.grid().dead_letters().is_empty());

        for ((name, v0), (resource, held, other)) in seeded.iter().zip(RESOURCES) {
            let all = versions(&chain.stack, name);
            assert_eq!(all.len(), 2, "{name}: one rotation in all");
            let (v1, value, v1_tags) = all[1].clone();
            let outcomes = chain.outcomes_about(name);
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
            assert_eq!((rotated, rotated + already), (1, outcomes.len()), "{name}: {outcomes:#?}");
            assert_eq!(regenerations(&arm, resource), (0, 1), "{name}: one regeneration, of the key not held");
            assert_eq!(value, arm.key(resource, other).unwrap(), "{name}: the vault holds the new key");
            assert_eq!(v1_tags["CredentialId"], other);
            assert_eq!(v1_tags["KeyturnRotatedFrom"], *v0);
            // The key the previous version holds still works: the resource still has it.
            assert_eq!(all[0].1, arm.key(resource, held).unwrap(), "{name}: the previous key survives");
        }

        chain.assert_notified_without_values(&sink, RESOURCES.len(), &[VAULT]).await;
        chain.shutdown().await;
        arm.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_resource_the_identity_holds_no_role_on_is_refused_with_a_permanent_error_naming_the_role() {
    bounded(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        let arm = arm(&stack).await;
        let settings = settings(&stack, &arm, dir.path());
        // Both resources bound, but the deployment granted the role on the Cosmos DB account only (as if the rule
        // were bound by hand after the deployment ran).
        let mut deployment = deployment_of(&stack, &settings);
        assert_eq!(deployment.azure_key_resources, RESOURCES.map(|(resource, _, _)| resource.to_owned()));
        deployment.azure_key_resources.retain(|r| r == COSMOS);
        let granted = seed(&stack, &arm, "kt-e2e-role-granted", COSMOS, "primary");
        let refused = seed(&stack, &arm, "kt-e2e-role-missing", BUS, "primary");
        let chain = Chain::start_as(
            stack,
            FUNCTION,
            &workspace_binary(FUNCTION),
            &NEAR_EXPIRY_EVENT_TYPES,
            settings,
            deployment,
        )
        .await;
        publish_near_expiry(&chain, "role-granted", VAULT, "kt-e2e-role-granted", &granted);
        publish_near_expiry(&chain, "role-missing", VAULT, "kt-e2e-role-missing", &refused);
        wait_for("an answer to both deliveries", Duration::from_secs(60), || chain.outcomes().len() >= 2).await;
        assert!(chain.stack.grid().settled(Duration::from_secs(60)).await);

        let granted_outcomes = chain.outcomes_about("kt-e2e-role-granted");
        assert_eq!(granted_outcomes.len(), 1, "{granted_outcomes:#?}");
        assert_eq!(
            (granted_outcomes[0].status, granted_outcomes[0].action.as_deref()),
            (Status::Done, Some("rotated"))
        );
        assert_eq!(regenerations(&arm, COSMOS), (0, 1));

        // Refused by Resource Manager: one attempt (permanent, no redelivery), the message naming the role. (A
        // permanent error's outcome carries only its message: found by the event's subject.)
        let refused_outcomes = chain.outcomes_for_subject("kt-e2e-role-missing");
        assert_eq!(refused_outcomes.len(), 1, "a permanent error is not retried: {refused_outcomes:#?}");
        let outcome = &refused_outcomes[0];
        assert_eq!(outcome.status, Status::Rejected, "{outcome:#?}");
        for says in ["403 AuthorizationFailed", "holds no role granting it on", "'keyturn key operator' role", BUS] {
            assert!(outcome.message.contains(says), "{says}: {}", outcome.message);
        }
        assert_eq!(regenerations(&arm, BUS), (0, 0), "the rule's keys untouched");
        assert_eq!(versions(&chain.stack, "kt-e2e-role-missing").len(), 1, "nothing stored");
        assert!(chain.stack.grid().dead_letters().is_empty());
        chain.shutdown().await;
        arm.shutdown().await;
    })
    .await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KilledAfter {
    /// While the fingerprint of the key about to be replaced is being written: nothing regenerated yet.
    Recording,
    /// Resource Manager regenerated the key; the handler has not stored it.
    Regenerated,
    /// The new version is stored; the pending home is not yet marked promoted.
    Promoted,
}

#[tokio::test]
async fn a_rotation_killed_after_each_step_converges_with_exactly_one_key_change() {
    bounded(Duration::from_secs(420), async {
        let dir = tempfile::tempdir().unwrap();
        for (resource, held, other) in KILLED {
            for step in [KilledAfter::Recording, KilledAfter::Regenerated, KilledAfter::Promoted] {
                // A chain per kill: like the real host, the stand-in stops after a handler's third crash in 30
                // minutes. Event Grid at half of real time: its first retry comes 5 s after the failed attempt.
                let stack = LocalStack::start(
                    KeyVaultEmulator::builder().vault(VAULT),
                    EventGridOptions { time_scale: 0.5, ..EventGridOptions::default() },
                )
                .await
                .unwrap();
                let arm = arm(&stack).await;
                let kind = if resource == COSMOS { "cosmos" } else { "bus" };
                let name = format!("kt-e2e-kill-{kind}-{}", format!("{step:?}").to_ascii_lowercase());
                let home = format!("{name}{PENDING_SUFFIX}");
                let settings = settings(&stack, &arm, dir.path());
                let v0 = seed(&stack, &arm, &name, resource, held);
                let held_key = arm.key(resource, held).unwrap();
                let chain =
                    Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings)
                        .await;
                let emulator = chain.stack.emulator();
                let slow_writes = || {
                    Faults::none()
                        .with(OperationKind::SecretCreate, FaultRule { latency: HOLD, ..FaultRule::default() })
                };
                match step {
                    KilledAfter::Recording | KilledAfter::Promoted => emulator.set_faults(slow_writes()),
                    KilledAfter::Regenerated => arm.hold_answers(HOLD),
                }
                let pid = chain.host.worker_pid().expect("the handler is running");
                publish_near_expiry(&chain, &format!("kill-after-{kind}-{step:?}"), VAULT, &name, &v0);

                match step {
                    KilledAfter::Recording => {
                        wait_for("the key list", Duration::from_secs(30), || arm.lists(resource) == Some(1)).await;
                        // The fingerprint write follows at once and is held for HOLD.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        assert_eq!(regenerations(&arm, resource), (0, 0), "killed before the regeneration");
                    }
                    KilledAfter::Regenerated => {
                        wait_for("the regeneration", Duration::from_secs(30), || {
                            regenerations(&arm, resource) == (0, 1)
                        })
                        .await;
                        assert_eq!(versions(&chain.stack, &name).len(), 1, "killed before the promotion");
                    }
                    KilledAfter::Promoted => {
                        wait_for("the promotion", Duration::from_secs(30), || versions(&chain.stack, &name).len() == 2)
                            .await;
                        let state = versions(&chain.stack, &home).last().unwrap().2.get("KeyturnPendingState").cloned();
                        assert_eq!(state.as_deref(), Some("pending"), "the kill must land before the home is marked");
                    }
                }
                assert_eq!(chain.host.worker_pid(), Some(pid), "{step:?}: the handler restarted before the kill");
                sigkill(pid);
                arm.hold_answers(Duration::ZERO);
                emulator.set_faults(Faults::none());

                // Event Grid redelivers to the restarted handler, which finishes the rotation or finds it done.
                wait_for("an answer after the kill", Duration::from_secs(60), || {
                    !chain.outcomes_about(&name).is_empty()
                })
                .await;
                assert!(chain.stack.grid().settled(Duration::from_secs(60)).await);
                assert!(chain.stack.grid().dead_letters().is_empty());
                let all = versions(&chain.stack, &name);
                assert_eq!(all.len(), 2, "{kind} {step:?}: one new version in all");
                let (_, value, latest_tags) = all[1].clone();
                assert_eq!(latest_tags.get("KeyturnRotatedFrom"), Some(&v0));
                assert_eq!(latest_tags["CredentialId"], other);
                // Exactly one key change, the key not held; the vault holds the resource's key, the old one works.
                assert_eq!(regenerations(&arm, resource), (0, 1), "{kind} {step:?}: one regeneration in all");
                assert_eq!(value, arm.key(resource, other).unwrap(), "{kind} {step:?}: the vault holds the key");
                assert_eq!(arm.key(resource, held).unwrap(), held_key, "{kind} {step:?}: the held key unchanged");
                let answers = chain.outcomes_about(&name);
                assert!(
                    answers.iter().any(|o| (o.status, o.action.as_deref()) == (Status::Done, Some("rotated")))
                        || step == KilledAfter::Promoted,
                    "{kind} {step:?}: {answers:#?}"
                );

                assert_no_value_in(&chain.everything_recorded(), &all_secret_values(&chain.stack, &[VAULT]));
                chain.shutdown().await;
                arm.shutdown().await;
            }
        }
    })
    .await;
}
