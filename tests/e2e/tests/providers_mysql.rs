//! The `mysql` providers through the REAL `near-expiry` binary behind the Functions host stand-in, against a real
//! MariaDB (TLS only, require_secure_transport; started by ./scripts/test through scripts/lib/mysql.sh, found through
//! `KEYTURN_TEST_MYSQL_*`: without them these tests fail, never skip).
//!
//! The handler is SIGKILLed right after each step of a single-user rotation in turn, and Event Grid's redelivery
//! must converge: the vault's latest value logs in, and no password was changed twice. Each kill point is made
//! deterministic by holding the handler in the operation that follows the step:
//!
//! | killed after | held in | how |
//! |---|---|---|
//! | create (pending value in its home) | connecting to MariaDB for the set step | a gate in front of MariaDB holds every connection |
//! | set (password changed) | connecting for the test step | the gate lets the set step's three connections through, holds the fourth |
//! | test (the pending password logs in) | the promotion write | the emulator delays every secret write by 2 s |
//! | promote (new version stored) | the pending home's "promoted" write | the same delay |
//!
//! A password change is counted from the server: MariaDB keeps the hash and the second of the last change
//! (`password_last_changed`), and Event Grid's first redelivery comes seconds after the kill, so a second change
//! (even to the same pending password) shows. MariaDB is queried with `mariadb` (the server's client), verifying
//! the server's certificate against the test CA.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, all_secret_values, assert_no_value_in, bounded, fast_retries, fast_stack,
    secret_near_expiry, seed_secret, tags, workspace_binary,
};
use keyturn_host::Status;
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::keyvault::{FaultRule, Faults, KeyVaultEmulator, OperationKind};
use keyturn_local::stack::LocalStack;
use tokio::net::{TcpListener, TcpStream};

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-my";
const PENDING_SUFFIX: &str = "-keyturn-pending";
/// The secret holding the admin login (tag `KeyturnAdminSecret`).
const ADMIN_SECRET: &str = "kt-e2e-my-admin";
/// How long the emulator holds a secret write when a kill must land in one.
const WRITE_DELAY: Duration = Duration::from_secs(2);

/// The test server, from the variables scripts/lib/mysql.sh exports.
struct Server {
    host: String,
    port: u16,
    admin_user: String,
    admin_password: String,
    ca_file: String,
}

fn required_env(name: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{name} is not set: run ./scripts/test (or scripts/lib/mysql.sh <command>), which starts MariaDB")
    })
}

impl Server {
    fn from_env() -> Self {
        Self {
            host: required_env("KEYTURN_TEST_MYSQL_HOST"),
            port: required_env("KEYTURN_TEST_MYSQL_PORT").parse().unwrap(),
            admin_user: required_env("KEYTURN_TEST_MYSQL_ADMIN_USER"),
            admin_password: required_env("KEYTURN_TEST_MYSQL_ADMIN_PASSWORD"),
            ca_file: required_env("KEYTURN_TEST_MYSQL_CA_FILE"),
        }
    }

    fn addr(&self) -> SocketAddr {
        format!("{}:{}", self.host, self.port).parse().unwrap()
    }

    /// A secret value in the provider's JSON shape (AWS's MySQL spelling), pointing at `port` (the gate, or the
    /// server itself).
    fn value(&self, port: u16, user: &str, password: &str) -> String {
        serde_json::json!({"engine": "mysql", "host": self.host, "port": port, "username": user, "password": password})
            .to_string()
    }

    /// Runs `sql` as `user` through the `mariadb` client over verified TLS: `Ok(output)`, or `Err` when the
    /// password is refused.
    async fn sql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let run = tokio::process::Command::new("mariadb")
            .args(["--no-defaults", "--batch", "--skip-column-names", "--connect-timeout=10", "--protocol=TCP"])
            .args(["-h", &self.host, "-P", &port, "-u", user, "--ssl", "--ssl-verify-server-cert"])
            .arg(format!("--ssl-ca={}", self.ca_file))
            .args(["-e", sql])
            .env("MYSQL_PWD", password)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("mariadb finished within 30 s")
            .unwrap_or_else(|e| panic!("mariadb (MariaDB's client, installed with the server) cannot run: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else if stderr.contains("ERROR 1045") {
            Err(stderr)
        } else {
            panic!("mariadb as {user} failed for another reason than the password: {stderr}")
        }
    }

    async fn admin(&self, sql: &str) -> String {
        self.sql(&self.admin_user, &self.admin_password, sql).await.unwrap()
    }

    async fn logs_in(&self, user: &str, password: &str) -> bool {
        match self.sql(user, password, "SELECT CURRENT_USER()").await {
            Ok(who) => {
                assert_eq!(who, format!("{user}@%"), "logged in as someone else");
                true
            }
            Err(_) => false,
        }
    }

