//! Serving HTTP/1.1 (plain or TLS) on a bound listener, with graceful shutdown.
//!
//! The emulator is written directly on hyper rather than warp: warp 0.4 has no TLS, Key Vault's routes hinge on
//! details warp's filters smooth over (a trailing slash means "latest version", names are case-insensitive),
//! and a plain `match` on path segments is both shorter and cheaper per request than a filter tree.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Every response the local servers produce.
pub type ServerResponse = Response<Full<Bytes>>;

/// A running server. Dropping it aborts the accept loop and every open connection.
#[derive(Debug)]
pub struct ServerHandle {
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops accepting, lets in-flight requests finish, and waits for every connection to close.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            // A JoinError here means the accept loop panicked or was aborted; either way it is gone.
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `handler` on `listener`, over TLS when `tls` is given.
pub fn spawn<H, F>(listener: TcpListener, tls: Option<TlsAcceptor>, handler: H) -> ServerHandle
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ServerResponse> + Send + 'static,
{
    let (shutdown, mut stop) = watch::channel(false);
    let task = tokio::spawn(async move {
        // Connections live in the JoinSet owned by this task: aborting the task drops the set, which aborts them.
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Accept errors (e.g. too many open files) are per-connection; keep serving.
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            let tls = tls.clone();
            let mut stop = stop.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let builder = hyper::server::conn::http1::Builder::new();
                let result = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(tls_stream) => {
                            let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
                            drive(conn, &mut stop).await
                        }
                        Err(error) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                    },
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        drive(conn, &mut stop).await
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            });
        }
        // Graceful: each connection finishes its in-flight request, then closes.
        while connections.join_next().await.is_some() {}
    });
    ServerHandle { shutdown, task: Some(task) }
}

async fn drive<I, S>(
    conn: hyper::server::conn::http1::Connection<I, S>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = std::pin::pin!(conn);
    if *stop.borrow() {
        conn.as_mut().graceful_shutdown();
        return conn.await;
    }
    tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// A JSON response with `status`.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> ServerResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(error) => {
            // Only reachable if a model holds a non-string map key; report it rather than panic.
            tracing::error!(%error, "serialising a response failed");
            let mut response = Response::new(Full::new(Bytes::from_static(
                br#"{"error":{"code":"InternalServerError","message":"The emulator failed to serialise its response."}}"#,
            )));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

/// A response with an already-serialised JSON body.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> ServerResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

/// An empty response with `status`.
pub fn empty(status: StatusCode) -> ServerResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
