//! The handler executable of a package: its name (host.json's `defaultExecutablePath`), and which platform
//! it was built for, read from its ELF header (no tool is run), so a package built on a Mac or for arm64 is
//! refused before it is deployed to Linux x86-64 workers that cannot run it.

use std::path::{Path, PathBuf};

/// The executable's name inside a package (host.json's `defaultExecutablePath`).
pub const EXECUTABLE: &str = "handler";

/// The platform a function app's workers run: Azure Functions on Linux runs x86-64 executables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    LinuxX86_64,
    LinuxAarch64,
}

impl Platform {
    /// The platform a Rust target triple builds for; `None` when it is not a Linux one keyturn deploys.
    pub fn from_triple(triple: &str) -> Option<Self> {
        let linux = triple.contains("-linux-");
        match triple.split('-').next() {
            Some("x86_64") if linux => Some(Self::LinuxX86_64),
            Some("aarch64") if linux => Some(Self::LinuxAarch64),
            _ => None,
        }
    }

    /// How people name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::LinuxX86_64 => "Linux x86-64",
            Self::LinuxAarch64 => "Linux arm64",
        }
    }

    /// The static (musl) target Microsoft suggests for custom handlers on this platform.
    pub fn musl_triple(self) -> &'static str {
        match self {
            Self::LinuxX86_64 => "x86_64-unknown-linux-musl",
            Self::LinuxAarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// ELF `e_machine`.
    fn machine(self) -> u16 {
        match self {
            Self::LinuxX86_64 => 0x3E,
            Self::LinuxAarch64 => 0xB7,
        }
    }
}

/// Why a file cannot be the handler executable on a platform.
#[derive(Debug, thiserror::Error)]
pub enum ExecutableError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {found}, not an executable for {} (the platform the function app runs on)", .platform.label())]
    WrongPlatform { path: PathBuf, found: String, platform: Platform },
}

/// Checks that `path` is an ELF executable for `platform`, from its header.
pub fn check_platform(path: &Path, platform: Platform) -> Result<(), ExecutableError> {
    use std::io::Read;
    let mut header = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|file| file.take(64).read_to_end(&mut header))
        .map_err(|source| ExecutableError::Read { path: path.to_path_buf(), source })?;
    let found = describe(&header);
    if found == Described::Elf(platform) {
        return Ok(());
    }
    Err(ExecutableError::WrongPlatform { path: path.to_path_buf(), found: found.to_string(), platform })
}

/// What a file's first bytes say it is.
#[derive(Debug, PartialEq, Eq)]
enum Described {
    Elf(Platform),
    OtherElf(String),
    MachO,
    Pe,
    Script,
    Unknown,
}

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Elf(platform) => write!(f, "an ELF executable for {}", platform.label()),
            Self::OtherElf(what) => write!(f, "an ELF file ({what})"),
            Self::MachO => f.write_str("a Mach-O executable (macOS)"),
            Self::Pe => f.write_str("a Windows (PE) executable"),
            Self::Script => f.write_str("a script (#!)"),
            Self::Unknown => f.write_str("not an executable (no ELF header)"),
        }
    }
}

