//! The `keyturn` binary: everything lives in the `cli` library.

fn main() -> std::process::ExitCode {
    keyturn_cli::main()
}
