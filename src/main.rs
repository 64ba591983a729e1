//! `payrelay`: parse the command line, set up logging, hand off to the
//! library. Every command's logic lives in `payrelay::cli`.

use std::process::ExitCode;

use clap::Parser;
use payrelay::cli::{Cli, Command};

/// mimalloc instead of glibc's malloc: the request path allocates a little
/// many times, and glibc's arenas spent a sixth of the gateway's CPU on it
/// (issue 14; measured in the README's Benchmark section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(cli.log_format, payrelay::cli::serve(args)),
        Command::Demo(args) => serve(cli.log_format, payrelay::demo::command(args)),
        Command::Sandbox(args) => serve(cli.log_format, payrelay::sandbox::command(args)),
        Command::Check(args) => payrelay::cli::check(&args),
        Command::Route(args) => payrelay::cli::route(&args),
        Command::Checkmac(args) => payrelay::cli::checkmac(&args),
        Command::Verify(args) => payrelay::cli::verify(&args),
        Command::Reconcile(args) => payrelay::reconcile::command(&args),
    }
}

/// Runs a long-lived command on the main runtime, logging to stderr.
fn serve(log_format: payrelay::telemetry::LogFormat, command: impl Future<Output = ExitCode>) -> ExitCode {
    payrelay::telemetry::init(log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Requests are served on lanes, one thread per core (`http::lanes`); the
    // main runtime keeps the background work: accepting, deliveries, the
    // store's PostgreSQL writer, the purger, the reconciler. With a worker
    // per core it too, two workers on two cores handed each delivery back
    // and forth and fought the lanes for the cores: a quarter of the cores
    // (at least one) cost notify-unique ~11 µs less per request (issue 14,
    // README Benchmark step 45). TOKIO_WORKER_THREADS still overrides it.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        builder.worker_threads(cores.div_ceil(4));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("payrelay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(command);
    payrelay::telemetry::flush();
    code
}
