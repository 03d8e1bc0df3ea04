//! The `mysql` and `mysql-alternating` providers against a real MariaDB server (TLS only, require_secure_transport,
//! started by ./scripts/test through scripts/lib/mysql.sh) and the Key Vault emulator, driven by the engine the way
//! the near-expiry handler drives it.
//!
//! Crashes are simulated by dropping the rotation future right after a step (support::CrashAfter): exactly what a
//! killed handler leaves behind. Whether a password was changed is read from the server itself: MariaDB records
//! `password_last_changed` (seconds) beside the hash, and each pending password is new, so the pair changes on every
//! change; the tests wait past a second boundary before a step whose change they must see or rule out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use keyturn_rotation::provider::mysql::{Mysql, Strategy};
use keyturn_rotation::provider::{Provider, pending};
use keyturn_rotation::{Engine, InProcessLock, Providers, RotationError, RotationOutcome};
use keyturn_vault::{AzureKeyVault, KeyVault};
use mysql_async::prelude::Queryable;
use support::{CrashAfter, Parent, SCENARIO, Step, VAULT, event, new_secret, run_until_crash, tags};
use tokio::sync::Notify;

const TEST: &str = "mysql_rotation";
const BOUND: Duration = Duration::from_secs(60);

/// The test server, from the variables scripts/lib/mysql.sh exports; the client calls below are this test's own.
type Server = support::ServerEnv;

impl Server {
    fn json(&self, user: &str, password: &str) -> String {
        serde_json::json!({"engine": "mysql", "host": self.host, "port": self.port, "username": user, "password": password})
            .to_string()
    }

    /// Logs in over TLS, trusting only the test CA (independently of keyturn's own connector).
    async fn login(&self, user: &str, password: &str) -> Result<mysql_async::Conn, mysql_async::Error> {
        let ssl = mysql_async::SslOpts::default()
            .with_root_certs(vec![std::path::PathBuf::from(&self.ca_file).into()])
            .with_disable_built_in_roots(true);
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .ssl_opts(ssl);
        tokio::time::timeout(BOUND, mysql_async::Conn::new(opts)).await.expect("MariaDB answered in time")
    }

    async fn admin(&self) -> mysql_async::Conn {
        self.login(&self.admin_user, &self.admin_password).await.unwrap()
    }

    async fn logs_in(&self, user: &str, password: &str) -> bool {
        match self.login(user, password).await {
            Ok(mut conn) => conn.query_drop("SELECT 1").await.is_ok(),
            Err(mysql_async::Error::Server(error)) => {
                assert_eq!(error.code, 1045, "{error}");
                false
            }
            Err(other) => panic!("logging in as {user}: {other}"),
        }
    }

    /// A fresh login on '%' with a password (dropped first, with its clone, if a previous run left them).
    async fn create_user(&self, user: &str, password: &str) {
        let mut admin = self.admin().await;
        admin
            .query_drop(format!(
                "DROP USER IF EXISTS '{user}_clone'@'%'; DROP USER IF EXISTS '{user}'@'%'; \
                 CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"
            ))
            .await
            .unwrap();
    }

    /// What changes whenever a password is set: the hash and the second it was set.
    async fn fingerprint(&self, user: &str) -> String {
        let mut admin = self.admin().await;
        let row: Option<(String, String)> = admin
            .exec_first(
                "SELECT JSON_VALUE(Priv, '$.authentication_string'), JSON_VALUE(Priv, '$.password_last_changed') \
                 FROM mysql.global_priv WHERE User = ? AND Host = '%'",
                (user,),
            )
            .await
            .unwrap();
        let (hash, changed) = row.unwrap_or_else(|| panic!("no account {user}@%"));
        format!("{hash}@{changed}")
    }
}

/// Past the next second boundary, so that a password set from now on records another `password_last_changed`.
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// The user and password a secret value holds.
fn login_of(value: &str) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(value).unwrap();
    (json["username"].as_str().unwrap().to_owned(), json["password"].as_str().unwrap().to_owned())
}

struct Child {
    vault: Arc<AzureKeyVault>,
    settings: keyturn_config::Settings,
    server: Server,
}

