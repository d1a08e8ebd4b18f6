//! fastwire: a fast userspace WireGuard tunnel. Everything is in the library; see `cli`.

fn main() -> std::process::ExitCode {
    fastwire::cli::main()
}
