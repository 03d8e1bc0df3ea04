//! The `mysql` providers through the REAL `near-expiry` binary behind the Functions host stand-in, against a real
//! MariaDB (TLS only, require_secure_transport; started by ./scripts/test through scripts/lib/mysql.sh, found through
//! `KEYTURN_TEST_MYSQL_*`: without them these tests fail, never skip).
//!
//! The single-user kill-after-each-step scenario is the database providers' shared one (`database/mod.rs`); here
//! the set step opens three connections (the pending password, refused; the admin; the stored password, which must
//! still work) before the test step's.
//!
//! A password change is counted from the server: MariaDB keeps the hash and the second of the last change
//! (`password_last_changed`), and Event Grid's first redelivery comes seconds after the kill, so a second change
//! (even to the same pending password) shows. MariaDB is queried with `mariadb` (the server's client), verifying
//! the server's certificate against the test CA, through the e2e library's `MySqlServer`.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod database;

use std::time::Duration;

use database::{FUNCTION, TestServer, publish, seed, versions, wait_for};
use keyturn_e2e::mysql::MySqlServer as Server;
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, all_secret_values, assert_no_value_in, bounded, fast_stack, workspace_binary,
};
use keyturn_host::Status;
use keyturn_local::stack::LocalStack;

const VAULT: &str = "kv-my";
/// The secret holding the admin login (tag `KeyturnAdminSecret`).
const ADMIN_SECRET: &str = "kt-e2e-my-admin";

/// The handler's settings, with the deployment's bindings: this server, and the admin secret for the base logins.
fn settings(stack: &LocalStack, server: &Server, dir: &std::path::Path, ports: &[u16]) -> Vec<(String, String)> {
    let mut bindings = Vec::new();
    // The deployment's bindings (issue 13): this server, and the one admin secret for the base logins.
    let servers: Vec<String> = ports.iter().map(|port| format!("{}:{port}", server.host)).collect();
    bindings.push(("KEYTURN_MYSQL_SERVERS".to_owned(), servers.join(",")));
    let bases = ["kt_e2e_alt", "kt_e2e_kill_create", "kt_e2e_kill_set", "kt_e2e_kill_test", "kt_e2e_kill_promote"];
    bindings.push(("KEYTURN_MYSQL_ADMINS".to_owned(), format!("{VAULT}/{ADMIN_SECRET}={}", bases.join(","))));
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
            tags: &[("KeyturnRotation", "mysql"), ("KeyturnAdminSecret", ADMIN_SECRET)],
            // The set step connects three times: with the pending password (refused: not set yet), as the admin
            // (which changes it), and with the current password (which must still work).
            set_connections: 3,
            settings: &|stack, ports| settings(stack, &server, dir.path(), ports),
            // The admin secret, for the server behind the gate (it must name the same server as the login).
            seed_extra: &|stack, port| {
                seed(stack, VAULT, ADMIN_SECRET, &server.value(port, &server.admin_user, &server.admin_password), &[]);
            },
            untouched: &[&server.admin_user],
        },
    )
    .await;
}

#[tokio::test]
async fn alternating_users_under_ten_concurrent_duplicate_deliveries_rotate_once_and_the_old_login_works_through_the_overlap()
 {
    bounded(Duration::from_secs(180), async {
        let server = Server::from_env();
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        let settings = settings(&stack, &server, dir.path(), &[server.port]);
        let user = "kt_e2e_alt";
        server.create_login(user, "initial-pw-0002").await;
        server
            .admin(
                "DROP DATABASE IF EXISTS kt_e2e_alt_db; CREATE DATABASE kt_e2e_alt_db; \
                 CREATE TABLE kt_e2e_alt_db.t (n int); INSERT INTO kt_e2e_alt_db.t VALUES (42); \
                 GRANT SELECT ON kt_e2e_alt_db.* TO 'kt_e2e_alt'@'%'",
            )
            .await;
        seed(&stack, VAULT, ADMIN_SECRET, &server.value(server.port, &server.admin_user, &server.admin_password), &[]);
        let v0 = seed(
            &stack,
            VAULT,
            "kt-e2e-alt",
            &server.value(server.port, user, "initial-pw-0002"),
            &[
                ("KeyturnRotation", "mysql-alternating"),
                ("ValidityPeriodDays", "60"),
                ("KeyturnAdminSecret", ADMIN_SECRET),
            ],
        );
        let base_fingerprint = server.fingerprint(user).await;
        let admin_fingerprint = server.fingerprint(&server.admin_user).await;
        let chain =
            Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;

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
        let latest = all[1].0.clone();
        let outcomes = chain.outcomes();
        let answered = |status, action, before: &str, after: Option<&str>| {
            outcomes
                .iter()
                .filter(|o| {
                    (o.status, o.action.as_deref(), o.version_before.as_deref(), o.version_after.as_deref())
                        == (status, Some(action), Some(before), after)
                })
                .count()
        };
        let rotated = answered(Status::Done, "rotated", v0.as_str(), Some(latest.as_str()));
        let already = answered(Status::Skipped, "already-rotated", latest.as_str(), None);
        assert_eq!((rotated, rotated + already), (1, outcomes.len()), "{outcomes:#?}");
        let (login, clone_password) = server.login_of(&all[1].1);
        assert_eq!(login, "kt_e2e_alt_clone");
        assert!(server.logs_in("kt_e2e_alt_clone", &clone_password).await);
        assert!(server.logs_in(user, "initial-pw-0002").await, "the login the secret held keeps working");
        assert_eq!(server.fingerprint(user).await, base_fingerprint, "the base login's password did not change");
        let n = server.sql("kt_e2e_alt_clone", &clone_password, "SELECT n FROM kt_e2e_alt_db.t").await.unwrap();
        assert_eq!(n, "42", "the alternate login carries the base login's grants");

        // The next rotation changes the base login: the password two versions back stops working, the previous
        // version's keeps working.
        publish(&chain, "alternating-next", VAULT, "kt-e2e-alt", &latest);
        wait_for("the next rotation", Duration::from_secs(60), || {
            versions(&chain.stack, VAULT, "kt-e2e-alt").len() == 3
        })
        .await;
        assert!(chain.stack.grid().settled(Duration::from_secs(60)).await);
        let (login, base_password) = server.login_of(&versions(&chain.stack, VAULT, "kt-e2e-alt")[2].1);
        assert_eq!(login, user);
        assert!(server.logs_in(user, &base_password).await);
        assert!(!server.logs_in(user, "initial-pw-0002").await, "the overlap is over for the oldest password");
        assert!(server.logs_in("kt_e2e_alt_clone", &clone_password).await, "the previous version still logs in");
        assert_eq!(server.fingerprint(&server.admin_user).await, admin_fingerprint, "the admin's password changed");

        assert_no_value_in(&chain.everything_recorded(), &all_secret_values(&chain.stack, &[VAULT]));
        chain.shutdown().await;
    })
    .await;
}
