//! The package on disk: its folder (host.json, the executable, the function folder, local.settings.json
//! beside them), its zip, and the checks a package passes before it is called deployable.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use keyturn_app::{LocalSettings, Platform};
use serde_json::Value;
use zip::write::SimpleFileOptions;

use crate::exit::CommandFailure;
use crate::handlers::{self, Handler};

pub use keyturn_app::EXECUTABLE;

/// What every package gets beyond its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The platform the function app's workers run, which the executable must be built for.
    pub platform: Platform,
    /// local.settings.json `Values`.
    pub settings: BTreeMap<String, String>,
}

impl Options {
    /// Linux x86-64 unless `target` names another Linux triple; local settings for `func start` on a
    /// developer's machine: the worker runtime, Azurite, the Azure CLI's credential, the default canary, then
    /// `settings`.
    pub fn new(target: Option<&str>, settings: &[(String, String)]) -> Result<Self, CommandFailure> {
        let platform = match target {
            None => Platform::LinuxX86_64,
            Some(triple) => Platform::from_triple(triple).ok_or_else(|| {
                CommandFailure::setup(format!("--target {triple} does not build for Linux, where function apps run"))
                    .hint(format!("use --target {}", Platform::LinuxX86_64.musl_triple()))
            })?,
        };
        let mut values = keyturn_app::local_settings::func_start_defaults();
        values.insert("KEYTURN_CREDENTIAL".to_owned(), "developer-tools".to_owned());
        values.insert("KEYTURN_CANARY_SECRET".to_owned(), handlers::DEFAULT_CANARY_SECRET.to_owned());
        values.extend(settings.iter().cloned());
        Ok(Self { platform, settings: values })
    }
}

/// What one package holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packaged {
    pub handler: &'static str,
    pub folder: PathBuf,
    pub zip: PathBuf,
    pub executable_bytes: u64,
    pub folder_bytes: u64,
    pub zip_bytes: u64,
}

/// Writes `<out>/<handler>/` and `<out>/<handler>.zip` from the repository at `root` and `executable`,
/// then validates the folder.
pub fn package(
    root: &Path,
    out: &Path,
    handler: &Handler,
    executable: &Path,
    options: &Options,
) -> Result<Packaged, CommandFailure> {
    // First, before anything is written: an executable the workers cannot run makes no package.
    keyturn_app::executable::check_platform(executable, options.platform).map_err(|error| {
        let triple = options.platform.musl_triple();
        CommandFailure::setup(error.to_string()).hint(format!(
            "cross-build a static binary: `rustup target add {triple}`, then `keyturn package --build --target {triple}`; \
             from macOS or Windows that target also needs a linker (cargo-zigbuild provides one)"
        ))
    })?;
    let io = |what: &str, path: &Path, error: std::io::Error| {
        CommandFailure::failed(format!("{what} {}: {error}", path.display()))
    };
    let folder = out.join(handler.name);
    // A fresh folder: a file left from an earlier package must not ship in this one.
    if folder.exists() {
        std::fs::remove_dir_all(&folder).map_err(|e| io("cannot clear", &folder, e))?;
    }
    let function_dir = folder.join(handler.name);
    std::fs::create_dir_all(&function_dir).map_err(|e| io("cannot create", &function_dir, e))?;

    let host_json = root.join("host.json");
    std::fs::copy(&host_json, folder.join("host.json")).map_err(|e| io("cannot copy", &host_json, e))?;
    let definition = root.join(keyturn_app::DEFINITIONS_DIR).join(handler.name).join("function.json");
    std::fs::copy(&definition, function_dir.join("function.json")).map_err(|e| io("cannot copy", &definition, e))?;
    let target = folder.join(EXECUTABLE);
    std::fs::copy(executable, &target).map_err(|e| io("cannot copy", executable, e))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io("cannot make executable", &target, e))?;

    let problems = validate(&folder, handler.name);
    if !problems.is_empty() {
        return Err(CommandFailure::failed(format!(
            "{} does not have the custom-handler layout:\n  - {}",
            folder.display(),
            problems.join("\n  - ")
        ))
        .hint(
            "the layout is in docs/cli.md, \"keyturn package\"; rebuild the package with `keyturn package --build`",
        ));
    }

    let zip_path = out.join(format!("{}.zip", handler.name));
    write_zip(&folder, handler.name, &zip_path)?;
    // Beside the package's files, outside the zip: what `func start` in this folder reads.
    LocalSettings::new(options.settings.clone())
        .write(&folder)
        .map_err(|error| CommandFailure::failed(format!("the package's local settings: {error}")))?;
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).map_err(|e| io("cannot stat", path, e));
    let folder_bytes = size(&folder.join("host.json"))? + size(&target)? + size(&function_dir.join("function.json"))?;
    Ok(Packaged {
        handler: handler.name,
        executable_bytes: size(&target)?,
        folder_bytes,
        zip_bytes: size(&zip_path)?,
        folder,
        zip: zip_path,
    })
}

