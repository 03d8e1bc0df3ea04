//! The `postgres` providers through the REAL `near-expiry` binary behind the Functions host stand-in, against a
//! real PostgreSQL (TLS only, SCRAM; started by ./scripts/test through scripts/lib/postgres.sh, found through
//! `KEYTURN_TEST_PG_*`: without them these tests fail, never skip).
//!
//! The handler is SIGKILLed right after each step of a single-user rotation in turn, and Event Grid's
//! redelivery must converge: the vault's latest value logs in, and no password was changed twice. Each kill
//! point is made deterministic by holding the handler in the operation that follows the step:
//!
//! | killed after | held in | how |
//! |---|---|---|
//! | create (pending value in its home) | connecting to PostgreSQL for the set step | a gate in front of PostgreSQL holds every connection |
//! | set (password changed) | connecting for the test step | the gate lets the set step's two connections through, holds the third |
//! | test (the pending password logs in) | the promotion write | the emulator delays every secret write by 2 s |
//! | promote (new version stored) | the pending home's "promoted" write | the same delay |
//!
//! A password change is counted from the server: every `ALTER ROLE ... PASSWORD` stores a verifier with a new
//! random salt, so `pg_authid.rolpassword` changes on every change, even to the same password. PostgreSQL is
//! queried with `psql` (the server's client), verifying the server's certificate against the test CA.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, all_secret_values, assert_no_value_in, bounded, fast_retries, fast_stack,
    publish_near_expiry, secret_versions, seed_secret, tags, wait_for, workspace_binary,
};
use keyturn_host::Status;
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::keyvault::{FaultRule, Faults, KeyVaultEmulator, OperationKind};
use keyturn_local::stack::LocalStack;
use tokio::net::{TcpListener, TcpStream};

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-pg";
const PENDING_SUFFIX: &str = "-keyturn-pending";
/// How long the emulator holds a secret write when a kill must land in one.
const WRITE_DELAY: Duration = Duration::from_secs(2);

/// The test server, from the variables scripts/lib/postgres.sh exports.
struct Server {
    host: String,
    port: u16,
    admin_user: String,
    admin_password: String,
    ca_file: String,
}

fn required_env(name: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{name} is not set: run ./scripts/test (or scripts/lib/postgres.sh <command>), which starts PostgreSQL")
    })
}

impl Server {
    fn from_env() -> Self {
        Self {
            host: required_env("KEYTURN_TEST_PG_HOST"),
            port: required_env("KEYTURN_TEST_PG_PORT").parse().unwrap(),
            admin_user: required_env("KEYTURN_TEST_PG_ADMIN_USER"),
            admin_password: required_env("KEYTURN_TEST_PG_ADMIN_PASSWORD"),
            ca_file: required_env("KEYTURN_TEST_PG_CA_FILE"),
        }
    }

    fn addr(&self) -> SocketAddr {
        format!("{}:{}", self.host, self.port).parse().unwrap()
    }

    /// A secret value in the provider's JSON shape, pointing at `port` (the gate, or the server itself).
    fn value(&self, port: u16, user: &str, password: &str) -> String {
        serde_json::json!({"host": self.host, "port": port, "user": user, "password": password, "database": "postgres"})
            .to_string()
    }

