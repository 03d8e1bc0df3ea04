//! `keyturn check --html`, end to end: the real `keyturn` binary surveys two vaults of the Key Vault emulator
//! (objects of every kind and outcome, and tags written to attack the page), writes the report, and a real
//! headless Chromium renders it. Chromium is driven through the DevTools protocol by
//! crates/cli/python/browser.py (standard library only), run with KEYTURN_PYTHON; the browser is
//! KEYTURN_TEST_CHROMIUM or `chromium` on PATH (scripts/lib/chromium.sh installs Debian's package). Without
//! either, the test fails, naming what to install.
//!
//! What a user would notice: the page renders with no console error, no CSP violation and no request; every
//! object is in the table and every object with an expiry on its vault's timeline; sorting by a click and
//! filtering by typing work; the summary counts match the JSON; nothing written in a tag runs. The screenshot
//! is kept at target/test-artifacts/check-report.png (and the first screen, check-report-top.png, and the page,
//! check-report.html) for people to look at.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyturn_e2e::{repo_root, workspace_binary};
use keyturn_local::keyvault::certs::{IssuerParams, X509Props};
use keyturn_local::keyvault::crypto::{Curve, KeySpec};
use keyturn_local::keyvault::keys::KeySpecInput;
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{CertificatePolicy, KeyVaultEmulator, RunningEmulator, SecretSpec};
use serde_json::{Value, json};

const OPS: &str = "kv-ops";
const APPS: &str = "kv-apps";
const DAY: i64 = 86_400;

/// Tag values written to attack the page: each would run script if it were parsed as markup anywhere.
const SCRIPT_IN_MIRROR: &str = "</script><script>window.__xss='mirror'</script>";
const IMG_IN_ACTION: &str = "<img src=x onerror=\"window.__xss='action'\">";
const SVG_IN_THRESHOLDS: &str = "<svg onload=\"window.__xss='thresholds'\">";
const SCRIPT_TAG_NAME: &str = "<script>window.__xss='name'</script>";

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn secret(kv: &RunningEmulator, vault: &str, name: &str, days: Option<i64>, pairs: &[(&str, &str)]) {
    let now = kv.clock().now().timestamp();
    let spec = SecretSpec {
        value: format!("value-of-{name}"),
        content_type: None,
        attributes: AttributeInput { exp: days.map(|d| now + d * DAY), ..Default::default() },
        tags: tags(pairs),
    };
    kv.store().set_secret(vault, name, spec).unwrap();
}

const ROTATES: &[(&str, &str)] = &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")];

/// Every outcome the report colours, in two vaults, some far beyond the timeline's year.
fn seed(kv: &RunningEmulator) {
    secret(kv, OPS, "db-password", Some(12), ROTATES);
    secret(kv, OPS, "api-token", Some(45), &[ROTATES[0], ROTATES[1], ("KeyturnRotationWindow", "Sat 02:00-04:00 UTC")]);
    secret(kv, OPS, "partner-sftp", Some(20), &[("owner", "team-b")]);
    secret(kv, OPS, "legacy-key", Some(-3), &[]);
    secret(kv, OPS, "static-config", None, &[]);
    secret(kv, OPS, "missing-validity", Some(25), &[("KeyturnRotation", "generated")]);
    secret(kv, OPS, "own-thresholds", Some(70), &[ROTATES[0], ROTATES[1], ("KeyturnThresholds", "45,10")]);
    secret(kv, OPS, "mirror-attack", Some(8), &[("KeyturnMirror", SCRIPT_IN_MIRROR)]);
    secret(kv, OPS, "action-attack", Some(33), &[("KeyturnExpiredAction", IMG_IN_ACTION)]);
    secret(kv, OPS, "thresholds-attack", Some(60), &[("KeyturnThresholds", SVG_IN_THRESHOLDS)]);
    secret(kv, OPS, "name-attack", Some(90), &[(SCRIPT_TAG_NAME, "x")]);
    secret(kv, OPS, "replica-copy", Some(15), &[("KeyturnReplicaOf", "kv-apps/db-password/0123")]);
    let now = kv.clock().now().timestamp();
    let input = KeySpecInput {
        kty: "EC".into(),
        spec: KeySpec::Ec(Curve::P256),
        key_ops: None,
        attributes: AttributeInput { exp: Some(now + 20 * DAY), ..Default::default() },
        tags: tags(&[("KeyturnRotation", "enabled")]),
    };
    kv.store().create_key(OPS, "signing-key", input).unwrap();
    let policy = CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".into()), ..Default::default() }),
        x509_props: Some(X509Props { subject: Some("CN=web.example.test".into()), ..Default::default() }),
        lifetime_actions: Some(Vec::new()),
        ..Default::default()
    };
    kv.store()
        .create_certificate(
            OPS,
            "web-tls",
            Some(policy),
            AttributeInput::default(),
            tags(&[("KeyturnRotation", "enabled")]),
        )
        .unwrap();
    for i in 0..24 {
        secret(kv, APPS, &format!("app-{i:02}-secret"), Some(5 + i * 17), if i % 3 == 0 { ROTATES } else { &[] });
    }
    secret(kv, APPS, "archive-key", Some(900), &[]);
}

