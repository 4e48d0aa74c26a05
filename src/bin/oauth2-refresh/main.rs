//! `oauth2-refresh`: import, refresh, check and revoke OAuth 2.0 refresh
//! tokens from the command line, with the library's token endpoint client:
//! client authentication, rotation, retries of transient failures, and an
//! atomic, private token file. Secrets never go on the command line.

mod args;
mod commands;
mod input;
mod keys;
mod manager;
mod report;
mod tokens;

use std::process::ExitCode;

use clap::Parser as _;

use args::Cli;
use report::{Secrets, code};

fn main() -> ExitCode {
    let cli = Cli::parse();
    args::check_usage(&cli.command);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(code::OTHER);
        }
    };
    let mut secrets = Secrets::default();
    let result = runtime.block_on(commands::run(cli.command, &mut secrets));
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(&secrets),
    }
}