    /// A fresh login on '%' (and no alternate left by an earlier run).
    async fn create_user(&self, user: &str, password: &str) {
        self.admin(&format!(
            "DROP USER IF EXISTS '{user}_clone'@'%'; DROP USER IF EXISTS '{user}'@'%'; \
             CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"
        ))
        .await;
    }

    /// The hash and the second of the last change: changes on every password change.
    async fn fingerprint(&self, user: &str) -> String {
        let fingerprint = self
            .admin(&format!(
                "SELECT CONCAT(JSON_VALUE(Priv, '$.authentication_string'), '@', \
                 JSON_VALUE(Priv, '$.password_last_changed')) FROM mysql.global_priv WHERE User = '{user}' AND Host = '%'"
            ))
            .await;
        assert!(fingerprint.starts_with('*'), "{user} has no native password hash: {fingerprint:?}");
        fingerprint
    }
}

/// A TCP relay in front of MariaDB that lets a number of connections through and holds the rest (accepted,
/// never forwarded): a handler connecting through it waits there until it is killed.
struct Gate {
    addr: SocketAddr,
    /// Connections still let through; `usize::MAX`: all.
    allowed: Arc<AtomicUsize>,
    opened: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gate {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let allowed = Arc::new(AtomicUsize::new(usize::MAX));
        let opened = Arc::new(AtomicUsize::new(0));
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (allow, open, hold) = (allowed.clone(), opened.clone(), held.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                open.fetch_add(1, Ordering::SeqCst);
                let through = allow
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                        0 => None,
                        usize::MAX => Some(usize::MAX),
                        n => Some(n - 1),
                    })
                    .is_ok();
                if through {
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                } else {
                    hold.lock().unwrap().push(inbound);
                }
            }
        });
        Self { addr, allowed, opened, held, task }
    }

    /// Lets `n` more connections through, then holds the rest; counts from now.
    fn allow(&self, n: usize) {
        self.opened.store(0, Ordering::SeqCst);
        self.allowed.store(n, Ordering::SeqCst);
    }

    /// Lets every connection through and closes the held ones.
    fn open(&self) {
        self.allowed.store(usize::MAX, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }

    fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
}

/// Event Grid at half of real time: its first retry comes 5 s after a failed attempt, by when a secret write the
/// killed handler left in the emulator's delay has landed (or was dropped with its connection), so the redelivery
/// reads the vault as the dead process left it.
async fn stack() -> LocalStack {
    LocalStack::start(
        KeyVaultEmulator::builder().vault(VAULT),
        EventGridOptions { time_scale: 0.5, ..EventGridOptions::default() },
    )
    .await
    .unwrap()
}

/// The handler's settings: the stack's, short retries, and a CA bundle trusting the emulator and MariaDB.
fn settings(stack: &LocalStack, server: &Server, dir: &std::path::Path, ports: &[u16]) -> Vec<(String, String)> {
    let bundle = dir.join("ca-bundle.pem");
    let mysql_ca = std::fs::read_to_string(&server.ca_file).unwrap();
    std::fs::write(&bundle, format!("{}\n{mysql_ca}", stack.emulator().ca_pem())).unwrap();
    let mut settings: Vec<(String, String)> =
        stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
    settings.push(("KEYTURN_CA_FILE".to_owned(), bundle.display().to_string()));
    // The deployment's bindings (issue 13): this server, and the one admin secret for the base logins.
    let servers: Vec<String> = ports.iter().map(|port| format!("{}:{port}", server.host)).collect();
    settings.push(("KEYTURN_MYSQL_SERVERS".to_owned(), servers.join(",")));
    let bases = ["kt_e2e_alt", "kt_e2e_kill_create", "kt_e2e_kill_set", "kt_e2e_kill_test", "kt_e2e_kill_promote"];
    settings.push(("KEYTURN_MYSQL_ADMINS".to_owned(), format!("{VAULT}/{ADMIN_SECRET}={}", bases.join(","))));
    settings.extend(fast_retries());
    settings
}

/// Seeds a secret version (expiring in a year: the vault's clock never gets near it here).
fn seed(stack: &LocalStack, name: &str, value: &str, pairs: &[(&str, &str)]) -> String {
    seed_secret(stack, VAULT, name, value, 365, tags(pairs))
}

/// Publishes the near-expiry event of `name`'s `version` (the handler's one subscription gets it).
fn publish(chain: &Chain, id: &str, name: &str, version: &str) {
    let exp = chain.stack.emulator().clock().now() + TimeDelta::days(30);
    chain.stack.grid().publish(secret_near_expiry(id, VAULT, name, version, exp));
}

