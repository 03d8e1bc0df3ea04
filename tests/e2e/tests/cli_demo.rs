//! `keyturn demo`, the real binary end to end: run twice in a row and once beside a running `keyturn dev`,
//! each run must exit 0 within the 30 seconds, report the rotations, the mirror copy, the critical
//! notification, the skipped object and the canary's pass, and leave no handler process behind. A step that
//! does not happen (a wrong binary posing as new-version) must exit 1 naming it. Without its handler binaries
//! and outside a cargo target directory it must exit 4 naming the command that builds them.
//!
//! The binaries are those `cargo build --workspace` leaves in target/<profile>/ (`keyturn_e2e::workspace_binary`),
//! so the demo finds its handlers beside keyturn and builds nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use keyturn_e2e::{bounded, repo_root, workspace_binary};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The bound on one demo run.
const DEMO_LIMIT: Duration = Duration::from_secs(30);

/// A `keyturn` process that is stopped (SIGTERM, then SIGKILL) if the test fails while it runs: keyturn stops
/// its own handlers on SIGTERM, which SIGKILL would not let it do.
struct Keyturn {
    child: tokio::process::Child,
}

impl Keyturn {
    /// `keyturn <args>` in the repository, its stdout piped, its stderr piped or passed through.
    fn spawn(args: &[&str], stderr: Stdio) -> Keyturn {
        let child = tokio::process::Command::new(workspace_binary("keyturn"))
            .args(args)
            .current_dir(repo_root())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Keyturn { child }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id().unwrap()).unwrap())
    }
}

impl Drop for Keyturn {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(self.pid(), Signal::SIGTERM);
            for _ in 0..100 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.start_kill();
        }
    }
}

/// What one `keyturn demo` run printed and how it ended.
#[derive(Debug)]
struct Demo {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Demo {
    async fn run() -> Demo {
        let started = Instant::now();
        let mut keyturn = Keyturn::spawn(&["demo"], Stdio::piped());
        let (mut stdout, mut stderr) = (keyturn.child.stdout.take().unwrap(), keyturn.child.stderr.take().unwrap());
        let read = async {
            let (mut out, mut err) = (String::new(), String::new());
            let (a, b) = tokio::join!(
                tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out),
                tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
            );
            a.unwrap();
            b.unwrap();
            let status = keyturn.child.wait().await.unwrap();
            (status, out, err)
        };
        let (status, stdout, stderr) = tokio::time::timeout(DEMO_LIMIT, read)
            .await
            .unwrap_or_else(|_| panic!("keyturn demo did not finish within {DEMO_LIMIT:?}"));
        Demo { code: status.code().unwrap_or(-1), stdout, stderr, took: started.elapsed() }
    }

    /// The table row whose RESULT and OBJECT columns are these.
    fn row(&self, result: &str, object: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| {
                let mut columns = line.split_whitespace();
                columns.next() == Some(result) && line.contains(&format!("  {object}  "))
            })
            .unwrap_or_else(|| panic!("no '{result} {object}' row in:\n{}", self.stdout))
    }

    /// The handler pids the last line names: `stopped near-expiry (pid 1), expired (pid 2), ...`.
    fn handler_pids(&self) -> Vec<i32> {
        let line = self
            .stdout
            .lines()
            .find(|line| line.starts_with("nothing left running: stopped "))
            .unwrap_or_else(|| panic!("no 'nothing left running' line in:\n{}", self.stdout));
        line.split("(pid ").skip(1).map(|rest| rest.split(')').next().unwrap().parse().unwrap()).collect()
    }

    /// Asserts what a user reads in the report.
    fn assert_the_main_job_was_done(&self) {
        assert_eq!(self.code, 0, "keyturn demo failed:\n{}\n{}", self.stdout, self.stderr);
        assert!(self.took < DEMO_LIMIT, "took {:?}", self.took);
        for (result, object) in [
            ("rotated", "secret kv-demo/db-password"),
            ("rotated", "secret kv-demo/webhook-signing-key"),
            ("rotated", "key kv-demo/signing-key"),
            ("renewed", "certificate kv-demo/web-tls"),
        ] {
            let row = self.row(result, object);
            assert!(row.contains(" → ") && row.contains("expires 20"), "{row}");
        }
        assert!(self.row("mirrored", "secret kv-mirror/db-password").contains("copy of kv-demo/db-password"));
        let alarm = self.row("notified", "secret kv-demo/legacy-api-key");
        assert!(alarm.contains("critical → webhook 127.0.0.1: ") && alarm.contains("has expired"), "{alarm}");
        let rotated = self.row("notified", "secret kv-demo/db-password");
        assert!(rotated.contains("info → webhook 127.0.0.1: ") && rotated.contains(", rotated to "), "{rotated}");
        assert!(self.row("notified", "secret kv-mirror/db-password").contains("has a new version"));
        let manual = self.row("notified", "secret kv-demo/partner-sftp-password");
        assert!(manual.contains("warning → webhook 127.0.0.1: "), "{manual}");
        let manual = self.row("skipped", "secret kv-demo/partner-sftp-password");
        assert!(manual.contains("near-expiry: ") && manual.contains("manual rotation due"), "{manual}");
        assert!(self.row("canary", "secret kv-demo/keyturn-canary").contains("pass 20"));
        assert!(self.stdout.contains("0 dead-lettered"), "{}", self.stdout);
        assert!(self.stdout.contains("every expected step happened"), "{}", self.stdout);
        // Progress went to stderr, the report to stdout.
        assert!(self.stderr.contains("moved the clock 40 days"), "{}", self.stderr);
        assert!(!self.stdout.contains("moved the clock 40 days"), "{}", self.stdout);
        assert!(!self.stdout.contains('\u{1b}') && !self.stderr.contains('\u{1b}'), "colour with NO_COLOR set");

        let pids = self.handler_pids();
        assert_eq!(pids.len(), 4, "{}", self.stdout);
        for pid in pids {
            assert!(!alive(pid), "handler process {pid} outlived keyturn demo");
        }
    }
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

