//! `local-ca <dir>`: generates a local CA and a leaf certificate for loopback (127.0.0.1, ::1, localhost) and
//! writes them for a TLS server outside this process, such as Azurite started by `scripts/test`:
//!
//! - `<dir>/keyturn-local-ca.pem`: the CA certificate, for clients to trust (`KEYTURN_CA_FILE`);
//! - `<dir>/leaf.pem`: the leaf certificate (Azurite's `--cert`);
//! - `<dir>/leaf-key.pem`: the leaf's private key, readable by the owner only (Azurite's `--key`).
//!
//! Every run makes a new CA: nothing outside `<dir>` is trusted or kept.

use std::path::Path;
use std::process::ExitCode;

use keyturn_local::tls::LocalCa;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: local-ca <dir>   (writes keyturn-local-ca.pem, leaf.pem and leaf-key.pem into <dir>)");
        return ExitCode::from(2);
    };
    match write(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("local-ca: {message}");
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let ca = LocalCa::generate(dir, &[]).map_err(|e| e.to_string())?;
    write_file(&dir.join("leaf.pem"), ca.leaf_pem(), 0o644)?;
    write_file(&dir.join("leaf-key.pem"), ca.leaf_key_pem(), 0o600)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // The mode applies when the file is created; a key left by an earlier run is replaced, not reused.
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))
}
