//! The `postgres` and `postgres-alternating` providers against a real PostgreSQL server (TLS only, started by
//! ./scripts/test through scripts/lib/postgres.sh) and the Key Vault emulator, driven by the engine the way
//! the near-expiry handler drives it.
//!
//! Crashes are simulated by dropping the rotation future right after a step (support::CrashAfter): exactly
//! what a killed handler leaves behind. Whether a password was changed is read from the server itself:
//! every `ALTER ROLE ... PASSWORD` stores a verifier with a fresh random salt, so `pg_authid.rolpassword`
//! changes on every change, even to the same password.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use keyturn_rotation::provider::postgres::{Postgres, Strategy};
use keyturn_rotation::provider::{Provider, pending};
use keyturn_rotation::{Engine, InProcessLock, Providers, RotationError, RotationOutcome};
use keyturn_vault::{AzureKeyVault, KeyVault};
use support::{CrashAfter, Parent, SCENARIO, Step, VAULT, event, new_secret, run_until_crash, tags};
use tokio::sync::Notify;

const TEST: &str = "postgres_rotation";
const BOUND: Duration = Duration::from_secs(60);

/// The test server, from the variables scripts/lib/postgres.sh exports; the client calls below are this test's own.
type Server = support::ServerEnv;

impl Server {
    fn json(&self, user: &str, password: &str) -> String {
        serde_json::json!({"host": self.host, "port": self.port, "user": user, "password": password, "database": "postgres"})
            .to_string()
    }

    /// Logs in over TLS, trusting only the test CA (independently of keyturn's own connector).
    async fn login(&self, user: &str, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        for certificate in CertificateDer::pem_file_iter(&self.ca_file).unwrap() {
            roots.add(certificate.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(user)
            .password(password)
            .dbname("postgres")
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .connect_timeout(Duration::from_secs(10));
        let (client, connection) =
            tokio::time::timeout(BOUND, config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)))
                .await
                .expect("PostgreSQL answered in time")?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn admin(&self) -> tokio_postgres::Client {
        self.login(&self.admin_user, &self.admin_password).await.unwrap()
    }

    async fn logs_in(&self, user: &str, password: &str) -> bool {
        match self.login(user, password).await {
            Ok(client) => client.query_one("SELECT 1", &[]).await.is_ok(),
            Err(error) => {
                assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD), "{error}");
                false
            }
        }
    }

    /// A fresh login role (dropped first if a previous run left it).
    async fn create_role(&self, role: &str, password: &str) {
        let admin = self.admin().await;
        for r in [format!("{role}_clone"), role.to_owned()] {
            admin.batch_execute(&format!("DROP TABLE IF EXISTS {r}_data; DROP ROLE IF EXISTS {r}")).await.unwrap();
        }
        admin.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'")).await.unwrap();
    }

    /// The stored verifier: changes on every password change.
    async fn verifier(&self, role: &str) -> String {
        let admin = self.admin().await;
        admin.query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&role]).await.unwrap().get(0)
    }
}

/// The user and password a secret value holds.
fn login_of(value: &str) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(value).unwrap();
    (json["user"].as_str().unwrap().to_owned(), json["password"].as_str().unwrap().to_owned())
}

struct Child {
    vault: Arc<AzureKeyVault>,
    settings: keyturn_config::Settings,
    server: Server,
}

impl Child {
    fn new() -> Self {
        let server = Server::from_env("KEYTURN_TEST_PG", "PostgreSQL");
        // The deployment's bindings: this server; the admin secrets and the base logins each may manage.
        // kt-pg-admin2's list is deliberately careless (the admin itself, a CREATEROLE role): the provider's
        // own checks refuse those even when a binding would allow them.
        let settings = support::child_settings(&[
            ("KEYTURN_POSTGRES_SERVERS", format!("{}:{}", server.host, server.port)),
            (
                "KEYTURN_POSTGRES_ADMINS",
                format!("{VAULT}/kt-pg-admin=kt_alt; {VAULT}/kt-pg-admin2={},kt_power,kt_victim", server.admin_user),
            ),
        ]);
        let vault = Arc::new(AzureKeyVault::from_settings(&settings).unwrap());
        Self { vault, settings, server }
    }

    fn provider(&self, strategy: Strategy) -> Arc<dyn Provider> {
        Arc::new(
            Postgres::new(strategy, self.vault.clone(), self.settings.ca_file.as_deref())
                .unwrap()
                .bound(self.settings.providers.postgres.clone()),
        )
    }

