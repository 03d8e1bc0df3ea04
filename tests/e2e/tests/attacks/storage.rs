//! The Azure key family's attack through the real `near-expiry` binary, against the local stack's Resource
//! Manager emulator (crates/local/src/arm/): a secret's writer names, in `ProviderAddress`, an account the
//! handler's identity could manage but that no `KEYTURN_STORAGE_ACCOUNTS` (or `KEYTURN_AZURE_KEY_RESOURCES`)
//! entry binds to their secret, with `storage-account-key` and with `azure-key` (a Cosmos DB account).
//! Refused before Resource Manager is called: the accounts' keys are unchanged and were never regenerated.
//! Beside it, the writer's own `app-*` secret rotates its bound account's key.

use std::time::Duration;

use keyturn_e2e::receivers::http_sink;
use keyturn_e2e::{Chain, NEAR_EXPIRY_EVENT_TYPES, bounded, fast_retries, fast_stack, workspace_binary};
use keyturn_local::arm::ArmEmulator;

use crate::{assert_refused, near_expiry, seed_for_a_year};

const VAULT: &str = "kv-atk";
const BOUND: &str = "/subscriptions/0000/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/appdata";
/// Another team's account: the identity could regenerate its keys, but nothing binds it to this vault.
const VICTIM: &str = "/subscriptions/0000/resourceGroups/rg-other/providers/Microsoft.Storage/storageAccounts/payroll";
/// Another team's Cosmos DB account, named through the family's provider.
const COSMOS_VICTIM: &str =
    "/subscriptions/0000/resourceGroups/rg-other/providers/Microsoft.DocumentDB/databaseAccounts/ledger";

fn policy(account: &str) -> Vec<(&str, &str)> {
    vec![
        ("KeyturnRotation", "storage-account-key"),
        ("ValidityPeriodDays", "60"),
        ("CredentialId", "key1"),
        ("ProviderAddress", account),
    ]
}

#[tokio::test]
async fn a_secret_writer_cannot_rotate_the_keys_of_an_account_not_bound_to_their_secret() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        let arm = ArmEmulator::builder()
            .assignments(stack.emulator().arm_assignments().clone())
            .storage_account(BOUND)
            .storage_account(VICTIM)
            .resource(COSMOS_VICTIM)
            .ca_dir(dir.path().join("arm"))
            .start(stack.emulator().token_registry().unwrap())
            .await
            .unwrap();
        let bundle = dir.path().join("ca-bundle.pem");
        std::fs::write(&bundle, format!("{}\n{}", stack.emulator().ca_pem(), arm.ca_pem())).unwrap();
        let mut settings: Vec<(String, String)> =
            stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
        settings.push(("KEYTURN_CA_FILE".to_owned(), bundle.display().to_string()));
        settings.push(("KEYTURN_ARM_ENDPOINT".to_owned(), arm.url().to_owned()));
        settings.push(("KEYTURN_STORAGE_ACCOUNTS".to_owned(), format!("{VAULT}/app-*={BOUND}")));
        settings.push(("KEYTURN_NOTIFY".to_owned(), sink.channels()));
        settings.extend(fast_retries());
        let victim_keys = (arm.key(VICTIM, "key1").unwrap(), arm.key(VICTIM, "key2").unwrap());
        let own_key1 = arm.key(BOUND, "key1").unwrap();
        let cosmos_keys = (arm.key(COSMOS_VICTIM, "primary").unwrap(), arm.key(COSMOS_VICTIM, "secondary").unwrap());

        let chain =
            Chain::start(stack, "near-expiry", &workspace_binary("near-expiry"), &NEAR_EXPIRY_EVENT_TYPES, settings)
                .await;
        // The attacker's own secret, naming the victim's account (the value: whatever they like).
        let attack = seed_for_a_year(&chain.stack, VAULT, "atk-keys", "writer-chosen-value-0001", &policy(VICTIM));
        // An app-* name the binding covers, but an account bound to nothing here: still refused.
        let attack_named =
            seed_for_a_year(&chain.stack, VAULT, "app-steal", "writer-chosen-value-0002", &policy(VICTIM));
        let own = seed_for_a_year(&chain.stack, VAULT, "app-keys", &own_key1, &policy(BOUND));
        // The family's name for the provider, naming another team's Cosmos DB account.
        let cosmos_policy = [
            ("KeyturnRotation", "azure-key"),
            ("ValidityPeriodDays", "60"),
            ("CredentialId", "primary"),
            ("ProviderAddress", COSMOS_VICTIM),
        ];
        let attack_cosmos =
            seed_for_a_year(&chain.stack, VAULT, "app-cosmos", "writer-chosen-value-0003", &cosmos_policy);
        near_expiry(&chain, VAULT, "atk-keys", &attack);
        near_expiry(&chain, VAULT, "app-steal", &attack_named);
        near_expiry(&chain, VAULT, "app-keys", &own);
        near_expiry(&chain, VAULT, "app-cosmos", &attack_cosmos);
        chain.settle(4, Duration::from_secs(60)).await;

        for name in ["atk-keys", "app-steal", "app-cosmos"] {
            assert_refused(&chain, &sink, VAULT, name, &["is not bound to secret", "KEYTURN_STORAGE_ACCOUNTS"]);
        }
        // Nothing outside the attacker's secrets changed: the victim's keys, never regenerated.
        assert_eq!((arm.key(VICTIM, "key1").unwrap(), arm.key(VICTIM, "key2").unwrap()), victim_keys);
        assert_eq!((arm.regenerations(VICTIM, "key1"), arm.regenerations(VICTIM, "key2")), (Some(0), Some(0)));
        assert_eq!(
            (arm.key(COSMOS_VICTIM, "primary").unwrap(), arm.key(COSMOS_VICTIM, "secondary").unwrap()),
            cosmos_keys
        );
        assert_eq!(arm.lists(COSMOS_VICTIM), Some(0), "Resource Manager was not even asked for the Cosmos DB keys");
        let store = chain.stack.emulator().store();
        for name in ["atk-keys", "app-steal", "app-cosmos"] {
            assert_eq!(store.list_secret_versions(VAULT, name).unwrap().len(), 1, "{name} got no new version");
        }

        // The legitimate path beside it: the bound account's other key is regenerated and stored.
        assert_eq!((arm.regenerations(BOUND, "key1"), arm.regenerations(BOUND, "key2")), (Some(0), Some(1)));
        let latest = store.get_secret(VAULT, "app-keys", None).unwrap().version;
        assert_eq!(latest.data.value, arm.key(BOUND, "key2").unwrap());
        assert_eq!(latest.tags.get("CredentialId").map(String::as_str), Some("key2"));

        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
        arm.shutdown().await;
    })
    .await;
}
