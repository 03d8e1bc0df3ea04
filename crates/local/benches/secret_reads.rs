//! Secret reads per second over HTTPS with keep-alive, from concurrent connections, against one vault with
//! throttling off. Target: at least 20,000 reads/s on a 2-core machine.
//!
//! `cargo bench -p keyturn-local --bench secret_reads` (optionally `-- <connections> <seconds>`).
//!
//! The client is a minimal HTTP/1.1 loop over tokio-rustls (request bytes out, status line + Content-Length
//! body in) so that the client spends as little of the shared CPU as possible and the figure measures the
//! emulator, not the client library.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use keyturn_local::keyvault::{KeyVaultEmulator, SecretSpec};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let connections: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(connections, Duration::from_secs(seconds)));
}

async fn run(connections: usize, duration: Duration) {
    let kv = KeyVaultEmulator::builder().vault("kv-bench").no_throttling().start().await.unwrap();
    kv.store().set_secret("kv-bench", "bench", SecretSpec { value: "x".repeat(64), ..SecretSpec::default() }).unwrap();
    let env = kv.identity_env();
    let token: serde_json::Value = reqwest::Client::new()
        .get(format!("{}?api-version=2019-08-01&resource=https://vault.azure.net", env.endpoint))
        .header("x-identity-header", &env.header)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let addr = kv.vault_addr("kv-bench").unwrap();

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(kv.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let request = Arc::new(
        format!(
            "GET /secrets/bench/?api-version=2025-07-01 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
        )
        .into_bytes(),
    );

    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (connector, request, done, stop) = (connector.clone(), request.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap();
            let mut stream = BufReader::new(tls);
            let mut line = String::new();
            let mut body = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                stream.get_mut().write_all(&request).await.unwrap();
                line.clear();
                stream.read_line(&mut line).await.unwrap();
                assert!(line.starts_with("HTTP/1.1 200"), "unexpected status: {line}");
                let mut length = 0usize;
                loop {
                    line.clear();
                    stream.read_line(&mut line).await.unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                body.resize(length, 0);
                stream.read_exact(&mut body).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up (handshakes, allocator), then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_count = done.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let reads = done.load(Ordering::Relaxed) - start_count;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let rate = reads as f64 / elapsed.as_secs_f64();
    println!(
        "secret reads over HTTPS (keep-alive, {connections} connections, throttling off): {reads} in {:.2} s = {rate:.0} reads/s",
        elapsed.as_secs_f64()
    );
    kv.shutdown().await;
}
