"""The official Azure SDK for Python against keyturn's local Key Vault emulator.

Run by crates/local/tests/keyvault_python.rs with the interpreter from .venv, and this environment:
  KEYTURN_VAULT_URL   the vault's URL (https://127.0.0.1:<port>)
  KEYTURN_CA          the emulator's CA certificate (PEM)
  IDENTITY_ENDPOINT / IDENTITY_HEADER   the local managed identity endpoint (ManagedIdentityCredential reads them)
  AZURE_CLIENT_ID     the user-assigned identity to run as (it holds exactly the roles the scenario uses)
  KEYTURN_API_VERSION optional: pin every client to this API version; unset, each client sends its own
                      default, exactly as a user's code with default settings does
Exits non-zero with a message on the first failed check.
"""

import datetime
import os
import sys
import urllib.parse

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.certificates import ApiVersion as CertificatesApiVersion
from azure.keyvault.certificates import CertificateClient, CertificateContentType, CertificatePolicy
from azure.keyvault.keys import ApiVersion as KeysApiVersion
from azure.keyvault.keys import KeyClient, KeyRotationLifetimeAction, KeyRotationPolicy, KeyRotationPolicyAction
from azure.keyvault.secrets import ApiVersion as SecretsApiVersion
from azure.keyvault.secrets import SecretClient

# Unset: the SDKs' defaults (no api_version argument at all). Set: the pinned-version matrix.
API_VERSION = os.environ.get("KEYTURN_API_VERSION")
# What the SDK releases in requirements.txt send when nothing is pinned.
DEFAULTS = {"secrets": "2026-04-01", "keys": "2025-07-01", "certificates": "2026-04-01"}
# Key rotation and rotation policies arrived in 7.3; the SDK refuses them on older pins.
ROTATION = API_VERSION not in ("7.0", "7.1", "7.2", "2016-10-01")


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def rotate_key(keys, key):
    keys.update_key_rotation_policy(
        "py-key",
        KeyRotationPolicy(),
        lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_before_expiry="P30D")],
        expires_in="P90D",
    )
    policy = keys.get_key_rotation_policy("py-key")
    check(policy.expires_in == "P90D", f"policy expires_in {policy.expires_in}")
    rotated = keys.rotate_key("py-key")
    check(rotated.properties.version != key.properties.version, "rotation makes a new version")
    check(rotated.properties.expires_on is not None, "rotated key expires per policy")
    key_versions = list(keys.list_properties_of_key_versions("py-key"))
    check(len(key_versions) == 2, f"{len(key_versions)} key versions")


