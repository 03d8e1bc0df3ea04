//! What the database providers' end-to-end tests share (`providers_postgres.rs`, `providers_mysql.rs`): a gate in
//! front of the server, the vault's versions, and the whole single-user kill-after-each-step scenario, run against
//! any server that can say whether a login works and whether its password changed (the e2e library's
//! [`TestServer`], which its `PgServer` and `MySqlServer` are).

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use keyturn_e2e::database::TestServer;
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, all_secret_values, assert_no_value_in, bounded, seed_secret, sigkill, tags,
    workspace_binary,
};
// The suites' vault and Event Grid helpers are the e2e library's, under the names these suites read best with.
pub use keyturn_e2e::{publish_near_expiry as publish, secret_versions as versions, wait_for};
use keyturn_host::Status;
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::keyvault::{FaultRule, Faults, KeyVaultEmulator, OperationKind};
use keyturn_local::stack::LocalStack;
use tokio::net::{TcpListener, TcpStream};

pub const FUNCTION: &str = "near-expiry";
pub const PENDING_SUFFIX: &str = "-keyturn-pending";
/// How long the emulator holds a secret write when a kill must land in one.
const WRITE_DELAY: Duration = Duration::from_secs(2);

/// A TCP relay in front of the database server that lets a number of connections through and holds the rest (accepted,
/// never forwarded): a handler connecting through it waits there until it is killed.
pub struct Gate {
    pub addr: SocketAddr,
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
    pub async fn start(target: SocketAddr) -> Self {
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
    pub fn allow(&self, n: usize) {
        self.opened.store(0, Ordering::SeqCst);
        self.allowed.store(n, Ordering::SeqCst);
    }

    /// Lets every connection through and closes the held ones.
    pub fn open(&self) {
        self.allowed.store(usize::MAX, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }

    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
}

/// Event Grid at half of real time: its first retry comes 5 s after a failed attempt, by when a secret write the
/// killed handler left in the emulator's delay has landed (or was dropped with its connection), so the redelivery
/// reads the vault as the dead process left it.
pub async fn stack(vault: &str) -> LocalStack {
    LocalStack::start(
        KeyVaultEmulator::builder().vault(vault),
        EventGridOptions { time_scale: 0.5, ..EventGridOptions::default() },
    )
    .await
    .unwrap()
}

/// Seeds a secret version (expiring in a year: the vault's clock never gets near it here).
pub fn seed(stack: &LocalStack, vault: &str, name: &str, value: &str, pairs: &[(&str, &str)]) -> String {
    seed_secret(stack, vault, name, value, 365, tags(pairs))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Create,
    Set,
    Test,
    Promote,
}

/// The handler's settings for a stack, given the server ports the bindings must allow.
pub type HandlerSettings<'a> = dyn Fn(&LocalStack, &[u16]) -> Vec<(String, String)> + 'a;

/// A single-user provider's kill-after-each-step scenario.
pub struct KillScenario<'a> {
    pub vault: &'static str,
    /// The rotation tags beside `ValidityPeriodDays` (`KeyturnRotation`, and `KeyturnAdminSecret` where used).
    pub tags: &'a [(&'a str, &'a str)],
    /// How many connections the set step opens before the test step's one (the gate holds the one after).
    pub set_connections: usize,
    /// The handler's settings for a stack, with the bindings allowing these ports of the server.
    pub settings: &'a HandlerSettings<'a>,
    /// Seeds what each rotation needs besides its own secret (an admin secret pointing at the gate's port).
    pub seed_extra: &'a dyn Fn(&LocalStack, u16),
    /// Logins whose password must never change (an admin).
    pub untouched: &'a [&'a str],
}