    /// Runs `sql` as `user` through psql over verified TLS: `Ok(output)`, or `Err` when the password is refused.
    async fn psql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let conninfo = format!(
            "host={} port={} user={user} dbname=postgres sslmode=verify-full sslrootcert={}",
            self.host, self.port, self.ca_file
        );
        let run = tokio::process::Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql, &conninfo])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("psql finished within 30 s")
            .unwrap_or_else(|e| panic!("psql (PostgreSQL's client, installed with the server) cannot run: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else if stderr.contains("password authentication failed") {
            Err(stderr)
        } else {
            panic!("psql as {user} failed for another reason than the password: {stderr}")
        }
    }

    async fn admin(&self, sql: &str) -> String {
        self.psql(&self.admin_user, &self.admin_password, sql).await.unwrap()
    }

    async fn logs_in(&self, user: &str, password: &str) -> bool {
        match self.psql(user, password, "SELECT current_user").await {
            Ok(who) => {
                assert_eq!(who, user, "logged in as someone else");
                true
            }
            Err(_) => false,
        }
    }

    /// A fresh login role (and no alternate left by an earlier run).
    async fn create_role(&self, role: &str, password: &str) {
        self.admin(&format!("DROP ROLE IF EXISTS {role}_clone; DROP ROLE IF EXISTS {role}")).await;
        self.admin(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'")).await;
    }

    /// The stored verifier: changes on every password change.
    async fn verifier(&self, role: &str) -> String {
        let verifier = self.admin(&format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")).await;
        assert!(verifier.starts_with("SCRAM-SHA-256$"), "{role} has no SCRAM verifier: {verifier:?}");
        verifier
    }
}

/// A TCP relay in front of PostgreSQL that lets a number of connections through and holds the rest (accepted,
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

/// The handler's settings: the stack's, short retries, and a CA bundle trusting the emulator and PostgreSQL.
fn settings(stack: &LocalStack, server: &Server, dir: &std::path::Path, ports: &[u16]) -> Vec<(String, String)> {
    let bundle = dir.join("ca-bundle.pem");
    let pg_ca = std::fs::read_to_string(&server.ca_file).unwrap();
    std::fs::write(&bundle, format!("{}\n{pg_ca}", stack.emulator().ca_pem())).unwrap();
    let mut settings: Vec<(String, String)> =
        stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
    settings.push(("KEYTURN_CA_FILE".to_owned(), bundle.display().to_string()));
    // The deployment's bindings (issue 13): this server, and the one admin secret for the one base login.
    let servers: Vec<String> = ports.iter().map(|port| format!("{}:{port}", server.host)).collect();
    settings.push(("KEYTURN_POSTGRES_SERVERS".to_owned(), servers.join(",")));
    settings.push(("KEYTURN_POSTGRES_ADMINS".to_owned(), format!("{VAULT}/kt-e2e-pg-admin=kt_e2e_alt")));
    settings.extend(fast_retries());
    settings
}

/// Seeds a secret version (expiring in a year: the vault's clock never gets near it here).
fn seed(stack: &LocalStack, name: &str, value: &str, pairs: &[(&str, &str)]) -> String {
    seed_secret(stack, VAULT, name, value, 365, tags(pairs))
}

fn publish(chain: &Chain, id: &str, name: &str, version: &str) {
    publish_near_expiry(chain, id, VAULT, name, version);
}

fn versions(stack: &LocalStack, name: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
    secret_versions(stack, VAULT, name)
}

/// The user and password a secret value holds.
fn login_of(value: &str) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(value).unwrap();
    (json["user"].as_str().unwrap().to_owned(), json["password"].as_str().unwrap().to_owned())
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
            server.create_role(&role, "initial-pw-0001").await;
            let v0 = seed(
                &chain.stack,
                &name,
                &server.value(gate.addr.port(), &role, "initial-pw-0001"),
                &[("KeyturnRotation", "postgres"), ("ValidityPeriodDays", "60")],
            );
            let verifier0 = server.verifier(&role).await;
            match step {
                Step::Create => gate.allow(0),
                // The set step connects twice: with the pending password (refused: not set yet), then with the
                // current one to change it. The test step's connection is the third.
                Step::Set => gate.allow(2),
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
                    wait_for("the test step's connection", Duration::from_secs(30), || gate.opened() >= 3).await
                }
                Step::Test => {
                    wait_for("the test step's connection", Duration::from_secs(30), || gate.opened() >= 3).await;
                    // The test login takes milliseconds; the promotion write then waits WRITE_DELAY in the vault.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                Step::Promote => {
                    wait_for("the promotion", Duration::from_secs(30), || versions(&chain.stack, &name).len() == 2)
                        .await
                }
            }
            assert!(pending_for_v0(), "{step:?}: the pending value is not in its home");
            let verifier1 = server.verifier(&role).await;
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
            let verifier2 = server.verifier(&role).await;
            assert_ne!(verifier2, verifier0, "{step:?}: the password never changed");
            if step != Step::Create {
                assert_eq!(verifier2, verifier1, "{step:?}: the password was changed twice");
            }
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
async fn alternating_users_under_ten_concurrent_duplicate_deliveries_rotate_once() {
    bounded(Duration::from_secs(180), async {
        let server = Server::from_env();
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        let settings = settings(&stack, &server, dir.path(), &[server.port]);
        let role = "kt_e2e_alt";
        server.create_role(role, "initial-pw-0002").await;
        seed(&stack, "kt-e2e-pg-admin", &server.value(server.port, &server.admin_user, &server.admin_password), &[]);
        let v0 = seed(&stack, "kt-e2e-alt", &server.value(server.port, role, "initial-pw-0002"), &[
            ("KeyturnRotation", "postgres-alternating"),
            ("ValidityPeriodDays", "60"),
            ("KeyturnAdminSecret", "kt-e2e-pg-admin"),
        ]);
        let base_verifier = server.verifier(role).await;
        let chain = Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;

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
        let (user, password) = login_of(&all[1].1);
        assert_eq!(user, "kt_e2e_alt_clone");
        assert!(server.logs_in("kt_e2e_alt_clone", &password).await);
        assert!(server.logs_in(role, "initial-pw-0002").await, "the login the secret held keeps working");
        assert_eq!(server.verifier(role).await, base_verifier, "the base login's password did not change");
        let member = server
            .admin("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles c ON c.oid = m.member WHERE r.rolname = 'kt_e2e_alt' AND c.rolname = 'kt_e2e_alt_clone'")
            .await;
        assert_eq!(member, "1", "the alternate login is a member of the base login");

        assert_no_value_in(&chain.everything_recorded(), &all_secret_values(&chain.stack, &[VAULT]));
        chain.shutdown().await;
    })
    .await;
}