    fn engine(&self, provider: Arc<dyn Provider>) -> Engine {
        Engine::new(self.vault.clone(), Arc::new(InProcessLock::default()), Providers::default().with(provider))
    }

    async fn rotate(&self, engine: &Engine, name: &str, version: &str) -> Result<RotationOutcome, RotationError> {
        tokio::time::timeout(BOUND, engine.rotate(&event(name, version))).await.expect("the rotation finished in time")
    }

    async fn latest(&self, name: &str) -> keyturn_vault::model::SecretVersion {
        self.vault.latest_secret(VAULT, name).await.unwrap()
    }

    async fn seed(&self, name: &str, value: &str, extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![("ValidityPeriodDays", "60")];
        pairs.extend_from_slice(extra);
        self.vault.set_secret(VAULT, name, new_secret(value, tags(&pairs))).await.unwrap().version
    }
}

/// Single user: a crash right after each step, then the redelivery. The vault's latest value logs in, and
/// the password was changed exactly once.
async fn scenario_single_user_crashes() {
    let child = Child::new();
    let server = &child.server;
    let normal = child.engine(child.provider(Strategy::SingleUser));
    for (step, role) in [
        (Step::Create, "kt_crash_create"),
        (Step::Set, "kt_crash_set"),
        (Step::Test, "kt_crash_test"),
        (Step::Promote, "kt_crash_promote"),
    ] {
        let name = role.replace('_', "-");
        server.create_role(role, "initial-pw").await;
        let v0 = child.seed(&name, &server.json(role, "initial-pw"), &[("KeyturnRotation", "postgres")]).await;
        let verifier0 = server.verifier(role).await;

        let reached = Arc::new(Notify::new());
        let crashing = child.engine(Arc::new(CrashAfter {
            inner: child.provider(Strategy::SingleUser),
            step,
            reached: reached.clone(),
        }));
        tokio::time::timeout(BOUND, run_until_crash(crashing.rotate(&event(&name, &v0)), &reached))
            .await
            .expect("the crash point was reached in time");
        let verifier1 = server.verifier(role).await;
        assert_eq!(verifier1 == verifier0, step == Step::Create, "{step:?}: changed by the crashed attempt?");
        let pending_home = child.latest(&format!("{name}{}", pending::SUFFIX)).await;
        assert_eq!(pending_home.properties.tags.get(pending::STATE).map(String::as_str), Some("pending"), "{step:?}");
        assert_eq!(pending_home.properties.tags.get(pending::PENDING_FOR), Some(&v0), "{step:?}");
        let latest = child.latest(&name).await;
        assert_eq!(
            latest.properties.version != v0,
            step == Step::Promote,
            "{step:?}: promoted by the crashed attempt?"
        );

        // Event Grid redelivers the same event.
        let outcome = child.rotate(&normal, &name, &v0).await.unwrap();
        if step == Step::Promote {
            assert!(matches!(outcome, RotationOutcome::AlreadyRotated { .. }), "{step:?}: {outcome}");
        } else {
            assert!(matches!(&outcome, RotationOutcome::Rotated { from, .. } if from == &v0), "{step:?}: {outcome}");
        }
        let verifier2 = server.verifier(role).await;
        if step == Step::Create {
            assert_ne!(verifier2, verifier1, "{step:?}: the redelivery must set the password");
        } else {
            assert_eq!(verifier2, verifier1, "{step:?}: the password was changed twice");
        }
        let latest = child.latest(&name).await;
        let (user, password) = login_of(latest.value.expose());
        assert_eq!(user, role);
        assert!(server.logs_in(role, &password).await, "{step:?}: the vault's latest value does not log in");
        assert!(!server.logs_in(role, "initial-pw").await, "{step:?}: the old password still works");
        assert_eq!(latest.properties.tags.get("KeyturnRotatedFrom"), Some(&v0));
        assert!(latest.properties.expires.is_some());

        let pending_home = child.latest(&format!("{name}{}", pending::SUFFIX)).await;
        if step != Step::Promote {
            assert_eq!(pending_home.properties.tags.get(pending::STATE).map(String::as_str), Some("promoted"));
            assert!(!pending_home.value.expose().contains(&password), "a promoted pending home keeps no credential");
        }

        // The next rotation works from here, over a stale pending home where the crash left one.
        let v1 = latest.properties.version.clone();
        let outcome = child.rotate(&normal, &name, &v1).await.unwrap();
        assert!(matches!(&outcome, RotationOutcome::Rotated { from, .. } if from == &v1), "{step:?}: {outcome}");
        let (_, newest) = login_of(child.latest(&name).await.value.expose());
        assert_ne!(newest, password);
        assert!(server.logs_in(role, &newest).await);
        assert!(!server.logs_in(role, &password).await);
    }
}

