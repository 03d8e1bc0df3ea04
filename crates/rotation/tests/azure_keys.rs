//! The `azure-key` provider end to end for every resource type of the family: the engine in a handler-like child
//! process, the SDK-backed vault and the hand-written Resource Manager client (managed identity tokens from the
//! local identity endpoint), against the Key Vault emulator and the ARM emulator (crates/local/src/arm/), which
//! answers each type in its service's shapes (Cosmos DB's regeneration a long-running operation).
//!
//! For each type: a rotation regenerates the key the secret does not hold, stores it and switches `CredentialId`;
//! a handler killed after the regeneration, before the promotion, is replayed with exactly one regeneration.
//! The ARM emulator enforces role assignments: the identity holds infra/roles.json's `keyturn key operator` on each
//! bound resource but one, whose rotation fails permanently naming the role.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use keyturn_local::arm::ArmEmulator;
use keyturn_rotation::provider::Provider;
use keyturn_rotation::{Engine, InProcessLock, RotationOutcome};
use keyturn_vault::KeyVault;
use support::{Parent, SCENARIO, Step, VAULT, event, new_secret, rotate_until_crash, tags};

const TEST: &str = "every_type_of_the_azure_key_family";
const BOUND: Duration = Duration::from_secs(60);
const RG: &str = "/subscriptions/0000/resourceGroups/rg-family/providers";

/// `(secret name, resource id under RG, the CredentialId the secret holds, the key a rotation regenerates)`.
const CASES: [(&str, &str, &str, &str); 9] = [
    ("storage", "Microsoft.Storage/storageAccounts/famstore", "key2", "key1"),
    ("cosmos", "Microsoft.DocumentDB/databaseAccounts/famcosmos", "primary", "secondary"),
    ("cosmos-ro", "Microsoft.DocumentDB/databaseAccounts/famcosmosro", "secondaryReadonly", "primaryReadonly"),
    ("redis", "Microsoft.Cache/redis/famredis", "primary", "secondary"),
    ("bus", "Microsoft.ServiceBus/namespaces/fambus/authorizationRules/send", "secondary", "primary"),
    (
        "bus-queue",
        "Microsoft.ServiceBus/namespaces/fambus/queues/orders/authorizationRules/listen",
        "primary",
        "secondary",
    ),
    ("hub", "Microsoft.EventHub/namespaces/famhub/eventhubs/telemetry/authorizationRules/send", "primary", "secondary"),
    ("openai", "Microsoft.CognitiveServices/accounts/famopenai", "key1", "key2"),
    ("search", "Microsoft.Search/searchServices/famsearch", "primary", "secondary"),
];
/// A Cosmos DB account the identity could manage, bound to another vault only.
const VICTIM: &str = "Microsoft.DocumentDB/databaseAccounts/victim";
/// A Redis cache bound to the vault, on which the identity holds no role.
const NO_ROLE: &str = "Microsoft.Cache/redis/famnorole";

fn id(resource: &str) -> String {
    format!("{RG}/{resource}")
}

fn policy(resource: &str, credential_id: &str) -> keyturn_vault::model::Tags {
    tags(&[
        ("KeyturnRotation", "azure-key"),
        ("ValidityPeriodDays", "60"),
        ("CredentialId", credential_id),
        ("ProviderAddress", &id(resource)),
    ])
}

