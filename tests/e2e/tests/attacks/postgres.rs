//! The PostgreSQL attacks, through the real `near-expiry` binary against a real PostgreSQL (TLS, SCRAM;
//! `keyturn_e2e::postgres`). One deployment binds the real server, the admin secret `pg-admin` to the base
//! login `kt_atk_app`, and the admin secret `pg-admin-broad` (a careless binding) to the admin login itself and
//! to `kt_atk_victim`; a secret's writer then tries, each with their own secret:
//!
//! | secret | value / tags | refused because |
//! |---|---|---|
//! | `atk-admin` | `user: <admin>_clone`, `KeyturnAdminSecret=pg-admin` | `pg-admin` is not bound to the admin login (`KEYTURN_POSTGRES_ADMINS`) |
//! | `atk-admin-broad` | the same with `pg-admin-broad` | even a binding that lists it: the admin never changes itself |
//! | `atk-victim` | `user: kt_atk_other` (no binding lists it) | `KEYTURN_POSTGRES_ADMINS`; no `kt_atk_other_clone` is created |
//! | `atk-foreign-clone` | `user: kt_atk_victim`, whose `_clone` exists and is someone else's | not a member of its base |
//! | `atk-server` | a server the deployment did not bind | `KEYTURN_POSTGRES_SERVERS`; the server gets no connection |
//! | `atk-harvest-*` | a bound address answered by a harvest server | no SCRAM channel binding; it receives no password |
//!
//! Beside them, `app-db`'s writer rotates their own secret through the bound admin (`postgres-alternating`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyturn_e2e::database::TestServer;
use keyturn_e2e::postgres::PgServer;
use keyturn_e2e::receivers::http_sink;
use keyturn_e2e::{Chain, NEAR_EXPIRY_EVENT_TYPES, bounded, fast_retries, fast_stack, workspace_binary};
use keyturn_local::tls::LocalCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::{assert_refused, near_expiry, seed_for_a_year};

const VAULT: &str = "kv-atk";

/// A secret's tags, as pairs.
type Tags = Vec<(&'static str, &'static str)>;

/// How a harvest server asks for the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// `AuthenticationCleartextPassword`: the password itself would come back.
    Cleartext,
    /// `AuthenticationMD5Password`: a hash of it, as good as the password against this server.
    Md5,
    /// `AuthenticationSASL` offering `SCRAM-SHA-256` only: a proof not bound to the TLS session, which a
    /// server in the middle could relay to the real one.
    ScramWithoutBinding,
}

impl Ask {
    /// The server's authentication request (protocol 3.0: `'R'`, length, code, payload).
    fn request(self) -> Vec<u8> {
        let (code, payload): (i32, &[u8]) = match self {
            Ask::Cleartext => (3, b""),
            Ask::Md5 => (5, b"salt"),
            Ask::ScramWithoutBinding => (10, b"SCRAM-SHA-256\0\0"),
        };
        let length = i32::try_from(8 + payload.len()).unwrap();
        let mut message = vec![b'R'];
        message.extend_from_slice(&length.to_be_bytes());
        message.extend_from_slice(&code.to_be_bytes());
        message.extend_from_slice(payload);
        message
    }
}

/// A server that speaks PostgreSQL's startup as a real server would (SSLRequest → `S`, a TLS handshake with a
/// certificate the handler trusts, the startup message) and then asks for the password its way. It records
/// the type byte of every message the client sends after that, and every byte: a `'p'` message (password,
/// MD5 hash or SASL response) is what a harvest would collect.
struct HarvestServer {
    port: u16,
    connections: Arc<Mutex<usize>>,
    /// Everything the clients sent after the authentication request, per connection.
    after_request: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HarvestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

/// One connection of a harvest server: TLS as PostgreSQL negotiates it, the startup message, the request for
/// the password; returns whatever the client sent after that request until it hung up (or 10 s passed).
async fn ask_for_the_password(
    mut socket: tokio::net::TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    ask: Ask,
) -> std::io::Result<Vec<u8>> {
    let mut ssl_request = [0u8; 8];
    socket.read_exact(&mut ssl_request).await?;
    if ssl_request != SSL_REQUEST {
        return Err(std::io::Error::other("not an SSLRequest: keyturn always asks for TLS first"));
    }
    socket.write_all(b"S").await?;
    let mut tls = acceptor.accept(socket).await?;
    let length = usize::try_from(tls.read_i32().await?).map_err(std::io::Error::other)?;
    let mut startup = vec![0u8; length.saturating_sub(4)];
    tls.read_exact(&mut startup).await?;
    tls.write_all(&ask.request()).await?;
    tls.flush().await?;
    let mut sent = Vec::new();
    // An unclean hang-up ends the read with an error; what arrived before it is kept.
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut sent)).await;
    Ok(sent)
}

