//! Warming up for a first event that is already waiting (a cold start on AWS Lambda).
//!
//! The first request to a vault does, one after another: open a TCP connection and a TLS session (reading the
//! trust roots on the process's first handshake), send the request without a token to learn the vault's
//! authentication challenge, fetch a token from the identity endpoint, and send the request again. The token does
//! not depend on the rest: its scope is known from the vault's host. [`AzureKeyVault::warm_up`] fetches it before
//! the event asks, so the event's request finds it in the credential's cache (or waits for the fetch already under
//! way rather than starting another). Nothing is sent to a vault: that waits for an event that was let in.

use azure_core::credentials::TokenCredential;
use futures::future::join_all;
use keyturn_config::vaults::{EndpointKind, KEY_VAULT_DNS_SUFFIXES, VaultEntry};

use crate::AzureKeyVault;

/// The token scope Key Vault's challenge names for `entry`: its cloud's `https://vault.<suffix>/.default`; for a
/// loopback endpoint (the local emulator), the public cloud's, as the emulator's challenge says.
fn scope(entry: &VaultEntry) -> String {
    let host = entry.url().host_str().unwrap_or_default();
    let suffix = match entry.kind() {
        EndpointKind::Azure => KEY_VAULT_DNS_SUFFIXES.iter().find(|suffix| host.ends_with(*suffix)),
        EndpointKind::Local => None,
    };
    format!("https://{}/.default", suffix.unwrap_or(&KEY_VAULT_DNS_SUFFIXES[0]))
}

impl AzureKeyVault {
    /// Fetches a token for every scope the allow-listed vaults need, all at once; returns when done. Nothing here
    /// can fail an event: an error is logged at debug level and met again, and reported, by the event's request.
    pub async fn warm_up(&self) {
        let mut scopes: Vec<String> = self.entries().map(scope).collect();
        scopes.sort();
        scopes.dedup();
        let started = std::time::Instant::now();
        join_all(scopes.iter().map(|scope| token(self.credential(), scope))).await;
        tracing::debug!(took_us = started.elapsed().as_micros() as u64, "warm-up: token fetched");
    }
}

async fn token(credential: &dyn TokenCredential, scope: &str) {
    if let Err(error) = credential.get_token(&[scope], None).await {
        tracing::debug!(scope, %error, "warm-up: no token yet; the first request will ask again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_is_the_vault_clouds_and_the_public_clouds_for_a_local_endpoint() {
        let scopes: Vec<String> = keyturn_config::VaultList::parse(
            "KEYTURN_VAULTS",
            "contoso,fabrikam=https://fabrikam.vault.azure.cn,local=https://127.0.0.1:8443",
        )
        .unwrap()
        .entries()
        .iter()
        .map(scope)
        .collect();
        assert_eq!(
            scopes,
            ["https://vault.azure.net/.default", "https://vault.azure.cn/.default", "https://vault.azure.net/.default"]
        );
    }
}
