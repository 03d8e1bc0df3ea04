//! The trust roots of a keyturn process: the platform's, plus the PEM bundle of `KEYTURN_CA_FILE`.
//!
//! # Layout
//! - [`TrustRoots`]: a cheap handle (clone it) to a set of extra roots and the one verifier built from them;
//!   [`TrustRoots::for_ca_file`] gives every client of a process the same handle for the same file.
//! - [`TrustRoots::client_config`]: the rustls configuration every TLS client keyturn builds uses (the SDK's
//!   reqwest transport, notification and provider HTTP clients, the PostgreSQL connector).
//! - [`TrustRoots::root_certificates`]: the same roots as a list, for the one client that takes no verifier
//!   (MySQL's).
//!
//! Why: each TLS client used to build its own verifier, and building one reads and parses the whole system
//! store (`/etc/ssl/certs`, ~150 certificates): four times before a handler answered its first request, for
//! clients the first event mostly never uses. Here the system store is read once per process, and only when
//! the first TLS handshake needs it; the extra roots are read and checked at once, so a bad `KEYTURN_CA_FILE`
//! is still reported at start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A set of extra roots that cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TlsError {
    #[error("KEYTURN_CA_FILE: cannot read '{path}': {reason}")]
    Read { path: String, reason: String },
    #[error("{origin}: '{path}' is not a PEM certificate bundle: {reason}")]
    NotPem { origin: &'static str, path: String, reason: String },
    #[error("{origin}: '{path}' holds no certificate")]
    Empty { origin: &'static str, path: String },
    #[error("{origin}: '{path}': certificate {index} cannot be a trust root: {reason}")]
    BadRoot { origin: &'static str, path: String, index: usize, reason: String },
}

/// Which application protocols a client offers in its TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2 or HTTP/1.1 (what reqwest offers with the `http2` feature).
    Http,
    /// None (PostgreSQL's classic `sslmode` negotiation, SMTP).
    None,
}

/// The platform's roots plus some extra ones, verified with webpki; see the crate documentation.
#[derive(Clone)]
pub struct TrustRoots {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the extra roots came from, for `Debug` (never their content).
    origin: String,
    extra: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    /// Built on the first handshake: `Err` holds why no verifier could be built (then every handshake fails
    /// with that reason rather than trusting anything).
    verifier: OnceLock<Result<Arc<dyn ServerCertVerifier>, String>>,
}

impl std::fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustRoots(platform + {} extra from {})", self.inner.extra.len(), self.inner.origin)
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier(platform + {} extra from {})", self.extra.len(), self.origin)
    }
}

/// The handles [`TrustRoots::for_ca_file`] gave out, one per file (a process sees one `KEYTURN_CA_FILE`; the
/// CLI and tests may see a few).
static BY_FILE: Mutex<Vec<(Option<PathBuf>, TrustRoots)>> = Mutex::new(Vec::new());

impl TrustRoots {
    /// The platform's roots plus those of `ca_file` (`KEYTURN_CA_FILE`): the same handle for the same file for
    /// the life of the process, so the file is read once and every client shares one verifier. The file is read
    /// and checked now; the platform's store when the first handshake needs it.
    pub fn for_ca_file(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        // A poisoned lock only means another thread panicked while pushing; the list itself is still sound.
        let mut known = BY_FILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, roots)) = known.iter().find(|(path, _)| path.as_deref() == ca_file) {
            return Ok(roots.clone());
        }
        let roots = match ca_file {
            None => Self::from_ders(Vec::new(), "no extra roots".to_owned()),
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| TlsError::Read { path: path.display().to_string(), reason: e.to_string() })?;
                Self::from_pem(&pem, "KEYTURN_CA_FILE", &path.display().to_string())?
            }
        };
        known.push((ca_file.map(Path::to_path_buf), roots.clone()));
        Ok(roots)
    }

    /// The platform's roots plus the certificates of `pem` (which must hold at least one). `origin` and `path`
    /// name where the bundle came from, in errors.
    pub fn from_pem(pem: &[u8], origin: &'static str, path: &str) -> Result<Self, TlsError> {
        let mut extra = Vec::new();
        for certificate in CertificateDer::pem_slice_iter(pem) {
            extra.push(certificate.map_err(|e| TlsError::NotPem {
                origin,
                path: path.to_owned(),
                reason: e.to_string(),
            })?);
        }
        if extra.is_empty() {
            return Err(TlsError::Empty { origin, path: path.to_owned() });
        }
        // Checked now (parsing a handful of certificates costs microseconds) so that a bad bundle is reported
        // at start, not on the first handshake.
        for (index, certificate) in extra.iter().enumerate() {
            rustls::RootCertStore::empty().add(certificate.clone()).map_err(|e| TlsError::BadRoot {
                origin,
                path: path.to_owned(),
                index: index + 1,
                reason: e.to_string(),
            })?;
        }
        Ok(Self::from_ders(extra, format!("{origin} '{path}'")))
    }

    fn from_ders(extra: Vec<CertificateDer<'static>>, origin: String) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Self { inner: Arc::new(Inner { origin, extra, provider, verifier: OnceLock::new() }) }
    }

    /// A client configuration trusting these roots (TLS 1.2 and 1.3, no client certificate), offering `alpn`.
    /// Cheap: every configuration of a handle shares its one verifier.
    pub fn client_config(&self, alpn: Alpn) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.inner.provider.clone())
            .with_safe_default_protocol_versions()?
            // Not a weakening: this is how a verifier other than a fixed root store is installed; `Inner`
            // verifies with webpki against the platform's roots plus the extra ones.
            .dangerous()
            .with_custom_certificate_verifier(self.inner.clone())
            .with_no_client_auth();
        if alpn == Alpn::Http {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Ok(config)
    }
}