fn python() -> PathBuf {
    std::env::var_os("KEYTURN_PYTHON").map(PathBuf::from).filter(|p| p.exists()).unwrap_or_else(|| {
        panic!("KEYTURN_PYTHON is unset or does not exist: ./scripts/test creates the test venv and sets it")
    })
}

/// The browser: KEYTURN_TEST_CHROMIUM, else `chromium` on PATH. Never skipped: the report is for browsers.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYTURN_TEST_CHROMIUM").map(PathBuf::from).filter(|p| p.is_file()) {
        return path;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Chromium: set KEYTURN_TEST_CHROMIUM or install Debian's chromium (scripts/lib/chromium.sh does, \
                 and ./scripts/test runs it)"
            )
        })
}

/// Runs the DevTools driver with `steps`; its answer: `results` (one per step) and `console`.
fn browse(steps: Value) -> Value {
    let spec = json!({ "chromium": chromium(), "width": 1400, "height": 900, "steps": steps });
    let mut child = std::process::Command::new(python())
        .arg(repo_root().join("crates/cli/python/browser.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), spec.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "browser.py failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `keyturn <args>` with a clean environment plus `env`.
fn keyturn(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let output = std::process::Command::new(workspace_binary("keyturn"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

/// A PNG's width and height, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let number = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (number(16), number(20))
}

fn key_of(row: &Value) -> String {
    format!(
        "{}/{}/{}",
        row["vault"].as_str().unwrap(),
        row["kind"].as_str().unwrap().to_lowercase(),
        row["name"].as_str().unwrap()
    )
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

fn artifacts() -> PathBuf {
    let dir = workspace_binary("keyturn").parent().and_then(Path::parent).unwrap().join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_html_report_renders_every_object_in_a_real_browser_and_no_tag_runs_as_script() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let kv = KeyVaultEmulator::builder().vault(OPS).vault(APPS).start().await.unwrap();
        kv.grant_system_identity("Key Vault Reader").unwrap();
        seed(&kv);
        let identity = kv.identity_env();
        let vaults = format!("{OPS}={},{APPS}={}", kv.vault_url(OPS).unwrap(), kv.vault_url(APPS).unwrap());
        let env = vec![
            ("KEYTURN_CREDENTIAL".to_owned(), "managed-identity".to_owned()),
            ("IDENTITY_ENDPOINT".to_owned(), identity.endpoint.clone()),
            ("IDENTITY_HEADER".to_owned(), identity.header.clone()),
            ("KEYTURN_VAULTS".to_owned(), vaults),
            ("KEYTURN_CA_FILE".to_owned(), kv.ca_pem_path().display().to_string()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("report.html");
        let (code, stdout, stderr) = tokio::task::spawn_blocking({
            let page = page.display().to_string();
            move || keyturn(&["check", "--html", &page, "--json", "--thresholds", "60,30,14,7,1,0"], &env)
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("wrote ") && stderr.contains("(39 objects)"), "{stderr}");
        let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
        assert_eq!(rows.len(), 39, "14 in {OPS} (12 secrets, a key, a certificate), 25 in {APPS}");
        let html = std::fs::read_to_string(&page).unwrap();
        for secret_value in rows.iter().map(|r| format!("value-of-{}", r["name"].as_str().unwrap())) {
            assert!(!html.contains(&secret_value), "a secret value is in the page");
        }

        let keys: BTreeSet<String> = rows.iter().map(key_of).collect();
        let dated: BTreeSet<String> = rows.iter().filter(|r| !r["expires"].is_null()).map(key_of).collect();
        let by_expiry_descending: Vec<String> = {
            let mut dated_rows: Vec<&Value> = rows.iter().filter(|r| !r["expires"].is_null()).collect();
            // Latest first; equal expiries by key, as the page breaks ties.
            dated_rows.sort_by_key(|r| {
                (std::cmp::Reverse(chrono::DateTime::parse_from_rfc3339(r["expires"].as_str().unwrap()).unwrap()), key_of(r))
            });
            dated_rows.iter().map(|r| key_of(r)).collect()
        };
        let count = |outcome: &str| rows.iter().filter(|r| r["outcome"] == outcome).count();
        let screenshot = artifacts().join("check-report.png");
        let first_screen = artifacts().join("check-report-top.png");
        std::fs::copy(&page, artifacts().join("check-report.html")).unwrap();

        let rows_now = "[...document.querySelectorAll('#rows tr')].map(r => r.dataset.key)";
        let answer = tokio::task::spawn_blocking({
            let url = format!("file://{}", page.display());
            let screenshot = screenshot.display().to_string();
            let first_screen = first_screen.display().to_string();
            move || {
                browse(json!([
                    {"open": url},
                    {"eval": rows_now},
                    {"eval": "[...document.querySelectorAll('g.lane')].map(g => g.dataset.key)"},
                    {"eval": "Object.fromEntries([...document.querySelectorAll('.card[data-outcome]')].map(c => [c.dataset.outcome, Number(c.querySelector('.count').textContent)]))"},
                    {"eval": "[typeof window.__xss, document.body.textContent]"},
                    {"screenshot": screenshot},
                    {"click": "th[data-column='expires'] button"},
                    {"eval": rows_now},
                    {"eval": "document.querySelector('th[data-column=expires]').getAttribute('aria-sort')"},
                    {"type": ["#filter", "APP-0"]},
                    {"eval": rows_now},
                    {"eval": "document.getElementById('shown').textContent"},
                    {"clear": "#filter"},
                    {"click": ".card[data-outcome='problem']"},
                    {"eval": rows_now},
                    {"eval": "[typeof window.__xss, document.querySelectorAll('script').length, performance.getEntriesByType('resource').length]"},
                    {"clear": "#filter"},
                    {"click": ".card[data-outcome='problem']"},
                    {"screenshot": first_screen, "height": 900},
                ]))
            }
        })
        .await
        .unwrap();
        let results = answer["results"].as_array().unwrap();

        // Rendered cleanly: no console error, no uncaught exception, no CSP violation or blocked request.
        let problems: Vec<&Value> =
            answer["console"].as_array().unwrap().iter().filter(|m| matches!(m["level"].as_str(), Some("error" | "warning"))).collect();
        assert!(problems.is_empty(), "the browser ({}) reported: {problems:#?}", answer["version"]);

        // Every object in the table; every object with an expiry on its vault's timeline.
        let table: BTreeSet<String> = strings(&results[1]).into_iter().collect();
        assert_eq!(table, keys);
        let lanes: BTreeSet<String> = strings(&results[2]).into_iter().collect();
        assert_eq!(lanes, dated);
        // The summary counts are the JSON's.
        for outcome in ["rotate", "renew", "notify", "nothing", "problem"] {
            assert_eq!(results[3][outcome], count(outcome), "{outcome}");
        }
        assert!(count("problem") >= 4 && count("rotate") >= 3 && count("renew") == 1, "{rows:#?}");

        // Nothing written in a tag ran; what the page shows of it is text.
        assert_eq!(results[4][0], "undefined", "a tag ran as script");
        let text = results[4][1].as_str().unwrap();
        for attack in [SCRIPT_IN_MIRROR, IMG_IN_ACTION, SVG_IN_THRESHOLDS] {
            assert!(text.contains(attack), "{attack} is not shown as text");
        }

        // A real, full screenshot.
        let png = std::fs::read(&screenshot).unwrap();
        assert_eq!(results[5], png.len());
        let (width, height) = png_size(&png);
        assert!(width == 1400 && height > 1500, "{width}x{height}");
        assert!(png.len() > 50_000, "{} bytes: a blank page compresses far smaller", png.len());

        // Sorted by expiry by default; a click on the header reverses it.
        let descending: Vec<String> = strings(&results[7]).into_iter().filter(|k| dated.contains(k)).collect();
        assert_eq!(descending, by_expiry_descending);
        assert_eq!(results[8], "descending");

        // Typing filters the table (case-insensitively) and says how many are shown.
        let filtered = strings(&results[10]);
        assert_eq!(filtered.len(), 10, "app-00 to app-09: {filtered:?}");
        assert!(filtered.iter().all(|k| k.starts_with("kv-apps/secret/app-0")), "{filtered:?}");
        assert_eq!(results[11], "10 of 39 objects shown");

        // The filter cleared, a click on a card hides its objects.
        let without_problems: BTreeSet<String> = strings(&results[14]).into_iter().collect();
        let expected: BTreeSet<String> = rows.iter().filter(|r| r["outcome"] != "problem").map(key_of).collect();
        assert_eq!(without_problems, expected);

        // Still nothing ran, the page's two scripts are all there is, and it fetched nothing.
        assert_eq!(results[15], json!(["undefined", 2, 0]));
        assert_eq!(png_size(&std::fs::read(&first_screen).unwrap()), (1400, 900));
        kv.shutdown().await;
    })
    .await
    .unwrap_or_else(|_| panic!("the test did not finish within 240 s"));
}

/// `keyturn check` shows the thresholds the sweep will use: the deployment's `KEYTURN_SWEEP_THRESHOLDS` unless
/// `--thresholds` says otherwise, an object's own tag over both; a deployment list that does not parse is named.
#[tokio::test(flavor = "multi_thread")]
async fn check_reports_the_deployments_thresholds_unless_the_flag_or_the_tag_says_otherwise() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let kv = KeyVaultEmulator::builder().vault(OPS).start().await.unwrap();
        kv.grant_system_identity("Key Vault Reader").unwrap();
        secret(&kv, OPS, "plain", Some(90), ROTATES);
        secret(&kv, OPS, "tagged", Some(90), &[ROTATES[0], ROTATES[1], ("KeyturnThresholds", "20,2")]);
        let identity = kv.identity_env();
        let base = vec![
            ("KEYTURN_CREDENTIAL".to_owned(), "managed-identity".to_owned()),
            ("IDENTITY_ENDPOINT".to_owned(), identity.endpoint.clone()),
            ("IDENTITY_HEADER".to_owned(), identity.header.clone()),
            ("KEYTURN_VAULTS".to_owned(), format!("{OPS}={}", kv.vault_url(OPS).unwrap())),
            ("KEYTURN_CA_FILE".to_owned(), kv.ca_pem_path().display().to_string()),
        ];
        let check = |deployment: Option<&'static str>, flag: Option<&'static str>| {
            let mut env = base.clone();
            env.extend(deployment.map(|list| ("KEYTURN_SWEEP_THRESHOLDS".to_owned(), list.to_owned())));
            let mut args = vec!["check", "--json"];
            args.extend(flag.map(|list| ["--thresholds", list]).into_iter().flatten());
            let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                keyturn(&args, &env)
            })
        };
        let days = |stdout: &str| -> BTreeMap<String, (Value, Value)> {
            let rows: Vec<Value> = serde_json::from_str(stdout).unwrap();
            rows.iter()
                .map(|r| {
                    let name = r["name"].as_str().unwrap().to_owned();
                    (name, (r["thresholds"]["days"].clone(), r["thresholds"]["source"].clone()))
                })
                .collect()
        };

        let (code, stdout, stderr) = check(Some("45,5"), None).await.unwrap();
        assert_eq!(code, 0, "{stderr}");
        let by_name = days(&stdout);
        assert_eq!(by_name["plain"], (json!([45, 5]), json!("default")), "the deployment's list");
        assert_eq!(by_name["tagged"], (json!([20, 2]), json!("tag")), "the object's tag wins");

        let (code, stdout, stderr) = check(Some("45,5"), Some("9")).await.unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(days(&stdout)["plain"].0, json!([9]), "the flag over the deployment's list");

        let (code, stdout, stderr) = check(None, None).await.unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(days(&stdout)["plain"].0, json!([60, 30, 14, 7, 3, 1, 0]), "keyturn's default");

        let (code, _, stderr) = check(Some("soon"), None).await.unwrap();
        assert_ne!(code, 0, "a deployment list that does not parse fails the check");
        assert!(stderr.contains("KEYTURN_SWEEP_THRESHOLDS") && stderr.contains("soon"), "{stderr}");
    })
    .await
    .expect("the checks finished within 120 s");
}
