//! The `postgres` providers through the REAL `near-expiry` binary behind the Functions host stand-in, against a
//! real PostgreSQL (TLS only, SCRAM; started by ./scripts/test through scripts/lib/postgres.sh, found through
//! `KEYTURN_TEST_PG_*`: without them these tests fail, never skip).
//!
//! The single-user kill-after-each-step scenario is the database providers' shared one (`database/mod.rs`); here
//! the set step opens two connections (the pending password, refused; the current one, which changes it) before
//! the test step's.
//!
//! A password change is counted from the server: every `ALTER ROLE ... PASSWORD` stores a verifier with a new
//! random salt, so `pg_authid.rolpassword` changes on every change, even to the same password. PostgreSQL is
//! queried with `psql` (the server's client), verifying the server's certificate against the test CA, through the
//! e2e library's `PgServer`.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod database;

use std::time::Duration;

use database::{FUNCTION, TestServer, publish, seed, versions, wait_for};
use keyturn_e2e::postgres::PgServer as Server;
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, all_secret_values, assert_no_value_in, bounded, fast_stack, workspace_binary,
};
use keyturn_host::Status;
use keyturn_local::stack::LocalStack;

const VAULT: &str = "kv-pg";

/// The handler's settings, with the deployment's bindings: this server, and the admin secret for the base logins.
fn settings(stack: &LocalStack, server: &Server, dir: &std::path::Path, ports: &[u16]) -> Vec<(String, String)> {
    let mut bindings = Vec::new();
    // The deployment's bindings (issue 13): this server, and the one admin secret for the one base login.
    let servers: Vec<String> = ports.iter().map(|port| format!("{}:{port}", server.host)).collect();
    bindings.push(("KEYTURN_POSTGRES_SERVERS".to_owned(), servers.join(",")));
    bindings.push(("KEYTURN_POSTGRES_ADMINS".to_owned(), format!("{VAULT}/kt-e2e-pg-admin=kt_e2e_alt")));
    server.handler_settings(stack, dir, bindings)
}

#[tokio::test]
async fn a_single_user_rotation_killed_after_each_step_converges_and_changes_the_password_once() {
    let server = Server::from_env();
    let dir = tempfile::tempdir().unwrap();
    database::killed_after_each_step_converges(
        &server,
        database::KillScenario {
            vault: VAULT,
            tags: &[("KeyturnRotation", "postgres")],
            // The set step connects twice: with the pending password (refused: not set yet), then with the current
            // one to change it.
            set_connections: 2,
            settings: &|stack, ports| settings(stack, &server, dir.path(), ports),
            seed_extra: &|_, _| {},
            untouched: &[],
        },
    )
    .await;
}

#[tokio::test]
async fn alternating_users_under_ten_concurrent_duplicate_deliveries_rotate_once() {
    bounded(Duration::from_secs(180), async {
        let server = Server::from_env();
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        let settings = settings(&stack, &server, dir.path(), &[server.port]);
        let role = "kt_e2e_alt";
        server.create_login(role, "initial-pw-0002").await;
        seed(&stack, VAULT, "kt-e2e-pg-admin", &server.value(server.port, &server.admin_user, &server.admin_password), &[]);
        let v0 = seed(&stack, VAULT, "kt-e2e-alt", &server.value(server.port, role, "initial-pw-0002"), &[
            ("KeyturnRotation", "postgres-alternating"),
            ("ValidityPeriodDays", "60"),
            ("KeyturnAdminSecret", "kt-e2e-pg-admin"),
        ]);
        let base_verifier = server.fingerprint(role).await;
        let chain = Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;

        // Ten deliveries of one event at the same moment, each its own invocation of the one handler process.
        for _ in 0..10 {
            publish(&chain, "alternating-duplicates", VAULT, "kt-e2e-alt", &v0);
        }
        wait_for("an answer to every delivery", Duration::from_secs(90), || chain.outcomes().len() >= 10).await;
        assert!(chain.stack.grid().settled(Duration::from_secs(90)).await);
        assert!(chain.stack.grid().dead_letters().is_empty());

        // One new version, holding the alternate login, which logs in; the base login was not touched.
        let all = versions(&chain.stack, VAULT, "kt-e2e-alt");
        assert_eq!(all.len(), 2, "one rotation in all");
        // One delivery rotated v0 to it; every other found it already done.
        let latest = all[1].0.as_str();
        let outcomes = chain.outcomes();
        let answered = |status, action, before, after| {
            outcomes
                .iter()
                .filter(|o| {
                    (o.status, o.action.as_deref(), o.version_before.as_deref(), o.version_after.as_deref())
                        == (status, Some(action), Some(before), after)
                })
                .count()
        };
        let rotated = answered(Status::Done, "rotated", v0.as_str(), Some(latest));
        let already = answered(Status::Skipped, "already-rotated", latest, None);
        assert_eq!((rotated, rotated + already), (1, outcomes.len()), "{outcomes:#?}");
        assert!(
            outcomes.iter().all(|o| o.object.as_ref().map(|o| (o.name(), o.version())) == Some(("kt-e2e-alt", v0.as_str()))),
            "{outcomes:#?}"
        );
        let (user, password) = server.login_of(&all[1].1);
        assert_eq!(user, "kt_e2e_alt_clone");
        assert!(server.logs_in("kt_e2e_alt_clone", &password).await);
        assert!(server.logs_in(role, "initial-pw-0002").await, "the login the secret held keeps working");
        assert_eq!(server.fingerprint(role).await, base_verifier, "the base login's password did not change");
        let member = server
            .admin("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles c ON c.oid = m.member WHERE r.rolname = 'kt_e2e_alt' AND c.rolname = 'kt_e2e_alt_clone'")
            .await;
        assert_eq!(member, "1", "the alternate login is a member of the base login");

        assert_no_value_in(&chain.everything_recorded(), &all_secret_values(&chain.stack, &[VAULT]));
        chain.shutdown().await;
    })
    .await;
}