def main():
    vault_url = os.environ["KEYTURN_VAULT_URL"]
    ca = os.environ["KEYTURN_CA"]
    credential = ManagedIdentityCredential(client_id=os.environ.get("AZURE_CLIENT_ID"), connection_verify=ca)
    sent = {"secrets": set(), "keys": set(), "certificates": set()}

    def options(client, supported):
        def record(request):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.http_request.url).query)
            sent[client].update(query.get("api-version", []))

        common = dict(
            # The vault is 127.0.0.1, not *.vault.azure.net: the challenge's resource check would refuse it.
            verify_challenge_resource=False,
            connection_verify=ca,
            retry_total=0,
            raw_request_hook=record,
        )
        if API_VERSION is not None and API_VERSION in supported:
            common["api_version"] = API_VERSION
        return common

    secrets = SecretClient(vault_url, credential, **options("secrets", [v.value for v in SecretsApiVersion]))
    versions = []
    for i in range(4):
        secret = secrets.set_secret("py-secret", f"value-{i}", content_type="text/plain", tags={"owner": "py"})
        versions.append(secret.properties.version)
    check(len(set(versions)) == 4 and all(len(v) == 32 for v in versions), f"versions {versions}")
    latest = secrets.get_secret("py-secret")
    check(latest.value == "value-3", f"latest value {latest.value!r}")
    first = secrets.get_secret("py-secret", versions[0])
    check(first.value == "value-0", f"first value {first.value!r}")
    listed = list(secrets.list_properties_of_secret_versions("py-secret", max_page_size=3))
    check(len(listed) == 4, f"listed {len(listed)} versions")

    expires = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(days=45)
    updated = secrets.update_secret_properties("py-secret", expires_on=expires, tags={"rotated": "yes"})
    check(updated.expires_on == expires, f"expires_on {updated.expires_on}")
    check(updated.tags == {"rotated": "yes"}, f"tags {updated.tags}")

    poller = secrets.begin_delete_secret("py-secret", _polling_interval=0.1)
    deleted = poller.result()
    check(deleted.recovery_id.endswith("/deletedsecrets/py-secret"), f"recovery id {deleted.recovery_id}")
    try:
        secrets.set_secret("py-secret", "blocked")
        check(False, "a deleted name must stay taken until purged")
    except ResourceExistsError:
        pass
    except HttpResponseError as error:
        check(error.status_code == 409, f"expected 409, got {error.status_code}")
    secrets.begin_recover_deleted_secret("py-secret", _polling_interval=0.1).result()
    check(secrets.get_secret("py-secret").value == "value-3", "recovered secret keeps its value")
    secrets.begin_delete_secret("py-secret", _polling_interval=0.1).result()
    secrets.purge_deleted_secret("py-secret")
    try:
        secrets.get_deleted_secret("py-secret")
        check(False, "purged secret must be gone")
    except ResourceNotFoundError:
        pass
    secrets.set_secret("py-secret", "fresh")

    backup = secrets.backup_secret("py-secret")
    check(isinstance(backup, bytes) and len(backup) > 32, "a backup blob")
    try:
        secrets.restore_secret_backup(backup)
        check(False, "restoring over a live secret must conflict")
    except ResourceExistsError:
        pass
    secrets.begin_delete_secret("py-secret", _polling_interval=0.1).result()
    secrets.purge_deleted_secret("py-secret")
    restored = secrets.restore_secret_backup(backup)
    check(restored.name == "py-secret", f"restored {restored.name}")
    check(secrets.get_secret("py-secret").value == "fresh", "restored secret keeps its value")

    keys = KeyClient(vault_url, credential, **options("keys", [v.value for v in KeysApiVersion]))
    key = keys.create_rsa_key("py-key", size=2048)
    check(key.key_type == "RSA" and len(key.key.n) == 256, "RSA key with a 2048-bit modulus")
    ec = keys.create_ec_key("py-ec", curve="P-256")
    check(len(ec.key.x) == 32, "EC P-256 key")
    if ROTATION:
        rotate_key(keys, key)

    certificates = CertificateClient(
        vault_url, credential, **options("certificates", [v.value for v in CertificatesApiVersion])
    )
    policy = CertificatePolicy(
        issuer_name="Self",
        subject="CN=py.example.test",
        san_dns_names=["py.example.test"],
        validity_in_months=3,
        content_type=CertificateContentType.pem,
    )
    created = certificates.begin_create_certificate("py-cert", policy, _polling_interval=0.1).result()
    check(created.cer is not None and len(created.cer) > 300, "certificate has a DER body")
    got = certificates.get_certificate("py-cert")
    check(got.policy.subject == "CN=py.example.test", f"policy subject {got.policy.subject}")
    backing = secrets.get_secret("py-cert")
    check("BEGIN CERTIFICATE" in backing.value and "PRIVATE KEY" in backing.value, "PEM backing secret")
    renewed = certificates.begin_create_certificate(
        "py-cert", certificates.get_certificate_policy("py-cert"), _polling_interval=0.1
    ).result()
    check(renewed.properties.version != created.properties.version, "a new certificate version")
    cert_versions = list(certificates.list_properties_of_certificate_versions("py-cert"))
    check(len(cert_versions) == 2, f"{len(cert_versions)} certificate versions")

    for client, versions in sent.items():
        expected = DEFAULTS[client] if API_VERSION is None else API_VERSION
        if client == "keys" and API_VERSION not in [v.value for v in KeysApiVersion]:
            expected = DEFAULTS["keys"]
        check(versions == {expected}, f"{client} sent api-version {sorted(versions)}, expected {expected}")
    print(f"python scenario: ok (api-versions sent: {', '.join(f'{c} {sorted(v)[0]}' for c, v in sent.items())})")


if __name__ == "__main__":
    main()