impl HarvestServer {
    async fn start(ask: Ask, ca: &LocalCa) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
        let connections: Arc<Mutex<usize>> = Arc::default();
        let after_request: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (count, record) = (connections.clone(), after_request.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
                let (acceptor, record) = (acceptor.clone(), record.clone());
                tokio::spawn(async move {
                    // A client that does not speak the protocol as keyturn does records nothing; the test's
                    // refusal assertions then fail, naming what the handler said.
                    if let Ok(sent) = ask_for_the_password(socket, &acceptor, ask).await {
                        record.lock().unwrap().push(sent);
                    }
                });
            }
        });
        Self { port, connections, after_request, task }
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    /// The type bytes of the messages clients sent after the authentication request.
    fn message_types(&self) -> Vec<u8> {
        let mut types = Vec::new();
        for sent in self.after_request.lock().unwrap().iter() {
            let mut rest = sent.as_slice();
            while rest.len() >= 5 {
                types.push(rest[0]);
                let length = usize::try_from(i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]])).unwrap();
                rest = rest.get(1 + length..).unwrap_or_default();
            }
        }
        types
    }

    fn received(&self, needle: &str) -> bool {
        self.after_request.lock().unwrap().iter().any(|sent| sent.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }
}

#[tokio::test]
async fn a_secret_writer_cannot_steer_the_postgres_admin_or_harvest_a_password() {
    bounded(Duration::from_secs(180), async {
        let server = PgServer::from_env();
        let dir = tempfile::tempdir().unwrap();
        let sink = http_sink().await;
        // The harvest servers' certificate is from a CA the handler trusts: the attacker holds a valid
        // certificate for the address (or answers for a bound server), so TLS alone does not stop them.
        let harvest_ca = LocalCa::generate(dir.path(), &[]).unwrap();
        let harvest = [
            HarvestServer::start(Ask::Cleartext, &harvest_ca).await,
            HarvestServer::start(Ask::Md5, &harvest_ca).await,
            HarvestServer::start(Ask::ScramWithoutBinding, &harvest_ca).await,
        ];
        // Not bound: no connection may reach it at all.
        let unbound = HarvestServer::start(Ask::Cleartext, &harvest_ca).await;

        let stack = fast_stack(&[VAULT]).await;
        let bundle = server.ca_bundle(dir.path(), &[stack.emulator().ca_pem(), harvest_ca.ca_pem()]);
        let mut settings: Vec<(String, String)> =
            stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
        settings.push(("KEYTURN_CA_FILE".to_owned(), bundle));
        let mut servers = vec![format!("{}:{}", server.host, server.port)];
        servers.extend(harvest.iter().map(|h| format!("127.0.0.1:{}", h.port)));
        settings.push(("KEYTURN_POSTGRES_SERVERS".to_owned(), servers.join(",")));
        settings.push((
            "KEYTURN_POSTGRES_ADMINS".to_owned(),
            format!("{VAULT}/pg-admin=kt_atk_app; {VAULT}/pg-admin-broad={},kt_atk_victim", server.admin_user),
        ));
        settings.push(("KEYTURN_NOTIFY".to_owned(), sink.channels()));
        settings.extend(fast_retries());

        for (role, password) in [
            ("kt_atk_app", "app-initial-pw-01"),
            ("kt_atk_victim", "victim-pw-0002"),
            ("kt_atk_other", "other-pw-0003"),
        ] {
            server.create_login(role, password).await;
        }
        // Someone else's role that merely has the clone's name (not a member of kt_atk_victim).
        server.admin("CREATE ROLE kt_atk_victim_clone LOGIN PASSWORD 'foreign-clone-pw-04'").await;
        let watched =
            ["kt_atk_app", "kt_atk_victim", "kt_atk_victim_clone", "kt_atk_other", server.admin_user.as_str()];
        let mut before = Vec::new();
        for role in watched {
            before.push(server.fingerprint(role).await);
        }

        let admin_value = server.admin_value();
        seed_for_a_year(&stack, VAULT, "pg-admin", &admin_value, &[]);
        seed_for_a_year(&stack, VAULT, "pg-admin-broad", &admin_value, &[]);
        let alternating = |admin: &'static str| {
            vec![
                ("KeyturnRotation", "postgres-alternating"),
                ("ValidityPeriodDays", "60"),
                ("KeyturnAdminSecret", admin),
            ]
        };
        let single = [("KeyturnRotation", "postgres"), ("ValidityPeriodDays", "60")];
        let admin_clone = format!("{}_clone", server.admin_user);
        let here = |user: &str, password: &str| server.value(server.port, user, password);
        let at = |port: u16| PgServer::value_at("127.0.0.1", port, "kt_atk_app", "app-initial-pw-01");
        let secrets: Vec<(&str, String, Tags)> = vec![
            ("atk-admin", here(&admin_clone, "writer-guess-0005"), alternating("pg-admin")),
            ("atk-admin-broad", here(&admin_clone, "writer-guess-0006"), alternating("pg-admin-broad")),
            ("atk-victim", here("kt_atk_other", "writer-guess-0007"), alternating("pg-admin")),
            ("atk-foreign-clone", here("kt_atk_victim", "writer-guess-0008"), alternating("pg-admin-broad")),
            ("atk-server", at(unbound.port), single.to_vec()),
            ("atk-harvest-cleartext", at(harvest[0].port), single.to_vec()),
            ("atk-harvest-md5", at(harvest[1].port), single.to_vec()),
            ("atk-harvest-scram", at(harvest[2].port), single.to_vec()),
            ("app-db", here("kt_atk_app", "app-initial-pw-01"), alternating("pg-admin")),
        ];
        let chain =
            Chain::start(stack, "near-expiry", &workspace_binary("near-expiry"), &NEAR_EXPIRY_EVENT_TYPES, settings)
                .await;
        for (name, value, pairs) in &secrets {
            let version = seed_for_a_year(&chain.stack, VAULT, name, value, pairs);
            near_expiry(&chain, VAULT, name, &version);
        }
        chain.settle(secrets.len(), Duration::from_secs(120)).await;

        // Each attack: a permanent refusal naming what is missing, with a warning.
        let admins = "is not bound to manage";
        assert_refused(&chain, &sink, VAULT, "atk-admin", &["KEYTURN_POSTGRES_ADMINS", admins]);
        assert_refused(&chain, &sink, VAULT, "atk-admin-broad", &["is the admin login itself"]);
        assert_refused(&chain, &sink, VAULT, "atk-victim", &["KEYTURN_POSTGRES_ADMINS", "'kt_atk_other'"]);
        assert_refused(&chain, &sink, VAULT, "atk-foreign-clone", &["is not a member of 'kt_atk_victim'"]);
        assert_refused(&chain, &sink, VAULT, "atk-server", &["is not in KEYTURN_POSTGRES_SERVERS"]);
        for name in ["atk-harvest-cleartext", "atk-harvest-md5", "atk-harvest-scram"] {
            assert_refused(&chain, &sink, VAULT, name, &["without SCRAM channel binding", "sent nothing"]);
        }

        // Nothing outside the attackers' own secrets changed: every watched login keeps its password (the
        // admin, the victim and the foreign clone still log in with theirs), no clone was created for
        // kt_atk_other, the unbound server was never contacted, the harvest servers got no password.
        for (role, verifier) in watched.iter().zip(&before) {
            assert_eq!(&server.fingerprint(role).await, verifier, "{role}'s password changed");
        }
        assert!(server.logs_in(&server.admin_user, &server.admin_password).await);
        assert!(server.logs_in("kt_atk_victim_clone", "foreign-clone-pw-04").await);
        assert!(!server.role_exists("kt_atk_other_clone").await, "a clone was created for an unbound login");
        assert_eq!(unbound.connections(), 0, "keyturn connected to a server the deployment did not bind");
        for (server_asking, ask) in harvest.iter().zip([Ask::Cleartext, Ask::Md5, Ask::ScramWithoutBinding]) {
            assert!(
                server_asking.connections() >= 1,
                "{ask:?}: the harvest server was never asked: the test proves nothing"
            );
            assert!(
                !server_asking.message_types().contains(&b'p'),
                "{ask:?}: the client answered the password request"
            );
            assert!(!server_asking.received("app-initial-pw-01"), "{ask:?}: the password reached the harvest server");
        }

        // The legitimate path beside them: the writer's own secret rotates to the alternate login.
        let store = chain.stack.emulator().store();
        let own = store.list_secret_versions(VAULT, "app-db").unwrap();
        assert_eq!(own.len(), 2, "app-db rotated once");
        let rotated: serde_json::Value = serde_json::from_str(&own[1].version.data.value).unwrap();
        assert_eq!(rotated["user"], "kt_atk_app_clone");
        assert!(server.logs_in("kt_atk_app_clone", rotated["password"].as_str().unwrap()).await);

        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
    })
    .await;
}