/// Everything wrong with `folder` as the package of `function`; empty when it is deployable.
pub fn validate(folder: &Path, function: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let read_json = |path: &Path| -> Result<Value, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
    };

    match read_json(&folder.join("host.json")) {
        Err(problem) => problems.push(problem),
        Ok(host) => {
            if host["version"] != "2.0" {
                problems.push(format!("host.json: version is {}, expected \"2.0\"", host["version"]));
            }
            let executable = host["customHandler"]["description"]["defaultExecutablePath"].as_str().unwrap_or("");
            if executable != EXECUTABLE {
                problems.push(format!(
                    "host.json: customHandler.description.defaultExecutablePath is {executable:?}, expected \"{EXECUTABLE}\""
                ));
            }
            if host["extensionBundle"]["id"] != "Microsoft.Azure.Functions.ExtensionBundle" {
                problems.push(
                    "host.json: extensionBundle Microsoft.Azure.Functions.ExtensionBundle is required for eventGridTrigger"
                        .to_owned(),
                );
            }
        }
    }

    let executable = folder.join(EXECUTABLE);
    match std::fs::metadata(&executable) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => problems.push(format!("{} is not an executable file", executable.display())),
        Err(error) => problems.push(format!("{}: {error}", executable.display())),
    }

    let mut function_folders = Vec::new();
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            if entry.path().join("function.json").is_file() {
                function_folders.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    function_folders.sort();
    if function_folders != [function] {
        problems.push(format!("expected exactly one function folder, {function}/, found {function_folders:?}"));
    }
    let definition = folder.join(function).join("function.json");
    if let Ok(json) = read_json(&definition) {
        let bindings = json["bindings"].as_array().cloned().unwrap_or_default();
        let valid = bindings.len() == 1
            && bindings[0]["type"] == "eventGridTrigger"
            && bindings[0]["direction"] == "in"
            && bindings[0]["name"].as_str().is_some_and(|n| !n.is_empty())
            && bindings[0].get("dataType").is_none();
        if !valid {
            problems.push(format!(
                "{}: expected one binding {{\"type\": \"eventGridTrigger\", \"name\": ..., \"direction\": \"in\"}} without dataType",
                definition.display()
            ));
        }
    }

    // Last, the same reader the Functions host stand-in uses: what it cannot load, a host would not run.
    if problems.is_empty() {
        match keyturn_app::FunctionApp::load(folder) {
            Ok(app) => {
                let names: Vec<&str> = app.functions().map(|f| f.name.as_str()).collect();
                if names != [function] {
                    problems.push(format!("the Functions host would serve {names:?}, not [{function:?}]"));
                }
            }
            Err(error) => problems.push(error.to_string()),
        }
    }
    problems
}

