//! [`mirror`]: one secret version copied into the vaults its `KeyturnMirror` tag names.

use keyturn_config::mirror_routes::MIRROR_ROUTES;
use keyturn_config::vaults::MIRROR_VAULTS;
use keyturn_deps::{Deps, ErrorClass};
use keyturn_events::ObjectRef;
use keyturn_host::HandlerError;
use keyturn_rotation::policy::{self, NOT_COPIED_TO_REPLICAS, REPLICA_OF, ReplicaOf};
use keyturn_vault::model::{MAX_TAGS, NewSecretVersion};

/// What replication did, per mirror vault.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MirrorReport {
    /// Mirrors that received a copy, as `vault (version)`.
    pub copied: Vec<String>,
    /// Mirrors that already held this source version.
    pub already: Vec<String>,
    /// Mirrors refused (no route from this source, not allow-listed, the source's own vault, a bad tag, a
    /// destination secret that is not a replica of this source), with the reason.
    pub refused: Vec<String>,
    /// Why nothing was copied at all, when that is worth saying (a replica, a newer version exists).
    pub notes: Vec<String>,
}

impl MirrorReport {
    /// One sentence per kind of result, for the notification and the outcome line; empty when there was
    /// nothing to mirror.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.copied.is_empty() {
            parts.push(format!("Copied to {}.", self.copied.join(", ")));
        }
        if !self.already.is_empty() {
            parts.push(format!("Already mirrored in {}.", self.already.join(", ")));
        }
        if !self.refused.is_empty() {
            parts.push(format!("Refused: {}.", self.refused.join("; ")));
        }
        parts.extend(self.notes.iter().map(|note| format!("{note}.")));
        parts.join(" ")
    }
}

/// Copies `vault/name/version` into its mirrors. A vault error is returned in its class (retryable:
/// the redelivery finds the mirrors already done skipped); refusals are collected in the report.
pub async fn mirror(deps: &Deps, source: &ObjectRef) -> Result<MirrorReport, HandlerError> {
    let (vault, name, version) = (source.vault(), source.name(), source.version());
    let object = source.described();
    let mut report = MirrorReport::default();
    let source =
        deps.vault().latest_secret(vault, name).await.map_err(|e| e.handler_error(format!("{object}: reading")))?;
    let properties = &source.properties;
    if !properties.version.eq_ignore_ascii_case(version) {
        report.notes.push(format!(
            "Not mirrored: a newer version ({}) exists and its own event mirrors it",
            properties.version
        ));
        return Ok(report);
    }
    if let Some(replica) = ReplicaOf::from_tags(&properties.tags) {
        if policy::tag(&properties.tags, policy::MIRROR).is_some() {
            report.notes.push(format!("Not mirrored onward: this version is a replica of {replica}"));
        }
        return Ok(report);
    }
    let mirrors = match policy::mirrors(&properties.tags) {
        Ok(mirrors) => mirrors,
        Err(error) => {
            report.refused.push(error.to_string());
            return Ok(report);
        }
    };
    let source_id = ReplicaOf { vault: vault.to_ascii_lowercase(), name: name.to_owned(), version: version.to_owned() };
    let mut tags = properties.tags.clone();
    tags.retain(|key, _| {
        !key.eq_ignore_ascii_case(REPLICA_OF) && !NOT_COPIED_TO_REPLICAS.iter().any(|t| key.eq_ignore_ascii_case(t))
    });
    tags.insert(REPLICA_OF.to_owned(), source_id.to_string());
    for mirror in mirrors {
        if mirror.eq_ignore_ascii_case(vault) {
            report.refused.push(format!("'{mirror}' is the source's own vault"));
            continue;
        }
        // Tags choose, the deployment authorizes: the tag may only pick among this source's routes.
        if !deps.settings().mirror_routes.allows(vault, name, &mirror) {
            report.refused.push(format!(
                "'{mirror}' is not a destination {MIRROR_ROUTES} gives {vault}/{name}; nothing was sent to it"
            ));
            continue;
        }
        if deps.mirror_vault().check_allowed(&mirror).is_err() {
            report
                .refused
                .push(format!("'{mirror}' is not in KEYTURN_VAULTS or {MIRROR_VAULTS}; nothing was sent to it"));
            continue;
        }
        if tags.len() > MAX_TAGS {
            report.refused.push(format!(
                "'{mirror}': the copy would carry {} tags ({REPLICA_OF} added), over Key Vault's {MAX_TAGS}",
                tags.len()
            ));
            continue;
        }
        match deps.mirror_vault().latest_secret(&mirror, name).await {
            Ok(latest)
                if ReplicaOf::from_tags(&latest.properties.tags)
                    .is_some_and(|r| r.is_copy_of(vault, name, version)) =>
            {
                report.already.push(format!("{mirror} ({})", latest.properties.version));
                continue;
            }
            Ok(latest) => {
                // Only a replica of this same source may be replaced: anything else in the destination was
                // written by someone else (the vault's own writers), and a writer of the source must not be
                // able to overwrite it by tagging their secret.
                let owned = ReplicaOf::from_tags(&latest.properties.tags).is_some_and(|r| {
                    !r.vault.is_empty() && r.vault.eq_ignore_ascii_case(vault) && r.name.eq_ignore_ascii_case(name)
                });
                if !owned {
                    report.refused.push(format!(
                        "'{mirror}' already holds a '{name}' that is not a replica of {vault}/{name} (no \
                         {REPLICA_OF}={vault}/{name}/...): it was not overwritten"
                    ));
                    continue;
                }
            }
            Err(error) if error.status() == Some(404) => {}
            Err(error) => return Err(error.handler_error(format!("{object}: reading its mirror in {mirror}"))),
        }
        let copy = NewSecretVersion {
            value: source.value.clone(),
            content_type: properties.content_type.clone(),
            tags: tags.clone(),
            not_before: properties.not_before,
            expires: properties.expires,
        };
        let written = deps
            .mirror_vault()
            .set_secret(&mirror, name, copy)
            .await
            .map_err(|e| e.handler_error(format!("{object}: copying version {version} into {mirror}")))?;
        tracing::info!(vault, object = name, version, mirror, replica = written.version, "mirrored");
        report.copied.push(format!("{mirror} ({})", written.version));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_each_kind_of_result_once() {
        assert_eq!(MirrorReport::default().summary(), "");
        let report = MirrorReport {
            copied: vec!["kv-two (abc)".into()],
            already: vec!["kv-three (def)".into()],
            refused: vec!["'kv-evil' is not in KEYTURN_VAULTS or KEYTURN_MIRROR_VAULTS; nothing was sent to it".into()],
            notes: vec![],
        };
        assert_eq!(
            report.summary(),
            "Copied to kv-two (abc). Already mirrored in kv-three (def). Refused: 'kv-evil' is not in \
             KEYTURN_VAULTS or KEYTURN_MIRROR_VAULTS; nothing was sent to it."
        );
    }
}
