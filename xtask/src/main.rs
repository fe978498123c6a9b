//! `cargo xtask <command>`: developer tooling for running Paywire locally (the command line
//! is declared in [`cli`]).
//!
//! * `up`: create the databases, declare the broker topology, start the four services,
//!   print their URLs, stop them all on Ctrl-C (or when one of them exits);
//! * `migrate`: create the databases and let each service apply its migrations, then exit;
//! * `demo [--channel wechat|alipay]…`: buy a paid course with each channel (default: all) through the HTTP API of a running platform;
//! * `token <user-id>`: print a 24 h dev JWT;
//! * `refund <order_id> [--amount-fen N] [--reason …]`: refund an order as an operator
//!   (see [`operator`]);
//! * `reconcile --date YYYY-MM-DD [--channel c]`: reconcile a day with the channels'
//!   statements through the gateway's operator API and print the report;
//! * `dlq list|replay`: inspect and replay messages parked in dead-letter queues;
//! * `chaos [--n N] [--seed S] [--pg-restarts N]`: the chaos test (two instances per
//!   service, killed processes, RabbitMQ restarts, restarts of a private PostgreSQL,
//!   callback faults) with its invariant checks;
//! * `pg-outage`: one PostgreSQL restart under steady purchases without client retries:
//!   how many fail, with which answers;
//! * `bench [--quick] [--json]`: the release build measured against this machine's own
//!   limits (see [`bench`]);
//! * `images`: every container image built on this machine (see [`images`]);
//! * `compose-smoke`: the development compose stack, bought from and torn down (see
//!   [`compose`]);
//! * `proto-docs`: write `proto-docs/` from the code (see [`proto_docs`]);
//! * `fuzz [--minutes N]`: the parsers' property tests with many cases for N minutes (see
//!   [`fuzz`]);
//! * `fresh-check`: a fresh clone's `.ci/run` on a bare Debian 12 with only the README's
//!   prerequisites (see [`fresh_check`]).

// A command-line tool: its output is stdout.
#![allow(clippy::print_stdout)]

mod bench;
mod chaos;
mod cli;
mod compose;
mod demo;
mod dlq;
#[cfg(test)]
mod drift;
#[cfg(test)]
mod fake;
mod fresh_check;
mod fuzz;
mod images;
#[cfg(test)]
mod k8s;
mod layout;
mod migrate;
mod operator;
mod procs;
mod proto_docs;
mod reconcile;
mod token;
mod up;

use std::process::ExitCode;

use cli::Command;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        // Prints help (status 0) or the usage error (status 2).
        Err(e) => e.exit(),
    };
    let result = match command {
        Command::Help => {
            println!("{}", cli::help());
            Ok(())
        }
        Command::Up { observe } => up::run(observe).await,
        Command::Migrate => migrate::run().await,
        Command::Demo { channels } => demo::run_each(&channels).await,
        Command::Token { user } => token::run(&user),
        Command::Refund {
            order_id,
            amount_fen,
            reason,
            request_id,
        } => operator::run_refund(order_id, amount_fen, reason, request_id).await,
        Command::Reconcile { date, channel } => reconcile::run(date, channel).await,
        Command::DlqList { vhost, queue } => {
            dlq::run_list(vhost.as_deref(), queue.as_deref()).await
        }
        Command::DlqReplay {
            vhost,
            queue,
            selection,
        } => dlq::run_replay(vhost.as_deref(), &queue, &selection).await,
        Command::Chaos {
            n,
            seed,
            pg_restarts,
        } => chaos::run(n, seed, pg_restarts).await,
        Command::PgOutage {
            purchases,
            students,
            down_secs,
            immediate,
        } => chaos::pg_outage(purchases, students, down_secs, immediate).await,
        // Blocking: docker and debootstrap run with the terminal attached.
        Command::Images { binaries } => blocking(move || images::run_all(binaries)).await,
        Command::ComposeSmoke { binaries } => compose::smoke(binaries).await,
        Command::FreshCheck(options) => fresh_check::run(&options).await,
        Command::Bench { quick, json } => bench::run(quick, json).await,
        Command::ProtoDocs => proto_docs::write(),
        // Blocking: cargo runs with the terminal attached.
        Command::Fuzz { minutes, cases } => blocking(move || fuzz::run(minutes, cases)).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a blocking command (docker, debootstrap with the terminal attached) off the runtime.
async fn blocking(f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(f).await?
}