/// A pending home naming another login (someone with write access to it, or a bug) is refused before any
/// password changes: the confused-deputy guard.
async fn scenario_confused_deputy() {
    let child = Child::new();
    let server = &child.server;
    let (role, name) = ("kt_deputy", "kt-deputy");
    server.create_role(role, "initial-pw").await;
    let v0 = child.seed(name, &server.json(role, "initial-pw"), &[("KeyturnRotation", "postgres")]).await;
    let reached = Arc::new(Notify::new());
    let crashing = child.engine(Arc::new(CrashAfter {
        inner: child.provider(Strategy::SingleUser),
        step: Step::Create,
        reached: reached.clone(),
    }));
    tokio::time::timeout(BOUND, run_until_crash(crashing.rotate(&event(name, &v0)), &reached)).await.unwrap();
    // Tamper: the pending value now names the admin login.
    let home = format!("{name}{}", pending::SUFFIX);
    let stored = child.latest(&home).await;
    let tampered = server.json(&server.admin_user, "attacker-chosen");
    child.vault.set_secret(VAULT, &home, new_secret(&tampered, stored.properties.tags.clone())).await.unwrap();
    let admin_verifier = server.verifier(&server.admin_user).await;

    let error = child.rotate(&child.engine(child.provider(Strategy::SingleUser)), name, &v0).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("refusing to act"), "{error}");
    assert!(!error.to_string().contains("attacker-chosen"), "an error carries no secret: {error}");
    assert_eq!(server.verifier(&server.admin_user).await, admin_verifier);
    assert!(server.logs_in(role, "initial-pw").await);
    assert_eq!(child.latest(name).await.properties.version, v0);
}

/// Alternating users under 10 concurrent duplicate deliveries: one rotation; the clone is created with the
/// base login's privileges; both logins keep working; the next rotation changes the other login.
async fn scenario_alternating_duplicates() {
    let child = Child::new();
    let server = &child.server;
    let (role, name) = ("kt_alt", "kt-alt");
    server.create_role(role, "initial-pw").await;
    let admin = server.admin().await;
    admin.batch_execute("CREATE TABLE kt_alt_data (n int); INSERT INTO kt_alt_data VALUES (42); GRANT SELECT ON kt_alt_data TO kt_alt").await.unwrap();
    child.seed("kt-pg-admin", &server.json(&server.admin_user, &server.admin_password), &[]).await;
    let v0 = child
        .seed(
            name,
            &server.json(role, "initial-pw"),
            &[("KeyturnRotation", "postgres-alternating"), ("KeyturnAdminSecret", "kt-pg-admin")],
        )
        .await;

    let engine = child.engine(child.provider(Strategy::Alternating));
    let deliveries = (0..10).map(|_| child.rotate(&engine, name, &v0));
    let outcomes = futures::future::join_all(deliveries).await;
    let rotated = outcomes.iter().filter(|o| matches!(o, Ok(RotationOutcome::Rotated { .. }))).count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    for outcome in &outcomes {
        match outcome {
            Ok(RotationOutcome::Rotated { .. } | RotationOutcome::AlreadyRotated { .. }) => {}
            Err(error) => assert!(error.is_retryable(), "a duplicate must be retried, not dropped: {error}"),
            Ok(other) => panic!("unexpected outcome {other}"),
        }
    }
    // The redeliveries of the ones that met the lock find the rotation done.
    let again = child.rotate(&engine, name, &v0).await.unwrap();
    assert!(matches!(again, RotationOutcome::AlreadyRotated { .. }), "{again}");

    let latest = child.latest(name).await;
    let (user, clone_password) = login_of(latest.value.expose());
    assert_eq!(user, "kt_alt_clone");
    assert!(server.logs_in("kt_alt_clone", &clone_password).await);
    assert!(server.logs_in(role, "initial-pw").await, "the login not rotated keeps working");
    let clone = server.login("kt_alt_clone", &clone_password).await.unwrap();
    let n: i32 = clone.query_one("SELECT n FROM kt_alt_data", &[]).await.unwrap().get(0);
    assert_eq!(n, 42, "the clone has the base login's grants");

    let v1 = latest.properties.version.clone();
    let outcome = child.rotate(&engine, name, &v1).await.unwrap();
    assert!(matches!(outcome, RotationOutcome::Rotated { .. }), "{outcome}");
    let (user, base_password) = login_of(child.latest(name).await.value.expose());
    assert_eq!(user, role);
    assert!(server.logs_in(role, &base_password).await);
    assert!(!server.logs_in(role, "initial-pw").await);
    assert!(server.logs_in("kt_alt_clone", &clone_password).await, "the previous version still logs in");
}

