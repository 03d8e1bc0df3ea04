//! Real handshakes, in memory (no socket), against a server whose certificate a fresh CA issued.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use keyturn_tls::{Alpn, TrustRoots, platform_store_loads};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

struct Server {
    ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

fn server() -> Server {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    Server { ca_pem: ca.pem(), config: Arc::new(config) }
}

/// Runs a handshake to its end; the client's error if it refused the server.
fn handshake(roots: &TrustRoots, server: &Server) -> Result<(), rustls::Error> {
    let config = Arc::new(roots.client_config(Alpn::Http).unwrap());
    let mut client = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut peer = rustls::ServerConnection::new(server.config.clone()).unwrap();
    for _ in 0..10 {
        let mut bytes = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut bytes).unwrap();
        }
        if !bytes.is_empty() {
            peer.read_tls(&mut bytes.as_slice()).unwrap();
            // The server's error is the client's alert; the client's own error is what we report.
            let _ = peer.process_new_packets();
        }
        let mut bytes = Vec::new();
        while peer.wants_write() {
            peer.write_tls(&mut bytes).unwrap();
        }
        if !bytes.is_empty() {
            client.read_tls(&mut bytes.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        if !client.is_handshaking() && !peer.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

// The only test here that handshakes, so the process-wide load count is its own under either test runner.
#[test]
fn the_ca_file_is_trusted_beside_the_platform_store_which_is_read_once_on_the_first_handshake() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &server.ca_pem).unwrap();

    let with_ca = TrustRoots::for_ca_file(Some(&ca_file)).unwrap();
    let platform_only = TrustRoots::for_ca_file(None).unwrap();
    let from_pem = TrustRoots::from_pem(server.ca_pem.as_bytes(), "test", "inline").unwrap();
    assert_eq!(platform_store_loads(), 0, "building handles must not read the system store");

    handshake(&with_ca, &server).unwrap();
    handshake(&from_pem, &server).unwrap();
    let refused = handshake(&platform_only, &server).unwrap_err();
    assert!(
        matches!(refused, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
        "{refused:?}"
    );
    // A second handle for the same file is the same verifier, and the file is not read again.
    std::fs::remove_file(&ca_file).unwrap();
    let again = TrustRoots::for_ca_file(Some(&ca_file)).unwrap();
    handshake(&again, &server).unwrap();
    assert_eq!(platform_store_loads(), 1, "three verifiers, four handshakes: the system store read once");
}

#[test]
fn a_bad_bundle_is_reported_at_once_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = TrustRoots::for_ca_file(Some(&missing)).unwrap_err().to_string();
    assert!(err.starts_with("KEYTURN_CA_FILE: cannot read '") && err.contains("missing.pem"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let err = TrustRoots::for_ca_file(Some(&empty)).unwrap_err().to_string();
    assert!(err.ends_with("empty.pem' holds no certificate"), "{err}");
    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").unwrap();
    let err = TrustRoots::for_ca_file(Some(&broken)).unwrap_err().to_string();
    assert!(err.contains("broken.pem' is not a PEM certificate bundle"), "{err}");
}