/// The zip of a package folder: deflate, unix permissions kept (the executable bit matters on Linux), and
/// fixed timestamps so the same inputs give the same bytes.
fn write_zip(folder: &Path, function: &str, zip_path: &Path) -> Result<(), CommandFailure> {
    let fail =
        |error: &dyn std::fmt::Display| CommandFailure::failed(format!("cannot write {}: {error}", zip_path.display()));
    let partial = zip_path.with_extension("zip.partial");
    let file = File::create(&partial).map_err(|e| fail(&e))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = |mode: u32| {
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).unix_permissions(mode)
    };
    let entries = [
        ("host.json".to_owned(), folder.join("host.json"), 0o644),
        (EXECUTABLE.to_owned(), folder.join(EXECUTABLE), 0o755),
        (format!("{function}/function.json"), folder.join(function).join("function.json"), 0o644),
    ];
    zip.add_directory(format!("{function}/"), options(0o755)).map_err(|e| fail(&e))?;
    for (name, path, mode) in entries {
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| fail(&e))?;
        zip.start_file(name, options(mode)).map_err(|e| fail(&e))?;
        zip.write_all(&bytes).map_err(|e| fail(&e))?;
    }
    zip.finish().map_err(|e| fail(&e))?;
    std::fs::rename(&partial, zip_path).map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::super::parse_setting;
    use super::*;

    fn repo_root() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
    }

    /// A file with the ELF header of a Linux executable for `machine` (it is never run here).
    fn fake_executable_for(dir: &Path, machine: u16) -> PathBuf {
        let path = dir.join(format!("built-{machine:x}"));
        let mut header = vec![0u8; 64];
        header[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        header[16..18].copy_from_slice(&3u16.to_le_bytes());
        header[18..20].copy_from_slice(&machine.to_le_bytes());
        std::fs::write(&path, header).unwrap();
        path
    }

    fn fake_executable(dir: &Path) -> PathBuf {
        fake_executable_for(dir, 0x3E)
    }

    fn options() -> Options {
        Options::new(None, &[]).unwrap()
    }

    #[test]
    fn a_package_has_the_layout_and_its_zip_keeps_the_executable_bit() {
        let work = tempfile::tempdir().unwrap();
        let handler = handlers::find("expired").unwrap();
        let out = work.path().join("dist");
        let packaged = package(&repo_root(), &out, handler, &fake_executable(work.path()), &options()).unwrap();
        assert_eq!(packaged.folder, out.join("expired"));
        assert!(validate(&packaged.folder, "expired").is_empty());

        let mut archive = zip::ZipArchive::new(File::open(&packaged.zip).unwrap()).unwrap();
        let mut names: Vec<String> = archive.file_names().map(|name| name.unwrap().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["expired/", "expired/function.json", "handler", "host.json"]);
        let executable = archive.by_name("handler").unwrap();
        assert_eq!(executable.unix_mode().map(|m| m & 0o777), Some(0o755));
        assert_eq!(executable.compression(), zip::CompressionMethod::Deflated);
        drop(executable);
        assert_eq!(archive.by_name("host.json").unwrap().unix_mode().map(|m| m & 0o777), Some(0o644));
        assert_eq!(packaged.zip_bytes, std::fs::metadata(&packaged.zip).unwrap().len());

        // The same inputs give the same bytes (fixed timestamps), and a rerun replaces the folder.
        let first = std::fs::read(&packaged.zip).unwrap();
        std::fs::write(packaged.folder.join("stray.txt"), "left over").unwrap();
        let again = package(&repo_root(), &out, handler, &fake_executable(work.path()), &options()).unwrap();
        assert_eq!(std::fs::read(&again.zip).unwrap(), first);
        assert!(!again.folder.join("stray.txt").exists());
    }

    #[test]
    fn local_settings_sit_beside_the_package_for_func_start_and_stay_out_of_the_zip() {
        let work = tempfile::tempdir().unwrap();
        let handler = handlers::find("test-event").unwrap();
        let settings = [("KEYTURN_VAULTS".to_owned(), "kv-one".to_owned())];
        let options = Options::new(Some("x86_64-unknown-linux-musl"), &settings).unwrap();
        let packaged = package(&repo_root(), work.path(), handler, &fake_executable(work.path()), &options).unwrap();

        let local = LocalSettings::read(&packaged.folder).unwrap().unwrap();
        assert_eq!(local.values["FUNCTIONS_WORKER_RUNTIME"], "custom");
        assert_eq!(local.values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
        assert_eq!(local.values["KEYTURN_VAULTS"], "kv-one");
        assert_eq!(local.values["KEYTURN_CREDENTIAL"], "developer-tools");
        // What Core Tools checks before `func start` runs anything passes on this folder.
        let app = keyturn_app::FunctionApp::load(&packaged.folder).unwrap();
        assert!(keyturn_app::local_settings::func_start_settings(&app, Some(&local), &BTreeMap::new()).is_ok());
        let archive = zip::ZipArchive::new(File::open(&packaged.zip).unwrap()).unwrap();
        assert!(archive.file_names().all(|name| name.unwrap() != "local.settings.json"));

        assert!(parse_setting("=x").is_err() && parse_setting("NAME").is_err());
        assert_eq!(parse_setting("A=b=c").unwrap(), ("A".to_owned(), "b=c".to_owned()));
    }

    #[test]
    fn an_executable_for_another_platform_makes_no_package_and_the_hint_says_how_to_cross_build() {
        let work = tempfile::tempdir().unwrap();
        let handler = handlers::find("expired").unwrap();
        let out = work.path().join("dist");
        let arm = fake_executable_for(work.path(), 0xB7);
        let failure = package(&repo_root(), &out, handler, &arm, &options()).unwrap_err();
        let text = format!("{failure:?}");
        assert!(text.contains("is an ELF executable for Linux arm64, not an executable for Linux x86-64"), "{text}");
        assert!(text.contains("rustup target add x86_64-unknown-linux-musl"), "{text}");
        assert!(!out.join("expired").exists(), "nothing is written for a wrong executable");

        let script = work.path().join("script");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let text = format!("{:?}", package(&repo_root(), &out, handler, &script, &options()).unwrap_err());
        assert!(text.contains("is a script (#!)"), "{text}");
        // Built for arm64 on purpose: packaged for arm64 workers.
        let arm_options = Options::new(Some("aarch64-unknown-linux-gnu"), &[]).unwrap();
        assert!(package(&repo_root(), &out, handler, &arm, &arm_options).is_ok());
        assert!(Options::new(Some("x86_64-apple-darwin"), &[]).is_err());
    }

    #[test]
    fn validation_names_each_departure_from_the_layout() {
        let work = tempfile::tempdir().unwrap();
        let handler = handlers::find("near-expiry").unwrap();
        let packaged = package(&repo_root(), work.path(), handler, &fake_executable(work.path()), &options()).unwrap();
        let folder = packaged.folder;

        std::fs::set_permissions(folder.join(EXECUTABLE), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir_all(folder.join("expired")).unwrap();
        std::fs::copy(folder.join("near-expiry/function.json"), folder.join("expired/function.json")).unwrap();
        std::fs::write(
            folder.join("near-expiry/function.json"),
            r#"{"bindings":[{"type":"eventGridTrigger","name":"e","direction":"in","dataType":"string"}]}"#,
        )
        .unwrap();
        let host = std::fs::read_to_string(folder.join("host.json")).unwrap().replace("\"handler\"", "\"main\"");
        std::fs::write(folder.join("host.json"), host).unwrap();

        let problems = validate(&folder, "near-expiry").join("\n");
        for expected in [
            "defaultExecutablePath is \"main\"",
            "is not an executable file",
            "exactly one function folder",
            "without dataType",
        ] {
            assert!(problems.contains(expected), "{expected} not reported in:\n{problems}");
        }
    }
}
