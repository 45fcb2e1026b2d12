//! Thin entry point; everything, the runtime included, is in [`builder::cli::main`].

fn main() -> std::process::ExitCode {
    builder::cli::main()
}