/// The child: each case rotated once, and once more through a crash after the regeneration and a replay.
async fn scenario() {
    let bound: Vec<String> = CASES.iter().map(|(_, resource, _, _)| id(resource)).collect();
    let settings = support::child_settings(&[(
        "KEYTURN_AZURE_KEY_RESOURCES",
        format!("{VAULT}={},{};other-vault={}", bound.join(","), id(NO_ROLE), id(VICTIM)),
    )]);
    let (vault, providers) = support::vault_and_providers(&settings);
    let provider: Arc<dyn Provider> = providers.get("azure-key").unwrap().clone();
    let engine = Engine::new(vault.clone(), Arc::new(InProcessLock::default()), providers);
    let rotate = |name: String, version: String| {
        let engine = engine.clone();
        async move { tokio::time::timeout(BOUND, engine.rotate(&event(&name, &version))).await.unwrap() }
    };

    for (name, resource, held, other) in CASES {
        // A rotation: the other key regenerated, stored, CredentialId switched (the parent checks the values).
        let v0 = vault.set_secret(VAULT, name, new_secret("seeded", policy(resource, held))).await.unwrap().version;
        let rotated = rotate(name.to_owned(), v0.clone()).await.unwrap();
        assert!(matches!(&rotated, RotationOutcome::Rotated { from, .. } if from == &v0), "{name}: {rotated}");
        let latest = vault.latest_secret(VAULT, name).await.unwrap();
        assert_eq!(latest.properties.tags["CredentialId"], other, "{name}");

        // Killed after the regeneration, before the promotion; the replay takes the key the crashed attempt made.
        let crash = format!("{name}-crash");
        let c0 = vault.set_secret(VAULT, &crash, new_secret("seeded", policy(resource, other))).await.unwrap().version;
        tokio::time::timeout(
            BOUND,
            rotate_until_crash(vault.clone(), provider.clone(), Step::Create, &event(&crash, &c0)),
        )
        .await
        .unwrap();
        assert_eq!(vault.latest_secret(VAULT, &crash).await.unwrap().properties.version, c0, "{crash}: not promoted");
        let replay = rotate(crash.clone(), c0.clone()).await.unwrap();
        assert!(matches!(replay, RotationOutcome::Rotated { .. }), "{crash}: {replay}");
        assert_eq!(vault.latest_secret(VAULT, &crash).await.unwrap().properties.tags["CredentialId"], held);
    }

    // A tag naming a key the type does not have, and a resource bound to another vault: refused, nothing stored.
    let (_, cosmos, _, _) = CASES[1];
    for (name, tags, says) in [
        ("bad-key", policy(cosmos, "key1"), "one of primary, secondary, primaryReadonly, secondaryReadonly"),
        ("stolen", policy(VICTIM, "primary"), "is not bound to secret 'stolen'"),
        // Resource Manager's 403: permanent, naming the role the deployment assigns.
        ("no-role", policy(NO_ROLE, "primary"), "403 AuthorizationFailed): this handler's identity holds no role"),
        ("no-role-named", policy(NO_ROLE, "primary"), "Assign it the 'keyturn key operator' role"),
    ] {
        let s0 = vault.set_secret(VAULT, name, new_secret("mine", tags)).await.unwrap().version;
        let error = rotate(name.to_owned(), s0.clone()).await.unwrap_err();
        assert!(!error.is_retryable() && error.to_string().contains(says), "{name}: {error}");
        assert_eq!(vault.latest_secret(VAULT, name).await.unwrap().properties.version, s0);
    }
}

#[tokio::test]
async fn every_type_of_the_azure_key_family() {
    match std::env::var(SCENARIO).as_deref() {
        Ok("family") => return scenario().await,
        Ok(other) => panic!("unknown scenario {other}"),
        Err(_) => {}
    }
    let parent = Parent::start().await;
    let mut builder = ArmEmulator::builder().resource(id(VICTIM)).resource(id(NO_ROLE));
    for (_, resource, _, _) in CASES {
        builder = builder.resource(id(resource));
    }
    let arm = builder.start(parent.kv.token_registry().unwrap()).await.unwrap();
    // The child runs as the system-assigned identity: the key operator role on every bound resource but NO_ROLE
    // (the victim's included, as a deployment binding it to another vault grants it: the binding must refuse it).
    let system = parent.kv.identities().system().object_id;
    for resource in CASES.iter().map(|(_, r, _, _)| *r).chain([VICTIM]) {
        arm.assign_role(&system, "keyturn key operator", &id(resource)).unwrap();
    }
    let held_before: Vec<String> = CASES.iter().map(|(_, r, held, _)| arm.key(&id(r), held).unwrap()).collect();
    let victim: Vec<String> = ["primary", "secondary"].iter().map(|k| arm.key(&id(VICTIM), k).unwrap()).collect();
    parent
        .run_child(TEST, "family", &[arm.ca_pem().to_owned()], &[("KEYTURN_ARM_ENDPOINT", arm.url().to_owned())])
        .await;

    let stored = |name: &str| parent.kv.store().get_secret(VAULT, name, None).unwrap().version.data.value.clone();
    for ((name, resource, held, other), held_before) in CASES.iter().zip(held_before) {
        let resource = id(resource);
        // The rotation regenerated `other` once; the crash and its replay regenerated `held` once (that secret
        // held `other`): one credential change each, and each vault holds the key the resource has now.
        assert_eq!(arm.regenerations(&resource, other), Some(1), "{name}: {other}");
        assert_eq!(arm.regenerations(&resource, held), Some(1), "{name}: {held}");
        assert_eq!(stored(name), arm.key(&resource, other).unwrap(), "{name}");
        assert_eq!(stored(&format!("{name}-crash")), arm.key(&resource, held).unwrap(), "{name}-crash");
        assert_ne!(arm.key(&resource, held).unwrap(), held_before, "{name}");
    }
    // The cache without the role: its keys never regenerated.
    assert_eq!(arm.regenerations(&id(NO_ROLE), "primary"), Some(0));
    assert_eq!(arm.regenerations(&id(NO_ROLE), "secondary"), Some(0));
    // The unbound account: never regenerated, its keys unchanged.
    assert_eq!(arm.regenerations(&id(VICTIM), "primary"), Some(0));
    let after: Vec<String> = ["primary", "secondary"].iter().map(|k| arm.key(&id(VICTIM), k).unwrap()).collect();
    assert_eq!(after, victim);
    arm.shutdown().await;
    parent.stop().await;
}