impl TrustRoots {
    /// Reads the system store and builds the verifier now rather than on the first handshake (blocking: call it
    /// off the async runtime). For a process whose first handshake is certain and imminent (a cold start on AWS
    /// Lambda, its event already waiting), so that the reading overlaps other work; a failure is kept and reported
    /// by that handshake, as it would have been.
    pub fn preload(&self) {
        let _ = self.inner.verifier();
    }

    /// Draws one random byte from the crypto provider now rather than in the first handshake (blocking: call it
    /// off the async runtime), for the same kind of process as [`TrustRoots::preload`]: AWS-LC seeds its generator
    /// on first use from CPU-jitter entropy, which measured 30-45 ms of CPU here, the larger part of a Lambda cold
    /// start. Meanwhile the rest of the first event's work goes on.
    pub fn seed_random(&self) {
        let mut byte = [0u8; 1];
        if let Err(error) = self.inner.provider.secure_random.fill(&mut byte) {
            tracing::debug!(?error, "no random byte yet; the first handshake will ask again");
        }
    }

    /// The same roots as certificates, for a TLS client that takes a list of roots rather than a verifier (the
    /// MySQL client): the platform's store (read once per process, shared with the verifier) plus the extra roots.
    pub fn root_certificates(&self) -> Vec<CertificateDer<'static>> {
        let mut roots = platform_certificates().to_vec();
        roots.extend(self.inner.extra.iter().cloned());
        roots
    }
}

/// How many times this process has read the system trust store (for tests and the benchmark).
pub fn platform_store_loads() -> usize {
    PLATFORM_LOADS.load(Ordering::Relaxed)
}

static PLATFORM_LOADS: AtomicUsize = AtomicUsize::new(0);

/// The system trust store, read and parsed once per process on first use: the certificates that make a trust
/// anchor (one bad certificate in the store must not fail every handshake of a client that adds them one by one)
/// and the root store they make. Each certificate is parsed once: the ones the store takes are the usable ones.
struct PlatformStore {
    certificates: Vec<CertificateDer<'static>>,
    roots: rustls::RootCertStore,
}

fn platform_store() -> &'static PlatformStore {
    static STORE: OnceLock<PlatformStore> = OnceLock::new();
    STORE.get_or_init(|| {
        PLATFORM_LOADS.fetch_add(1, Ordering::Relaxed);
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "a system CA certificate could not be loaded");
        }
        let total = loaded.certs.len();
        let mut roots = rustls::RootCertStore::empty();
        let certificates: Vec<_> = loaded.certs.into_iter().filter(|c| roots.add(c.clone()).is_ok()).collect();
        tracing::debug!(
            added = certificates.len(),
            ignored = total - certificates.len(),
            "read the system trust store"
        );
        PlatformStore { certificates, roots }
    })
}

/// The system trust store's usable certificates (see [`platform_store`]).
fn platform_certificates() -> &'static [CertificateDer<'static>] {
    &platform_store().certificates
}

/// The system trust store as a root store (see [`platform_store`]).
#[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
fn platform_roots() -> &'static rustls::RootCertStore {
    &platform_store().roots
}

impl Inner {
    fn verifier(&self) -> Result<&Arc<dyn ServerCertVerifier>, rustls::Error> {
        self.verifier
            .get_or_init(|| self.build().map_err(|e| format!("no usable trust roots: {e}")))
            .as_ref()
            .map_err(|reason| rustls::Error::General(reason.clone()))
    }

    /// Linux and the other Unixes: webpki over the system store read once, plus the extra roots (what
    /// rustls-platform-verifier does there, per verifier).
    #[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
    fn build(&self) -> Result<Arc<dyn ServerCertVerifier>, String> {
        let mut store = platform_roots().clone();
        for certificate in &self.extra {
            store.add(certificate.clone()).map_err(|e| e.to_string())?;
        }
        if store.is_empty() {
            return Err("the system trust store holds no certificate and no extra root was given".to_owned());
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), self.provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(verifier)
    }

    /// macOS and Windows: the operating system's verifier (it keeps its own store; nothing is read here).
    #[cfg(not(all(unix, not(target_vendor = "apple"), not(target_os = "android"))))]
    fn build(&self) -> Result<Arc<dyn ServerCertVerifier>, String> {
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(self.extra.clone(), self.provider.clone())
                .map_err(|e| e.to_string())?;
        Ok(Arc::new(verifier))
    }
}

impl ServerCertVerifier for Inner {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    // The handshake signatures depend on the crypto provider only, not on the roots: checked without loading
    // them.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
