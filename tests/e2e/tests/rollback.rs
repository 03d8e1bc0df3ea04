//! `keyturn rollback` end to end: a secret rotated by the REAL `near-expiry` binary behind the Functions host
//! stand-in, then rolled back by the REAL `keyturn` binary through the Azure SDK against the Key Vault emulator,
//! as a person holding Key Vault Secrets Officer (the stack's system identity, granted it).
//!
//! - storage-account-key (ARM emulator): the rolled-back version holds key1 again, which the account still has,
//!   with `CredentialId=key1`; the next rotation regenerates key2 (the key that broke things), never key1.
//! - postgres-alternating and mysql-alternating (real PostgreSQL and MariaDB, `KEYTURN_TEST_PG_*` and
//!   `KEYTURN_TEST_MYSQL_*`; without them these tests fail, never skip): the rolled-back version's login still
//!   works.
//! - postgres and mysql (single user): refused, saying why; nothing is written.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Deref;
use std::time::Duration;

use keyturn_e2e::database::{DbServer, TestServer};
use keyturn_e2e::mysql::MySqlServer;
use keyturn_e2e::postgres::PgServer;
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, bounded, fast_retries, fast_stack, handler_env_trusting, keyturn,
    publish_near_expiry, secret_versions, seed_secret, tags, wait_for, workspace_binary,
};
use keyturn_local::arm::ArmEmulator;
use keyturn_local::stack::LocalStack;

const VAULT: &str = "kv-rb";
const ACCOUNT: &str = "/subscriptions/0000/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/appdata";

/// The stack's settings, trusting `extra_ca` too, with `bindings`.
fn settings(
    stack: &LocalStack,
    dir: &std::path::Path,
    extra_ca: &str,
    bindings: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut settings = handler_env_trusting(stack, dir, extra_ca);
    settings.extend(bindings.iter().map(|(name, value)| ((*name).to_owned(), value.clone())));
    settings.extend(fast_retries());
    settings
}

/// The real `near-expiry` binary behind the stand-in, with `settings`.
async fn near_expiry(stack: LocalStack, settings: &[(String, String)]) -> Chain {
    Chain::start(stack, "near-expiry", &workspace_binary("near-expiry"), &NEAR_EXPIRY_EVENT_TYPES, settings.to_vec())
        .await
}

/// Rotates `name` once through the chain (a near-expiry event for `version`) and waits for the new version.
async fn rotate(chain: &Chain, name: &str, version: &str, id: &str) {
    let before = secret_versions(&chain.stack, VAULT, name).len();
    publish_near_expiry(chain, id, VAULT, name, version);
    wait_for("the rotation", Duration::from_secs(60), || secret_versions(&chain.stack, VAULT, name).len() > before)
        .await;
}

/// `keyturn rollback <vault>/<name>` as the person at the terminal (the stack's system identity).
async fn rollback(settings: &[(String, String)], name: &str) -> keyturn_e2e::KeyturnRun {
    keyturn(&["rollback", &format!("{VAULT}/{name}")], settings).await
}