/// The handler is SIGKILLed right after each step of a single-user rotation in turn, and Event Grid's redelivery
/// must converge: the vault's latest value logs in, and no password was changed twice. Each kill point is made
/// deterministic by holding the handler in the operation that follows the step:
///
/// | killed after | held in | how |
/// |---|---|---|
/// | create (pending value in its home) | connecting for the set step | the gate holds every connection |
/// | set (password changed) | connecting for the test step | the gate lets the set step's connections through, holds the next |
/// | test (the pending password logs in) | the promotion write | the emulator delays every secret write by 2 s |
/// | promote (new version stored) | the pending home's "promoted" write | the same delay |
pub async fn killed_after_each_step_converges<S: TestServer>(server: &S, scenario: KillScenario<'_>) {
    let vault = scenario.vault;
    bounded(Duration::from_secs(240), async {
        let gate = Gate::start(server.addr()).await;
        let slow_writes = || {
            Faults::none().with(OperationKind::SecretCreate, FaultRule { latency: WRITE_DELAY, ..FaultRule::default() })
        };

        for step in [Step::Create, Step::Set, Step::Test, Step::Promote] {
            // A chain per kill: like the real host, the stand-in stops after a handler's third crash in 30 minutes.
            let stack = stack(vault).await;
            let settings = (scenario.settings)(&stack, &[gate.addr.port()]);
            let chain =
                Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;
            let emulator = chain.stack.emulator();
            let role = format!("kt_e2e_kill_{}", format!("{step:?}").to_ascii_lowercase());
            let name = role.replace('_', "-");
            let home = format!("{name}{PENDING_SUFFIX}");
            server.create_login(&role, "initial-pw-0001").await;
            (scenario.seed_extra)(&chain.stack, gate.addr.port());
            let mut policy = vec![("ValidityPeriodDays", "60")];
            policy.extend_from_slice(scenario.tags);
            let v0 =
                seed(&chain.stack, vault, &name, &server.value(gate.addr.port(), &role, "initial-pw-0001"), &policy);
            let verifier0 = server.fingerprint(&role).await;
            let untouched0 = fingerprints(server, scenario.untouched).await;
            match step {
                Step::Create => gate.allow(0),
                Step::Set => gate.allow(scenario.set_connections),
                Step::Test | Step::Promote => {
                    gate.allow(usize::MAX);
                    emulator.set_faults(slow_writes());
                }
            }
            let pid = chain.host.worker_pid().expect("the handler is running");
            publish(&chain, &format!("kill-after-{step:?}"), vault, &name, &v0);

            // Wait until the handler is held right after the step, check that it is, and kill it there.
            let pending_for_v0 = || {
                versions(&chain.stack, vault, &home)
                    .last()
                    .is_some_and(|(_, _, tags)| tags.get("KeyturnPendingFor") == Some(&v0))
            };
            match step {
                Step::Create => wait_for("a held connection", Duration::from_secs(30), || gate.opened() >= 1).await,
                Step::Set => {
                    wait_for("the test step's connection", Duration::from_secs(30), || {
                        gate.opened() > scenario.set_connections
                    })
                    .await
                }
                Step::Test => {
                    wait_for("the test step's connection", Duration::from_secs(30), || {
                        gate.opened() > scenario.set_connections
                    })
                    .await;
                    // The test login takes milliseconds; the promotion write then waits WRITE_DELAY in the vault.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                Step::Promote => {
                    wait_for("the promotion", Duration::from_secs(30), || {
                        versions(&chain.stack, vault, &name).len() == 2
                    })
                    .await
                }
            }
            assert!(pending_for_v0(), "{step:?}: the pending value is not in its home");
            let verifier1 = server.fingerprint(&role).await;
            assert_eq!(verifier1 == verifier0, step == Step::Create, "{step:?}: was the password set before the kill?");
            assert_eq!(
                versions(&chain.stack, vault, &name).len(),
                if step == Step::Promote { 2 } else { 1 },
                "{step:?}"
            );
            if step == Step::Promote {
                let state = versions(&chain.stack, vault, &home).last().unwrap().2.get("KeyturnPendingState").cloned();
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
            let all = versions(&chain.stack, vault, &name);
            assert_eq!(all.len(), 2, "{step:?}: one new version in all");
            let (latest, value, tags) = all.last().unwrap();
            assert_eq!(answer.object.as_ref().map(|o| (o.vault(), o.version())), Some((vault, v0.as_str())));
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
            let (user, password) = server.login_of(value);
            assert_eq!(user, role);
            assert!(server.logs_in(&role, &password).await, "{step:?}: the vault's latest value does not log in");
            assert!(!server.logs_in(&role, "initial-pw-0001").await, "{step:?}: the old password still logs in");
            let verifier2 = server.fingerprint(&role).await;
            assert_ne!(verifier2, verifier0, "{step:?}: the password never changed");
            if step != Step::Create {
                assert_eq!(verifier2, verifier1, "{step:?}: the password was changed twice");
            }
            assert_eq!(
                fingerprints(server, scenario.untouched).await,
                untouched0,
                "{step:?}: a password that must not change changed"
            );
            let killed = chain.host.invocations().into_iter().filter(|r| r.subject.as_deref() == Some(&name)).count();
            assert!(killed >= 2, "{step:?}: the killed invocation and the redelivery: {killed}");
            assert!(chain.stack.grid().dead_letters().is_empty());

            assert_no_value_in(&chain.everything_recorded(), &all_secret_values(&chain.stack, &[vault]));
            chain.shutdown().await;
        }
    })
    .await;
}

/// The fingerprints of `users`, in order.
async fn fingerprints<S: TestServer>(server: &S, users: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for user in users {
        all.push(server.fingerprint(user).await);
    }
    all
}