#[tokio::test]
async fn demo_runs_twice_in_a_row_and_leaves_nothing_behind() {
    bounded(Duration::from_secs(90), async {
        let first = Demo::run().await;
        first.assert_the_main_job_was_done();
        let second = Demo::run().await;
        second.assert_the_main_job_was_done();
        assert_ne!(first.handler_pids(), second.handler_pids());
    })
    .await;
}

#[tokio::test]
async fn demo_runs_beside_keyturn_dev() {
    bounded(Duration::from_secs(120), async {
        let state = tempfile::tempdir().unwrap();
        let state_file = state.path().join("dev.json");
        let mut dev = Keyturn::spawn(&["dev", "--state-file", state_file.to_str().unwrap()], Stdio::inherit());
        let mut lines = BufReader::new(dev.child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        let ready = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                banner.push_str(&line);
                banner.push('\n');
                if line.contains("Ctrl-C stops the stack") {
                    return;
                }
            }
            panic!("keyturn dev ended before it was ready:\n{banner}");
        };
        tokio::time::timeout(Duration::from_secs(60), ready).await.expect("keyturn dev was ready within 60 s");
        let dev_pids: Vec<i32> = banner
            .lines()
            .filter(|line| line.trim_start().starts_with("handler "))
            .map(|line| line.rsplit("(pid ").next().unwrap().trim_end_matches(')').parse().unwrap())
            .collect();
        assert_eq!(
            dev_pids.len(),
            keyturn_app::handlers::HANDLERS.len(),
            "keyturn dev runs every built handler:\n{banner}"
        );
        assert!(
            banner.contains("handler sweep        timer, on its schedule \"0 0 * * * *\" (--sweep-schedule, UTC)"),
            "the timer function is shown as one, on the schedule the stand-in runs, not as a webhook:\n{banner}"
        );

        let demo = Demo::run().await;
        demo.assert_the_main_job_was_done();
        assert!(dev_pids.iter().all(|pid| alive(*pid)), "the demo stopped dev's handlers");
        assert!(state_file.is_file(), "the demo touched dev's state file");

        kill(dev.pid(), Signal::SIGINT).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), dev.child.wait()).await.unwrap().unwrap();
        assert_eq!(status.code(), Some(0));
        for pid in dev_pids {
            assert!(!alive(pid), "dev's handler {pid} outlived it");
        }
    })
    .await;
}

#[tokio::test]
async fn without_its_handlers_outside_a_target_directory_demo_names_the_build_command() {
    bounded(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let lonely = dir.path().join("keyturn");
        std::fs::copy(workspace_binary("keyturn"), &lonely).unwrap();
        let output = tokio::process::Command::new(&lonely)
            .arg("demo")
            .current_dir(repo_root())
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{stderr}");
        assert!(stderr.contains(&format!("handler binaries missing beside keyturn in {}", dir.path().display())));
        assert!(stderr.contains("near-expiry, expired, new-version, test-event"), "{stderr}");
        assert!(
            stderr.contains("`cargo build --release -p near-expiry -p expired -p new-version -p test-event`"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&output.stdout));
        assert!(!Path::new(&dir.path().join("near-expiry")).exists(), "nothing was built");
    })
    .await;
}

#[tokio::test]
async fn a_step_that_does_not_happen_fails_the_demo_and_says_which() {
    bounded(Duration::from_secs(60), async {
        // A target directory where new-version is really the expired handler: it never notifies about new
        // versions nor mirrors them.
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("target/debug");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(dir.path().join("target/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55").unwrap();
        for (name, from) in [
            ("keyturn", "keyturn"),
            ("near-expiry", "near-expiry"),
            ("expired", "expired"),
            ("new-version", "expired"),
            ("test-event", "test-event"),
        ] {
            std::fs::copy(workspace_binary(from), profile.join(name)).unwrap();
        }
        let started = Instant::now();
        let output = tokio::process::Command::new(profile.join("keyturn"))
            .args(["demo", "--no-build", "--timeout", "3"])
            .current_dir(repo_root())
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(started.elapsed() < DEMO_LIMIT);
        assert!(stderr.contains("error: the demo did not go as expected"), "{stderr}");
        assert!(
            stderr.contains("no notification of secret kv-demo/db-password's new version (new-version)"),
            "{stderr}"
        );
        assert!(stderr.contains("secret kv-demo/db-password was not copied to kv-mirror (new-version)"), "{stderr}");
        assert!(stderr.contains("hint: run `keyturn -v demo`"), "{stderr}");
        // What did happen is still reported, and everything was stopped.
        let demo = Demo { code: 1, stdout: stdout.into_owned(), stderr: stderr.into_owned(), took: started.elapsed() };
        assert!(demo.row("rotated", "secret kv-demo/db-password").contains(" → "));
        assert!(demo.stdout.contains("some expected steps did not happen"), "{}", demo.stdout);
        for pid in demo.handler_pids() {
            assert!(!alive(pid), "handler process {pid} outlived keyturn demo");
        }
    })
    .await;
}

#[tokio::test]
async fn demo_help_has_examples() {
    let output = tokio::process::Command::new(workspace_binary("keyturn"))
        .args(["demo", "--help"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    assert!(help.contains("cargo run --release -p keyturn-cli -- demo"), "{help}");
    assert!(help.contains("--no-build") && help.contains("--timeout"), "{help}");
}