/// Reads the ELF identification and header fields that decide where it runs: 64-bit little-endian, an
/// executable or position-independent executable, Linux or System V ABI, and the machine.
fn describe(header: &[u8]) -> Described {
    match header {
        [0x7F, b'E', b'L', b'F', ..] => {}
        [0xCF, 0xFA, 0xED, 0xFE, ..] | [0xFE, 0xED, 0xFA, 0xCF, ..] | [0xCA, 0xFE, 0xBA, 0xBE, ..] => {
            return Described::MachO;
        }
        [b'M', b'Z', ..] => return Described::Pe,
        [b'#', b'!', ..] => return Described::Script,
        _ => return Described::Unknown,
    }
    let Some(fields) = header.get(..20) else {
        return Described::OtherElf("truncated header".to_owned());
    };
    let (class, data, abi) = (fields[4], fields[5], fields[7]);
    if class != 2 {
        return Described::OtherElf("32-bit".to_owned());
    }
    if data != 1 {
        return Described::OtherElf("big-endian".to_owned());
    }
    // 0 = System V (what rustc emits for Linux), 3 = Linux.
    if abi != 0 && abi != 3 {
        return Described::OtherElf(format!("OS ABI {abi}, not Linux"));
    }
    let kind = u16::from_le_bytes([fields[16], fields[17]]);
    // 2 = ET_EXEC, 3 = ET_DYN (a position-independent executable, rustc's default).
    if kind != 2 && kind != 3 {
        return Described::OtherElf(format!("type {kind}: an object file or core dump, not an executable"));
    }
    let machine = u16::from_le_bytes([fields[18], fields[19]]);
    [Platform::LinuxX86_64, Platform::LinuxAarch64]
        .into_iter()
        .find(|platform| platform.machine() == machine)
        .map_or_else(|| Described::OtherElf(format!("machine {machine:#x}")), Described::Elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-byte ELF header: 64-bit, little-endian, `abi`, `kind`, `machine`.
    fn elf(abi: u8, kind: u16, machine: u16) -> Vec<u8> {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 2;
        header[5] = 1;
        header[6] = 1;
        header[7] = abi;
        header[16..18].copy_from_slice(&kind.to_le_bytes());
        header[18..20].copy_from_slice(&machine.to_le_bytes());
        header
    }

    #[test]
    fn reads_the_platform_from_the_elf_header() {
        assert_eq!(describe(&elf(0, 3, 0x3E)), Described::Elf(Platform::LinuxX86_64));
        assert_eq!(describe(&elf(3, 2, 0xB7)), Described::Elf(Platform::LinuxAarch64));
        assert!(matches!(describe(&elf(9, 3, 0x3E)), Described::OtherElf(why) if why.contains("ABI 9")));
        assert!(matches!(describe(&elf(0, 1, 0x3E)), Described::OtherElf(why) if why.contains("object file")));
        assert!(matches!(describe(&elf(0, 3, 0x28)), Described::OtherElf(why) if why.contains("0x28")));
        let mut thirty_two = elf(0, 3, 0x3E);
        thirty_two[4] = 1;
        assert_eq!(describe(&thirty_two), Described::OtherElf("32-bit".into()));
        assert_eq!(describe(b"\xcf\xfa\xed\xfe rest"), Described::MachO);
        assert_eq!(describe(b"MZ\x90\x00"), Described::Pe);
        assert_eq!(describe(b"#!/bin/sh\n"), Described::Script);
        assert_eq!(describe(b"\x7fELF"), Described::OtherElf("truncated header".into()));
        assert_eq!(describe(b""), Described::Unknown);
    }

    #[test]
    fn a_file_for_another_platform_is_refused_naming_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handler");
        std::fs::write(&path, elf(0, 3, 0xB7)).unwrap();
        assert!(check_platform(&path, Platform::LinuxAarch64).is_ok());
        let error = check_platform(&path, Platform::LinuxX86_64).unwrap_err().to_string();
        assert!(error.ends_with("is an ELF executable for Linux arm64, not an executable for Linux x86-64 (the platform the function app runs on)"), "{error}");
        // The test binary itself is a real one for the machine running the tests.
        let this = std::env::current_exe().unwrap();
        let here = if cfg!(target_arch = "x86_64") { Platform::LinuxX86_64 } else { Platform::LinuxAarch64 };
        assert!(check_platform(&this, here).is_ok());
        assert!(check_platform(&dir.path().join("missing"), here).is_err());
    }

    #[test]
    fn triples_map_to_the_platforms_keyturn_deploys() {
        assert_eq!(Platform::from_triple("x86_64-unknown-linux-musl"), Some(Platform::LinuxX86_64));
        assert_eq!(Platform::from_triple("x86_64-unknown-linux-gnu"), Some(Platform::LinuxX86_64));
        assert_eq!(Platform::from_triple("aarch64-unknown-linux-gnu"), Some(Platform::LinuxAarch64));
        assert_eq!(Platform::from_triple("x86_64-apple-darwin"), None);
        assert_eq!(Platform::LinuxX86_64.musl_triple(), "x86_64-unknown-linux-musl");
    }
}
