//! `payrelay`: parse the command line, set up logging, hand off to the
//! library. Every command's logic lives in `payrelay::cli`.

use std::process::ExitCode;

use clap::Parser;
use payrelay::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            payrelay::telemetry::init(cli.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("payrelay: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let code = runtime.block_on(payrelay::cli::serve(args));
            payrelay::telemetry::flush();
            code
        }
        Command::Check(args) => payrelay::cli::check(&args),
        Command::Route(args) => payrelay::cli::route(&args),
        Command::Checkmac(args) => payrelay::cli::checkmac(&args),
        Command::Verify(args) => payrelay::cli::verify(&args),
        Command::Reconcile(args) => payrelay::reconcile::command(&args),
    }
}