impl Child {
    fn new() -> Self {
        let server = Server::from_env("KEYTURN_TEST_MYSQL", "MariaDB");
        // The deployment's bindings: this server; the admin secrets and the base logins each may manage.
        // kt-my-admin2's list is deliberately careless (the admin itself, powerful logins): the provider's own
        // checks refuse those even when a binding would allow them.
        let settings = support::child_settings(&[
            ("KEYTURN_MYSQL_SERVERS", format!("{}:{}", server.host, server.port)),
            (
                "KEYTURN_MYSQL_ADMINS",
                format!(
                    "{VAULT}/kt-my-admin=kt_single,kt_crash_create,kt_crash_set,kt_crash_test,kt_crash_promote,\
                     kt_deputy,kt_alt,kt_altc_create,kt_altc_set,kt_altc_test,kt_altc_promote,kt_altc_partial; \
                     {VAULT}/kt-my-admin2={},kt_super,kt_creator,kt_granter,kt_roled,kt_victim",
                    server.admin_user
                ),
            ),
        ]);
        let vault = Arc::new(AzureKeyVault::from_settings(&settings).unwrap());
        Self { vault, settings, server }
    }

    fn provider(&self, strategy: Strategy) -> Arc<dyn Provider> {
        Arc::new(
            Mysql::new(strategy, self.vault.clone(), self.settings.ca_file.as_deref())
                .unwrap()
                .bound(self.settings.providers.mysql.clone()),
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

    async fn seed_admin(&self, name: &str) {
        self.seed(name, &self.server.json(&self.server.admin_user, &self.server.admin_password), &[]).await;
    }
}

/// Single user: a crash right after each step, then the redelivery. The vault's latest value logs in, the password
/// was changed exactly once, and the admin's never.
async fn scenario_single_user_crashes() {
    let child = Child::new();
    let server = &child.server;
    child.seed_admin("kt-my-admin").await;
    let admin_before = server.fingerprint(&server.admin_user).await;
    let normal = child.engine(child.provider(Strategy::SingleUser));
    let policy = [("KeyturnRotation", "mysql"), ("KeyturnAdminSecret", "kt-my-admin")];
    for (step, user) in [
        (Step::Create, "kt_crash_create"),
        (Step::Set, "kt_crash_set"),
        (Step::Test, "kt_crash_test"),
        (Step::Promote, "kt_crash_promote"),
    ] {
        let name = user.replace('_', "-");
        server.create_user(user, "initial-pw").await;
        let v0 = child.seed(&name, &server.json(user, "initial-pw"), &policy).await;
        next_second().await;
        let fingerprint0 = server.fingerprint(user).await;

        let reached = Arc::new(Notify::new());
        let crashing = child.engine(Arc::new(CrashAfter {
            inner: child.provider(Strategy::SingleUser),
            step,
            reached: reached.clone(),
        }));
        tokio::time::timeout(BOUND, run_until_crash(crashing.rotate(&event(&name, &v0)), &reached))
            .await
            .expect("the crash point was reached in time");
        let fingerprint1 = server.fingerprint(user).await;
        assert_eq!(fingerprint1 == fingerprint0, step == Step::Create, "{step:?}: changed by the crashed attempt?");
        let pending_home = child.latest(&format!("{name}{}", pending::SUFFIX)).await;
        assert_eq!(pending_home.properties.tags.get(pending::STATE).map(String::as_str), Some("pending"), "{step:?}");
        let latest = child.latest(&name).await;
        assert_eq!(latest.properties.version != v0, step == Step::Promote, "{step:?}: promoted by the crash?");

        // Event Grid redelivers the same event.
        next_second().await;
        let outcome = child.rotate(&normal, &name, &v0).await.unwrap();
        if step == Step::Promote {
            assert!(matches!(outcome, RotationOutcome::AlreadyRotated { .. }), "{step:?}: {outcome}");
        } else {
            assert!(matches!(&outcome, RotationOutcome::Rotated { from, .. } if from == &v0), "{step:?}: {outcome}");
        }
        let fingerprint2 = server.fingerprint(user).await;
        if step == Step::Create {
            assert_ne!(fingerprint2, fingerprint1, "{step:?}: the redelivery must set the password");
        } else {
            assert_eq!(fingerprint2, fingerprint1, "{step:?}: the password was changed twice");
        }
        let latest = child.latest(&name).await;
        let (login, password) = login_of(latest.value.expose());
        assert_eq!(login, user);
        assert!(server.logs_in(user, &password).await, "{step:?}: the vault's latest value does not log in");
        assert!(!server.logs_in(user, "initial-pw").await, "{step:?}: the old password still works");
        assert_eq!(latest.properties.tags.get("KeyturnRotatedFrom"), Some(&v0));
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
        assert!(server.logs_in(user, &newest).await);
        assert!(!server.logs_in(user, &password).await);
    }
    assert_eq!(server.fingerprint(&server.admin_user).await, admin_before, "the admin's password never changes");
    assert!(server.logs_in(&server.admin_user, &server.admin_password).await);
}

/// A pending home naming another login (someone with write access to it, or a bug) is refused before any password
/// changes: the confused-deputy guard.
async fn scenario_confused_deputy() {
    let child = Child::new();
    let server = &child.server;
    child.seed_admin("kt-my-admin").await;
    let (user, name) = ("kt_deputy", "kt-deputy");
    server.create_user(user, "initial-pw").await;
    let policy = [("KeyturnRotation", "mysql"), ("KeyturnAdminSecret", "kt-my-admin")];
    let v0 = child.seed(name, &server.json(user, "initial-pw"), &policy).await;
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
    let admin_before = server.fingerprint(&server.admin_user).await;

    let error = child.rotate(&child.engine(child.provider(Strategy::SingleUser)), name, &v0).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("refusing to act"), "{error}");
    assert!(!error.to_string().contains("attacker-chosen"), "an error carries no secret: {error}");
    assert_eq!(server.fingerprint(&server.admin_user).await, admin_before);
    assert!(server.logs_in(user, "initial-pw").await);
    assert_eq!(child.latest(name).await.properties.version, v0);
}

/// Alternating users under 10 concurrent duplicate deliveries: one rotation; the clone is created with the base
/// login's grants; the old credential keeps working through the overlap (until the next rotation) and stops after.
async fn scenario_alternating_duplicates() {
    let child = Child::new();
    let server = &child.server;
    let (user, name) = ("kt_alt", "kt-alt");
    server.create_user(user, "initial-pw").await;
    let mut admin = server.admin().await;
    admin
        .query_drop(
            "DROP DATABASE IF EXISTS kt_alt_db; CREATE DATABASE kt_alt_db; CREATE TABLE kt_alt_db.t (n int); \
             INSERT INTO kt_alt_db.t VALUES (42); GRANT SELECT ON kt_alt_db.* TO 'kt_alt'@'%'",
        )
        .await
        .unwrap();
    child.seed_admin("kt-my-admin").await;
    let admin_before = server.fingerprint(&server.admin_user).await;
    let v0 = child
        .seed(
            name,
            &server.json(user, "initial-pw"),
            &[("KeyturnRotation", "mysql-alternating"), ("KeyturnAdminSecret", "kt-my-admin")],
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
    let again = child.rotate(&engine, name, &v0).await.unwrap();
    assert!(matches!(again, RotationOutcome::AlreadyRotated { .. }), "{again}");

    let latest = child.latest(name).await;
    let (login, clone_password) = login_of(latest.value.expose());
    assert_eq!(login, "kt_alt_clone");
    assert!(server.logs_in("kt_alt_clone", &clone_password).await);
    assert!(server.logs_in(user, "initial-pw").await, "the previous credential keeps working through the overlap");
    let mut clone = server.login("kt_alt_clone", &clone_password).await.unwrap();
    let n: Option<i32> = clone.query_first("SELECT n FROM kt_alt_db.t").await.unwrap();
    assert_eq!(n, Some(42), "the clone has the base login's grants");

    let v1 = latest.properties.version.clone();
    let outcome = child.rotate(&engine, name, &v1).await.unwrap();
    assert!(matches!(outcome, RotationOutcome::Rotated { .. }), "{outcome}");
    let (login, base_password) = login_of(child.latest(name).await.value.expose());
    assert_eq!(login, user);
    assert!(server.logs_in(user, &base_password).await);
    assert!(!server.logs_in(user, "initial-pw").await, "the credential two versions back stops working");
    assert!(server.logs_in("kt_alt_clone", &clone_password).await, "the previous version still logs in");
    assert_eq!(server.fingerprint(&server.admin_user).await, admin_before, "the admin's password never changes");
}

/// Alternating users, a crash right after each step, then the redelivery: the clone is created once, with the base's
/// grants, its password set once; the base login is never touched. And a crash between `CREATE USER` and the grants
/// (a clone that logs in with the pending password but has none of the base's grants): the redelivery completes the
/// grants without changing the password again.
async fn scenario_alternating_crashes() {
    let child = Child::new();
    let server = &child.server;
    child.seed_admin("kt-my-admin").await;
    let engine = child.engine(child.provider(Strategy::Alternating));
    let policy = [("KeyturnRotation", "mysql-alternating"), ("KeyturnAdminSecret", "kt-my-admin")];
    let mut admin = server.admin().await;
    admin
        .query_drop(
            "DROP DATABASE IF EXISTS kt_altc_db; CREATE DATABASE kt_altc_db; CREATE TABLE kt_altc_db.t (n int); \
             INSERT INTO kt_altc_db.t VALUES (7)",
        )
        .await
        .unwrap();
    for (step, user) in [
        (Some(Step::Create), "kt_altc_create"),
        (Some(Step::Set), "kt_altc_set"),
        (Some(Step::Test), "kt_altc_test"),
        (Some(Step::Promote), "kt_altc_promote"),
        (None, "kt_altc_partial"),
    ] {
        let name = user.replace('_', "-");
        let clone = format!("{user}_clone");
        server.create_user(user, "initial-pw").await;
        admin.query_drop(format!("GRANT SELECT ON kt_altc_db.* TO '{user}'@'%'")).await.unwrap();
        let base_before = server.fingerprint(user).await;
        let v0 = child.seed(&name, &server.json(user, "initial-pw"), &policy).await;

        let reached = Arc::new(Notify::new());
        let crashing = child.engine(Arc::new(CrashAfter {
            inner: child.provider(Strategy::Alternating),
            step: step.unwrap_or(Step::Create),
            reached: reached.clone(),
        }));
        tokio::time::timeout(BOUND, run_until_crash(crashing.rotate(&event(&name, &v0)), &reached)).await.unwrap();
        if step.is_none() {
            // What a kill between CREATE USER and the grants leaves: the clone, with the pending password, no grants.
            let pending_home = child.latest(&format!("{name}{}", pending::SUFFIX)).await;
            let (_, pending_password) = login_of(pending_home.value.expose());
            admin.query_drop(format!("CREATE USER '{clone}'@'%' IDENTIFIED BY '{pending_password}'")).await.unwrap();
        }
        let clone_exists = step != Some(Step::Create);
        let clone_before = if clone_exists { Some(server.fingerprint(&clone).await) } else { None };

        next_second().await;
        let outcome = child.rotate(&engine, &name, &v0).await.unwrap();
        assert!(
            matches!(outcome, RotationOutcome::Rotated { .. } | RotationOutcome::AlreadyRotated { .. }),
            "{step:?}: {outcome}"
        );
        let latest = child.latest(&name).await;
        let (login, password) = login_of(latest.value.expose());
        assert_eq!(login, clone, "{step:?}");
        assert!(server.logs_in(&clone, &password).await, "{step:?}: the vault's latest value does not log in");
        if let Some(before) = clone_before {
            assert_eq!(server.fingerprint(&clone).await, before, "{step:?}: the clone's password was set twice");
        }
        let mut session = server.login(&clone, &password).await.unwrap();
        let n: Option<i32> = session.query_first("SELECT n FROM kt_altc_db.t").await.unwrap();
        assert_eq!(n, Some(7), "{step:?}: the clone carries the base's grants");
        assert_eq!(server.fingerprint(user).await, base_before, "{step:?}: the base login was touched");
        assert!(server.logs_in(user, "initial-pw").await);
        assert_eq!(child.latest(&name).await.properties.tags.get("KeyturnRotatedFrom"), Some(&v0));
    }
}

/// The issue 13 attacks, each by a writer of one secret naming the admin secret: the admin login itself (directly,
/// and as `<admin>_clone`, whose alternate is `<admin>`), logins with SUPER, CREATE USER or GRANT OPTION on `*.*`,
/// one holding a role with SUPER, an existing `_clone` without its base's grants, a base login no binding lists, and
/// a server the deployment does not bind. Each is refused permanently before any password changes.
async fn scenario_refusals() {
    let child = Child::new();
    let server = &child.server;
    child.seed_admin("kt-my-admin2").await;
    let mut admin = server.admin().await;
    for user in ["kt_super", "kt_creator", "kt_granter", "kt_roled", "kt_victim", "kt_unbound"] {
        server.create_user(user, &format!("{user}-pw")).await;
    }
    admin
        .query_drop(
            "GRANT SUPER ON *.* TO 'kt_super'@'%'; GRANT CREATE USER ON *.* TO 'kt_creator'@'%'; \
             GRANT SELECT ON *.* TO 'kt_granter'@'%' WITH GRANT OPTION; \
             DROP ROLE IF EXISTS kt_power_role; CREATE ROLE kt_power_role; GRANT SUPER ON *.* TO kt_power_role; \
             GRANT kt_power_role TO 'kt_roled'@'%'; \
             CREATE USER 'kt_victim_clone'@'%' IDENTIFIED BY 'foreign-pw'; \
             DROP DATABASE IF EXISTS kt_victim_db; CREATE DATABASE kt_victim_db; \
             GRANT SELECT ON kt_victim_db.* TO 'kt_victim'@'%'",
        )
        .await
        .unwrap();
    let admin_clone = format!("{}_clone", server.admin_user);
    let alternating = [("KeyturnRotation", "mysql-alternating"), ("KeyturnAdminSecret", "kt-my-admin2")];
    let single = [("KeyturnRotation", "mysql"), ("KeyturnAdminSecret", "kt-my-admin2")];
    // (secret, login it names, the strategy's tags, what the refusal says)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 8] = [
        ("kt-atk-admin", server.admin_user.as_str(), &single, "the admin login itself"),
        ("kt-atk-admin-clone", admin_clone.as_str(), &alternating, "the admin login itself"),
        ("kt-atk-super", "kt_super", &single, "has SUPER ON *.*"),
        ("kt-atk-creator", "kt_creator", &alternating, "has CREATE USER ON *.*"),
        ("kt-atk-granter", "kt_granter", &single, "has GRANT OPTION ON *.*"),
        ("kt-atk-roled", "kt_roled", &single, "has SUPER ON *.* (through role 'kt_power_role'@'')"),
        ("kt-atk-clone", "kt_victim", &alternating, "does not carry the same grants as 'kt_victim'"),
        ("kt-atk-unbound", "kt_unbound", &alternating, "is not bound to manage 'kt_unbound' in KEYTURN_MYSQL_ADMINS"),
    ];
    let watched = [
        server.admin_user.as_str(),
        "kt_super",
        "kt_creator",
        "kt_granter",
        "kt_roled",
        "kt_victim",
        "kt_victim_clone",
        "kt_unbound",
    ];
    let before = futures::future::join_all(watched.map(|u| server.fingerprint(u))).await;
    let engine = child.engine(child.provider(Strategy::Alternating));
    let single_engine = child.engine(child.provider(Strategy::SingleUser));
    for (name, user, policy, why) in cases {
        let v0 = child.seed(name, &server.json(user, "whatever-pw"), policy).await;
        let engine = if *policy == single { &single_engine } else { &engine };
        let error = child.rotate(engine, name, &v0).await.unwrap_err();
        assert!(!error.is_retryable(), "{name}: {error}");
        assert!(error.to_string().contains(why), "{name}: {error}");
        assert!(!error.to_string().contains("whatever-pw"), "{name}: an error carries no secret: {error}");
        assert_eq!(child.latest(name).await.properties.version, v0, "{name}: the writer's secret is unchanged");
    }
    let after = futures::future::join_all(watched.map(|u| server.fingerprint(u))).await;
    assert_eq!(before, after, "no password changed");
    assert!(server.logs_in(&server.admin_user, &server.admin_password).await);
    assert!(server.logs_in("kt_victim_clone", "foreign-pw").await);

    // A server the deployment does not bind (the writer's own, say): refused before any connection.
    let elsewhere = serde_json::json!({"host": "127.0.0.2", "port": server.port, "user": "kt_victim", "password": "x"});
    let e0 = child.seed("kt-atk-server", &elsewhere.to_string(), &single).await;
    let error = child.rotate(&single_engine, "kt-atk-server", &e0).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(
        error.to_string().contains("127.0.0.2:") && error.to_string().contains("is not in KEYTURN_MYSQL_SERVERS"),
        "{error}"
    );
}

/// TLS is required and verified: a server whose certificate the trust roots do not vouch for is never sent a
/// login (the handshake fails first), and the failure is retryable, as any network failure.
async fn scenario_untrusted_server() {
    let server = Server::from_env("KEYTURN_TEST_MYSQL", "MariaDB");
    // KEYTURN_CA_FILE without the test CA: only the Key Vault emulator's CA and the platform's roots.
    let settings = support::child_settings(&[
        ("KEYTURN_MYSQL_SERVERS", format!("{}:{}", server.host, server.port)),
        ("KEYTURN_MYSQL_ADMINS", format!("{VAULT}/kt-my-admin=kt_untrusted")),
    ]);
    let vault = Arc::new(AzureKeyVault::from_settings(&settings).unwrap());
    let provider = Mysql::new(Strategy::SingleUser, vault.clone(), settings.ca_file.as_deref())
        .unwrap()
        .bound(settings.providers.mysql.clone());
    let engine =
        Engine::new(vault.clone(), Arc::new(InProcessLock::default()), Providers::default().with(Arc::new(provider)));
    server.create_user("kt_untrusted", "initial-pw").await;
    vault
        .set_secret(
            VAULT,
            "kt-my-admin",
            new_secret(&server.json(&server.admin_user, &server.admin_password), tags(&[])),
        )
        .await
        .unwrap();
    let v0 = vault
        .set_secret(
            VAULT,
            "kt-untrusted",
            new_secret(
                &server.json("kt_untrusted", "initial-pw"),
                tags(&[
                    ("ValidityPeriodDays", "60"),
                    ("KeyturnRotation", "mysql"),
                    ("KeyturnAdminSecret", "kt-my-admin"),
                ]),
            ),
        )
        .await
        .unwrap()
        .version;
    let error = tokio::time::timeout(BOUND, engine.rotate(&event("kt-untrusted", &v0))).await.unwrap().unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().to_ascii_lowercase().contains("certificate"), "{error}");
    assert!(server.logs_in("kt_untrusted", "initial-pw").await, "nothing changed");
}

#[tokio::test]
async fn mysql_rotation() {
    match std::env::var(SCENARIO).as_deref() {
        Ok("single-user-crashes") => return scenario_single_user_crashes().await,
        Ok("confused-deputy") => return scenario_confused_deputy().await,
        Ok("alternating-duplicates") => return scenario_alternating_duplicates().await,
        Ok("alternating-crashes") => return scenario_alternating_crashes().await,
        Ok("refusals") => return scenario_refusals().await,
        Ok("untrusted-server") => return scenario_untrusted_server().await,
        Ok(other) => panic!("unknown scenario {other}"),
        Err(_) => {}
    }
    let server = Server::from_env("KEYTURN_TEST_MYSQL", "MariaDB");
    let ca = std::fs::read_to_string(&server.ca_file).unwrap();
    let parent = Parent::start().await;
    for scenario in
        ["single-user-crashes", "confused-deputy", "alternating-duplicates", "alternating-crashes", "refusals"]
    {
        parent.run_child(TEST, scenario, std::slice::from_ref(&ca), &[]).await;
    }
    parent.run_child(TEST, "untrusted-server", &[], &[]).await;
    parent.stop().await;
}
