//! A bare warp server on `FUNCTIONS_CUSTOMHANDLER_PORT` (127.0.0.1) answering `GET /` with 200: what a
//! custom handler's start-to-ready cannot beat, built and started as the handlers are (same runtime, same warp,
//! release profile), for tests/e2e/benches/near_expiry.rs to measure in the same run.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use warp::Filter;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(port) = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT").ok().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("bare-warp: FUNCTIONS_CUSTOMHANDLER_PORT must be a port number");
        return ExitCode::from(2);
    };
    let listener = match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("bare-warp: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::from(1);
        }
    };
    let ready = warp::get().and(warp::path::end()).map(warp::reply);
    warp::serve(ready).incoming(listener).run().await;
    ExitCode::SUCCESS
}