/// Every version of a secret: (version, value, tags), oldest first.
fn versions(stack: &LocalStack, name: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
    stack
        .emulator()
        .store()
        .list_secret_versions(VAULT, name)
        .unwrap_or_default()
        .into_iter()
        .map(|view| (view.version.version, view.version.data.value, view.version.tags))
        .collect()
}

/// The user and password a secret value holds.
fn login_of(value: &str) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(value).unwrap();
    (json["username"].as_str().unwrap().to_owned(), json["password"].as_str().unwrap().to_owned())
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Create,
    Set,
    Test,
    Promote,
}

#[tokio::test]
async fn a_single_user_rotation_killed_after_each_step_converges_and_changes_the_password_once() {
    bounded(Duration::from_secs(240), async {
        let server = Server::from_env();
        let gate = Gate::start(server.addr()).await;
        let dir = tempfile::tempdir().unwrap();
        let slow_writes = || {
            Faults::none().with(OperationKind::SecretCreate, FaultRule { latency: WRITE_DELAY, ..FaultRule::default() })
        };

        for step in [Step::Create, Step::Set, Step::Test, Step::Promote] {
            // A chain per kill: like the real host, the stand-in stops after a handler's third crash in 30 minutes.
            let stack = stack().await;
            let settings = settings(&stack, &server, dir.path(), &[gate.addr.port()]);
            let chain =
                Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;
            let emulator = chain.stack.emulator();
            let role = format!("kt_e2e_kill_{}", format!("{step:?}").to_ascii_lowercase());
            let name = role.replace('_', "-");
            let home = format!("{name}{PENDING_SUFFIX}");
            server.create_user(&role, "initial-pw-0001").await;
            seed(
                &chain.stack,
                ADMIN_SECRET,
                &server.value(gate.addr.port(), &server.admin_user, &server.admin_password),
                &[],
            );
            let v0 = seed(
                &chain.stack,
                &name,
                &server.value(gate.addr.port(), &role, "initial-pw-0001"),
                &[("KeyturnRotation", "mysql"), ("ValidityPeriodDays", "60"), ("KeyturnAdminSecret", ADMIN_SECRET)],
            );
            let verifier0 = server.fingerprint(&role).await;
            let admin0 = server.fingerprint(&server.admin_user).await;
            match step {
                Step::Create => gate.allow(0),
                // The set step connects three times: with the pending password (refused: not set yet), as the
                // admin (which changes it), and with the current password (which must still work). The test
                // step's connection is the fourth.
                Step::Set => gate.allow(3),
                Step::Test | Step::Promote => {
                    gate.allow(usize::MAX);
                    emulator.set_faults(slow_writes());
                }
            }
            let pid = chain.host.worker_pid().expect("the handler is running");
            publish(&chain, &format!("kill-after-{step:?}"), &name, &v0);

            // Wait until the handler is held right after the step, check that it is, and kill it there.
            let pending_for_v0 = || {
                versions(&chain.stack, &home)
                    .last()
                    .is_some_and(|(_, _, tags)| tags.get("KeyturnPendingFor") == Some(&v0))
            };
            match step {
                Step::Create => wait_for("a held connection", Duration::from_secs(30), || gate.opened() >= 1).await,
                Step::Set => {
                    wait_for("the test step's connection", Duration::from_secs(30), || gate.opened() >= 4).await
                }
                Step::Test => {
                    wait_for("the test step's connection", Duration::from_secs(30), || gate.opened() >= 4).await;
                    // The test login takes milliseconds; the promotion write then waits WRITE_DELAY in the vault.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                Step::Promote => {
                    wait_for("the promotion", Duration::from_secs(30), || versions(&chain.stack, &name).len() == 2)
                        .await
                }
            }
            assert!(pending_for_v0(), "{step:?}: the pending value is not in its home");
            let verifier1 = server.fingerprint(&role).await;
            assert_eq!(verifier1 == verifier0, step == Step::Create, "{step:?}: was the password set before the kill?");
            assert_eq!(versions(&chain.stack, &name).len(), if step == Step::Promote { 2 } else { 1 }, "{step:?}");
            if step == Step::Promote {
                let state = versions(&chain.stack, &home).last().unwrap().2.get("KeyturnPendingState").cloned();
                assert_eq!(state.as_deref(), Some("pending"), "the kill must land before the pending home is marked");
            }
            assert_eq!(chain.host.worker_pid(), Some(pid), "{step:?}: the handler restarted before the kill");
            sigkill(pid);
            gate.open();
            emulator.set_faults(Faults::none());

            // Event Grid redelivers to the restarted handler, which finishes the rotation or finds it done.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let answer = loop {
                if let Some(answer) = chain.outcomes_about(&name).into_iter().next() {
                    break answer;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{step:?}: no outcome about {name} within 60 s; invocations: {:#?}\nhandler output: {:#?}",
                    chain.host.invocations(),
                    chain.host.output().lines().into_iter().map(|l| l.text).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert!(chain.stack.grid().settled(Duration::from_secs(60)).await);
            let all = versions(&chain.stack, &name);
            assert_eq!(all.len(), 2, "{step:?}: one new version in all");
            let (latest, value, tags) = all.last().unwrap();
            assert_eq!(answer.object.as_ref().map(|o| (o.vault(), o.version())), Some((VAULT, v0.as_str())));
            let versions_of = (answer.version_before.as_deref(), answer.version_after.as_deref());
            let promoted_now = (answer.status, answer.action.as_deref()) == (Status::Done, Some("rotated"))
                && versions_of == (Some(v0.as_str()), Some(latest.as_str()));
            let found_promoted = (answer.status, answer.action.as_deref())
                == (Status::Skipped, Some("already-rotated"))
                && versions_of == (Some(latest.as_str()), None);
            match step {
                Step::Create | Step::Set => assert!(promoted_now, "{step:?}: {answer:#?}"),
                // The promotion write the kill interrupted either reached the vault (the write was already sent)
                // or died with its connection; either way the redelivery must converge on one version.
                Step::Test => assert!(promoted_now || found_promoted, "{step:?}: {answer:#?}"),
                Step::Promote => assert!(found_promoted, "{step:?}: {answer:#?}"),
            }
            assert_eq!(tags.get("KeyturnRotatedFrom"), Some(&v0));

            // The vault's latest value logs in; the old password does not; the password changed exactly once.
            let (user, password) = login_of(value);
            assert_eq!(user, role);
            assert!(server.logs_in(&role, &password).await, "{step:?}: the vault's latest value does not log in");
            assert!(!server.logs_in(&role, "initial-pw-0001").await, "{step:?}: the old password still logs in");
            let verifier2 = server.fingerprint(&role).await;
            assert_ne!(verifier2, verifier0, "{step:?}: the password never changed");
            if step != Step::Create {
                assert_eq!(verifier2, verifier1, "{step:?}: the password was changed twice");
            }
            assert_eq!(server.fingerprint(&server.admin_user).await, admin0, "{step:?}: the admin's password changed");
            let killed = chain.host.invocations().into_iter().filter(|r| r.subject.as_deref() == Some(&name)).count();
            assert!(killed >= 2, "{step:?}: the killed invocation and the redelivery: {killed}");
            assert!(chain.stack.grid().dead_letters().is_empty());

            assert_no_value_in(&chain.everything_recorded(), &all_secret_values(&chain.stack, &[VAULT]));
            chain.shutdown().await;
        }
    })
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
        server.create_user(user, "initial-pw-0002").await;
        server
            .admin(
                "DROP DATABASE IF EXISTS kt_e2e_alt_db; CREATE DATABASE kt_e2e_alt_db; \
                 CREATE TABLE kt_e2e_alt_db.t (n int); INSERT INTO kt_e2e_alt_db.t VALUES (42); \
                 GRANT SELECT ON kt_e2e_alt_db.* TO 'kt_e2e_alt'@'%'",
            )
            .await;
        seed(&stack, ADMIN_SECRET, &server.value(server.port, &server.admin_user, &server.admin_password), &[]);
        let v0 = seed(
            &stack,
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
            publish(&chain, "alternating-duplicates", "kt-e2e-alt", &v0);
        }
        wait_for("an answer to every delivery", Duration::from_secs(90), || chain.outcomes().len() >= 10).await;
        assert!(chain.stack.grid().settled(Duration::from_secs(90)).await);
        assert!(chain.stack.grid().dead_letters().is_empty());

        // One new version, holding the alternate login, which logs in; the base login was not touched.
        let all = versions(&chain.stack, "kt-e2e-alt");
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
        let (login, clone_password) = login_of(&all[1].1);
        assert_eq!(login, "kt_e2e_alt_clone");
        assert!(server.logs_in("kt_e2e_alt_clone", &clone_password).await);
        assert!(server.logs_in(user, "initial-pw-0002").await, "the login the secret held keeps working");
        assert_eq!(server.fingerprint(user).await, base_fingerprint, "the base login's password did not change");
        let n = server.sql("kt_e2e_alt_clone", &clone_password, "SELECT n FROM kt_e2e_alt_db.t").await.unwrap();
        assert_eq!(n, "42", "the alternate login carries the base login's grants");

        // The next rotation changes the base login: the password two versions back stops working, the previous
        // version's keeps working.
        publish(&chain, "alternating-next", "kt-e2e-alt", &latest);
        wait_for("the next rotation", Duration::from_secs(60), || versions(&chain.stack, "kt-e2e-alt").len() == 3)
            .await;
        assert!(chain.stack.grid().settled(Duration::from_secs(60)).await);
        let (login, base_password) = login_of(&versions(&chain.stack, "kt-e2e-alt")[2].1);
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
