use std::process::ExitCode;

fn main() -> ExitCode {
    geotrail::cli::main()
}