#[tokio::test]
async fn a_storage_key_rollback_restores_the_key_the_account_still_has_and_the_next_rotation_replaces_the_other() {
    bounded(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        stack.emulator().grant_system_identity("Key Vault Secrets Officer").unwrap();
        let arm = ArmEmulator::builder()
            .assignments(stack.emulator().arm_assignments().clone())
            .storage_account(ACCOUNT)
            .ca_dir(dir.path().join("arm"))
            .start(stack.emulator().token_registry().unwrap())
            .await
            .unwrap();
        let settings = settings(
            &stack,
            dir.path(),
            arm.ca_pem(),
            &[
                ("KEYTURN_ARM_ENDPOINT", arm.url().to_owned()),
                ("KEYTURN_STORAGE_ACCOUNTS", format!("{VAULT}={ACCOUNT}")),
            ],
        );
        let key1 = arm.key(ACCOUNT, "key1").unwrap();
        let policy = tags(&[
            ("KeyturnRotation", "storage-account-key"),
            ("ValidityPeriodDays", "60"),
            ("CredentialId", "key1"),
            ("ProviderAddress", ACCOUNT),
        ]);
        let v0 = seed_secret(&stack, VAULT, "app-storage", &key1, 365, policy);
        let chain = near_expiry(stack, &settings).await;
        rotate(&chain, "app-storage", &v0, "rotate-1").await;
        let v1 = secret_versions(&chain.stack, VAULT, "app-storage").pop().unwrap().0;

        let run = rollback(&settings, "app-storage").await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains(&format!("the value of {v0} (replacing {v1})")), "{run:?}");
        let (v2, value, restored) = secret_versions(&chain.stack, VAULT, "app-storage").pop().unwrap();
        assert_eq!(value, arm.key(ACCOUNT, "key1").unwrap(), "key1, which the account still accepts");
        assert_eq!(value, key1, "key1 was never regenerated");
        assert_eq!(restored.get("CredentialId").map(String::as_str), Some("key1"));
        assert_eq!(restored.get("KeyturnRolledBackFrom"), Some(&v1));
        assert_eq!(restored.get("KeyturnRollbackOf"), Some(&v0));
        assert!(!run.stdout.contains(&key1) && !run.stderr.contains(&key1), "no value printed");

        // The next rotation regenerates key2 (the rolled-back key) again, and never key1.
        rotate(&chain, "app-storage", &v2, "rotate-2").await;
        assert_eq!((arm.regenerations(ACCOUNT, "key1"), arm.regenerations(ACCOUNT, "key2")), (Some(0), Some(2)));
        let (_, value, latest) = secret_versions(&chain.stack, VAULT, "app-storage").pop().unwrap();
        assert_eq!(
            (value, latest.get("CredentialId").map(String::as_str)),
            (arm.key(ACCOUNT, "key2").unwrap(), Some("key2"))
        );
        chain.shutdown().await;
        arm.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_alternating_postgres_rollback_restores_a_login_that_works_and_single_user_is_refused() {
    // A PostgreSQL login changes its own password; a MySQL one is changed by the admin (providers.md).
    alternating_rollback_works_and_single_user_is_refused(&PgServer::from_env(), "postgres", "KEYTURN_POSTGRES", false)
        .await;
}

#[tokio::test]
async fn an_alternating_mysql_rollback_restores_a_login_that_works_and_single_user_is_refused() {
    alternating_rollback_works_and_single_user_is_refused(&MySqlServer::from_env(), "mysql", "KEYTURN_MYSQL", true)
        .await;
}

/// The database providers' rollback: `<provider>-alternating` rolls back to the base login, which works;
/// `<provider>` (single user) is refused, nothing written, since its previous password is dead. `bindings` is the
/// prefix of the deployment's `_SERVERS` and `_ADMINS` settings; `single_by_admin`, whether the single-user
/// provider changes the password through the admin login (MySQL) rather than the login's own (PostgreSQL).
async fn alternating_rollback_works_and_single_user_is_refused<S>(
    server: &S,
    provider: &str,
    bindings: &str,
    single_by_admin: bool,
) where
    S: TestServer + Deref<Target = DbServer>,
{
    bounded(Duration::from_secs(180), async {
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        stack.emulator().grant_system_identity("Key Vault Secrets Officer").unwrap();
        let server_ca = std::fs::read_to_string(&server.ca_file).unwrap();
        let settings = settings(
            &stack,
            dir.path(),
            &server_ca,
            &[
                (&format!("{bindings}_SERVERS"), format!("{}:{}", server.host, server.port)),
                (&format!("{bindings}_ADMINS"), format!("{VAULT}/kt-rb-admin=kt_rb_alt,kt_rb_single")),
            ],
        );
        server.create_login("kt_rb_alt", "initial-pw-alt-01").await;
        server.create_login("kt_rb_single", "initial-pw-single-01").await;
        let admin = server.value(server.port, &server.admin_user, &server.admin_password);
        seed_secret(&stack, VAULT, "kt-rb-admin", &admin, 365, tags(&[]));
        let alternating_provider = format!("{provider}-alternating");
        let alternating = tags(&[
            ("KeyturnRotation", alternating_provider.as_str()),
            ("ValidityPeriodDays", "60"),
            ("KeyturnAdminSecret", "kt-rb-admin"),
        ]);
        let alt0 = seed_secret(
            &stack,
            VAULT,
            "kt-rb-alt",
            &server.value(server.port, "kt_rb_alt", "initial-pw-alt-01"),
            365,
            alternating,
        );
        let mut single = vec![("KeyturnRotation", provider), ("ValidityPeriodDays", "60")];
        if single_by_admin {
            single.push(("KeyturnAdminSecret", "kt-rb-admin"));
        }
        let single = tags(&single);
        let single0 = seed_secret(
            &stack,
            VAULT,
            "kt-rb-single",
            &server.value(server.port, "kt_rb_single", "initial-pw-single-01"),
            365,
            single,
        );
        let chain = near_expiry(stack, &settings).await;
        rotate(&chain, "kt-rb-alt", &alt0, "rotate-alt").await;
        rotate(&chain, "kt-rb-single", &single0, "rotate-single").await;
        let (_, rotated, _) = secret_versions(&chain.stack, VAULT, "kt-rb-alt").pop().unwrap();
        assert_eq!(server.login_of(&rotated).0, "kt_rb_alt_clone", "the rotation moved to the alternate login");

        // Alternating: the clone now holds the secret; the base login's password was never changed.
        let run = rollback(&settings, "kt-rb-alt").await;
        assert_eq!(run.code, 0, "{run:?}");
        let (_, value, restored) = secret_versions(&chain.stack, VAULT, "kt-rb-alt").pop().unwrap();
        let (user, password) = server.login_of(&value);
        assert_eq!(user, "kt_rb_alt");
        assert!(server.logs_in(&user, &password).await, "the restored login works");
        assert_eq!(restored.get("KeyturnRollbackOf"), Some(&alt0));
        assert!(!run.stdout.contains(&password) && !run.stderr.contains(&password), "no value printed");

        // Single user: the previous password is gone, so nothing is written, and the refusal says why.
        let before = secret_versions(&chain.stack, VAULT, "kt-rb-single").len();
        let run = rollback(&settings, "kt-rb-single").await;
        assert_eq!(run.code, 1, "{run:?}");
        let refusal = format!("refusing to roll back kv-rb/kt-rb-single: {provider} changes the one login's password");
        assert!(run.stderr.contains(&refusal), "{run:?}");
        assert_eq!(secret_versions(&chain.stack, VAULT, "kt-rb-single").len(), before);
        assert!(!server.logs_in("kt_rb_single", "initial-pw-single-01").await, "indeed, the old password is dead");
        chain.shutdown().await;
    })
    .await;
}