/// The issue 13 attacks on postgres-alternating, each by a writer of one secret naming the admin secret: the
/// admin login itself (`<admin>_clone` makes the target `<admin>`), a superuser or CREATEROLE base, and an
/// existing `_clone` that is not a member of its base. Each is refused permanently before any password
/// changes; the admin still logs in with its old password and the victims' verifiers are unchanged.
async fn scenario_alternating_refusals() {
    let child = Child::new();
    let server = &child.server;
    child.seed("kt-pg-admin2", &server.json(&server.admin_user, &server.admin_password), &[]).await;
    let admin = server.admin().await;
    server.create_role("kt_power", "power-pw").await;
    admin.batch_execute("ALTER ROLE kt_power CREATEROLE").await.unwrap();
    server.create_role("kt_victim", "victim-pw").await;
    server.create_role("kt_victim_clone", "foreign-pw").await;
    server.create_role("kt_unbound", "unbound-pw").await;
    let policy = [("KeyturnRotation", "postgres-alternating"), ("KeyturnAdminSecret", "kt-pg-admin2")];
    let engine = child.engine(child.provider(Strategy::Alternating));
    let admin_clone = format!("{}_clone", server.admin_user);
    let cases = [
        ("kt-atk-admin", admin_clone.as_str(), "the admin login itself"),
        ("kt-atk-power", "kt_power", "has CREATEROLE"),
        ("kt-atk-clone", "kt_victim", "is not a member of 'kt_victim'"),
        ("kt-atk-unbound", "kt_unbound", "is not bound to manage 'kt_unbound' in KEYTURN_POSTGRES_ADMINS"),
    ];
    let before: Vec<String> = futures::future::join_all(
        [server.admin_user.as_str(), "kt_power", "kt_victim", "kt_victim_clone", "kt_unbound"]
            .map(|r| server.verifier(r)),
    )
    .await;
    for (name, user, why) in cases {
        let v0 = child.seed(name, &server.json(user, "whatever-pw"), &policy).await;
        let error = child.rotate(&engine, name, &v0).await.unwrap_err();
        assert!(!error.is_retryable(), "{name}: {error}");
        assert!(error.to_string().contains(why), "{name}: {error}");
        assert_eq!(child.latest(name).await.properties.version, v0, "{name}: the writer's secret is unchanged");
    }
    let after: Vec<String> = futures::future::join_all(
        [server.admin_user.as_str(), "kt_power", "kt_victim", "kt_victim_clone", "kt_unbound"]
            .map(|r| server.verifier(r)),
    )
    .await;
    assert_eq!(before, after, "no password changed");
    assert!(server.logs_in(&server.admin_user, &server.admin_password).await);
    assert!(server.logs_in("kt_victim_clone", "foreign-pw").await);

    // A server the deployment does not bind (the writer's own, say): refused before any connection.
    let elsewhere = serde_json::json!({"host": "127.0.0.2", "port": server.port, "user": "kt_victim", "password": "x"});
    let e0 = child.seed("kt-atk-server", &elsewhere.to_string(), &[("KeyturnRotation", "postgres")]).await;
    let error =
        child.rotate(&child.engine(child.provider(Strategy::SingleUser)), "kt-atk-server", &e0).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(
        error.to_string().contains("127.0.0.2:") && error.to_string().contains("is not in KEYTURN_POSTGRES_SERVERS"),
        "{error}"
    );
}

#[tokio::test]
async fn postgres_rotation() {
    match std::env::var(SCENARIO).as_deref() {
        Ok("single-user-crashes") => return scenario_single_user_crashes().await,
        Ok("confused-deputy") => return scenario_confused_deputy().await,
        Ok("alternating-duplicates") => return scenario_alternating_duplicates().await,
        Ok("alternating-refusals") => return scenario_alternating_refusals().await,
        Ok(other) => panic!("unknown scenario {other}"),
        Err(_) => {}
    }
    let server = Server::from_env("KEYTURN_TEST_PG", "PostgreSQL");
    let ca = std::fs::read_to_string(&server.ca_file).unwrap();
    let parent = Parent::start().await;
    for scenario in ["single-user-crashes", "confused-deputy", "alternating-duplicates", "alternating-refusals"] {
        parent.run_child(TEST, scenario, std::slice::from_ref(&ca), &[]).await;
    }
    parent.stop().await;
}
