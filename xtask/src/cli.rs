//! The command line, declared with clap's derive: `cargo xtask <command> [options]`.
//!
//! [`parse`] turns the arguments into a [`Command`], the plain value `main` dispatches on;
//! usage errors come back as clap errors, which print the usage and exit with status 2.

use clap::{ArgGroup, CommandFactory, Parser, Subcommand};
use paywire_domain::{Fen, OrderId, PayChannel, UserId};

use crate::dlq::Selection;
use crate::images::Binaries;

const ENVIRONMENT_HELP: &str = "\
environment:
  PAYWIRE_PG                 PostgreSQL server URL (default postgres://postgres@127.0.0.1:5432)
  PAYWIRE__AMQP__URL         RabbitMQ URL (default amqp://guest:guest@127.0.0.1:5672/%2f)
  PAYWIRE__AUTH__JWT_SECRET  JWT signing key (default: the development secret)";

/// Developer tooling for running Paywire locally.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    disable_version_flag = true,
    after_help = ENVIRONMENT_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Create databases, declare broker topology, start all five services and print their
    /// URLs and metrics URLs; Ctrl-C stops them all
    Up {
        /// Also start Prometheus (Debian's `prometheus`) with deploy/observability/ against
        /// the services, on http://127.0.0.1:9090
        #[arg(long)]
        observe: bool,
    },
    /// Create databases and apply every service's migrations, then exit
    Migrate,
    /// Buy a paid course with each channel through the HTTP API of a running platform
    Demo {
        /// Channel to buy with (wechat, alipay, wechat_v2); repeat for several; default: every channel
        #[arg(long = "channel", value_name = "c")]
        channels: Vec<PayChannel>,
    },
    /// Print a dev JWT (24 h) for <user-id>
    Token {
        #[arg(value_name = "user-id", value_parser = parse_user)]
        user: UserId,
    },
    /// Refund a paid order through the order service's internal API, with the operators'
    /// credential (PAYWIRE_OPERATOR_TOKEN); a full refund revokes the course
    Refund {
        #[arg(value_name = "order_id", value_parser = parse_order_id)]
        order_id: OrderId,
        /// Refund only this much (fen); default: what the order cost
        #[arg(long, value_name = "N", value_parser = parse_fen)]
        amount_fen: Option<Fen>,
        /// What the payer sees at the channel
        #[arg(long, value_name = "text")]
        reason: Option<String>,
        /// Tells apart two refunds of the same order and amount (default: the amount is
        /// the key, so running the same command again never refunds twice)
        #[arg(long, value_name = "id")]
        request_id: Option<String>,
    },
    /// Reconcile a day (China Standard Time) with the channels' statements through the
    /// payment gateway's operator API; print every discrepancy and what was done about it
    Reconcile {
        /// The day, YYYY-MM-DD
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
        date: chrono::NaiveDate,
        /// Only this channel (wechat, alipay); default: every enabled channel
        #[arg(long, value_name = "c")]
        channel: Option<PayChannel>,
    },
    /// Inspect and replay messages parked in dead-letter queues
    Dlq {
        #[command(subcommand)]
        command: DlqSub,
    },
    /// Buy N courses with two instances per service while killing services, restarting
    /// RabbitMQ and a private PostgreSQL, then check the invariants
    Chaos {
        /// How many courses to buy
        #[arg(long, default_value_t = CHAOS_DEFAULT_N, value_parser = parse_positive)]
        n: usize,
        /// Seed of the fault schedule (default: random, printed)
        #[arg(long, value_name = "s")]
        seed: Option<u64>,
        /// Restarts of the run's own PostgreSQL server, immediate and fast shutdowns
        /// alternating (default 2)
        #[arg(long, value_name = "N")]
        pg_restarts: Option<usize>,
    },
    /// Restart a private PostgreSQL once while students buy courses back to back without
    /// retrying; print how many purchases failed and with which answers
    PgOutage {
        /// Purchases in all
        #[arg(long, default_value_t = 600, value_parser = parse_positive)]
        purchases: usize,
        /// Students buying at once
        #[arg(long, default_value_t = 8, value_parser = parse_positive)]
        students: usize,
        /// Seconds PostgreSQL stays down
        #[arg(long, default_value_t = 3)]
        down_secs: u64,
        /// Immediate shutdown (a crash) instead of fast (an orderly restart)
        #[arg(long)]
        immediate: bool,
    },
    /// Build every container image on this machine: the Debian base (debootstrap +
    /// import), a Rust builder, one image per service, PostgreSQL and RabbitMQ
    Images {
        /// Ship the host's dev-profile binaries (tag host-build) instead of compiling
        /// release binaries in the builder stage (tag latest)
        #[arg(long)]
        prebuilt: bool,
    },
    /// Build the images, run the development compose stack, buy with every channel
    /// through its HTTP ports, kill a service mid-purchase, check nothing was lost, and
    /// tear it all down (also on failure)
    ComposeSmoke {
        /// Ship the host's dev-profile binaries instead of compiling release binaries
        #[arg(long)]
        prebuilt: bool,
    },
    /// Run the property tests of the parsers that read untrusted bytes (`fuzz_…`) round
    /// after round with many cases and fresh seeds, for N minutes; stop at a finding
    Fuzz {
        /// Minutes to keep starting rounds
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        minutes: u64,
        /// Cases per property per round (PROPTEST_CASES)
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
        cases: u32,
    },
    /// Benchmark a release build: purchases/s at rising concurrency until saturation and
    /// at 4× it, stage latencies, CPU and peak RSS per process, and the machine's limits
    /// (RSA signatures, PostgreSQL transactions, RabbitMQ confirms) measured in the same
    /// run as baselines; writes target/bench/bench.{json,md,svg}
    Bench {
        /// Seconds, small N: proves the bench runs (the test suite runs it too)
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Write proto-docs/ (OpenAPI of every service, AsyncAPI of the events) from the code:
    /// the handlers' annotations and the contract types
    ProtoDocs,
    /// Run a fresh clone's .ci/run in a bare Debian 12 container with only the README's
    /// prerequisites and report the outcome and time; stops this machine's PostgreSQL and
    /// RabbitMQ meanwhile (they are started again afterwards)
    FreshCheck {
        /// Keep the clone's build output in a tmpfs of this size (e.g. 12g) instead of on
        /// disk
        #[arg(long, value_name = "size")]
        target_tmpfs: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DlqSub {
    /// Show the messages parked in every <queue>.dlq (or one)
    List {
        /// RabbitMQ virtual host (default: the one in PAYWIRE__AMQP__URL)
        #[arg(long, value_name = "v")]
        vhost: Option<String>,
        /// Show only <queue>.dlq
        #[arg(long, value_name = "q")]
        queue: Option<String>,
    },
    /// Move parked messages from <queue>.dlq back to <queue>
    #[command(group(ArgGroup::new("selection").required(true).args(["message_id", "all"])))]
    Replay {
        /// The work queue whose <queue>.dlq is replayed
        #[arg(value_name = "queue")]
        queue: String,
        /// RabbitMQ virtual host (default: the one in PAYWIRE__AMQP__URL)
        #[arg(long, value_name = "v")]
        vhost: Option<String>,
        /// Replay only the message with this message id
        #[arg(long, value_name = "id")]
        message_id: Option<String>,
        /// Replay every parked message
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Up {
        observe: bool,
    },
    Migrate,
    Demo {
        /// Each channel buys one course, in order; default: every channel.
        channels: Vec<PayChannel>,
    },
    Token {
        user: UserId,
    },
    Refund {
        order_id: OrderId,
        amount_fen: Option<Fen>,
        reason: Option<String>,
        request_id: Option<String>,
    },
    Reconcile {
        date: chrono::NaiveDate,
        channel: Option<PayChannel>,
    },
    DlqList {
        vhost: Option<String>,
        queue: Option<String>,
    },
    DlqReplay {
        vhost: Option<String>,
        queue: String,
        selection: Selection,
    },
    Chaos {
        n: usize,
        seed: Option<u64>,
        pg_restarts: Option<usize>,
    },
    PgOutage {
        purchases: usize,
        students: usize,
        down_secs: u64,
        immediate: bool,
    },
    Images {
        binaries: Binaries,
    },
    ComposeSmoke {
        binaries: Binaries,
    },
    FreshCheck(crate::fresh_check::Options),
    Bench {
        quick: bool,
        json: bool,
    },
    ProtoDocs,
    Fuzz {
        minutes: u64,
        cases: u32,
    },
}

/// Default size of `cargo xtask chaos`.
pub const CHAOS_DEFAULT_N: usize = 500;

fn parse_user(raw: &str) -> Result<UserId, String> {
    UserId::parse(raw).map_err(|e| format!("user id {raw:?}: {e}"))
}

fn parse_order_id(raw: &str) -> Result<OrderId, String> {
    raw.parse().map_err(|e| format!("order id {raw:?}: {e}"))
}

fn parse_fen(raw: &str) -> Result<Fen, String> {
    let fen = raw
        .parse::<i64>()
        .map_err(|e| format!("{raw:?}: {e}"))
        .and_then(|n| Fen::new(n).map_err(|e| e.to_string()))?;
    if fen.is_zero() {
        return Err("must be at least 1".into());
    }
    Ok(fen)
}

fn parse_date(raw: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|e| format!("{raw:?}: {e}"))
}

fn parse_positive(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn binaries(prebuilt: bool) -> Binaries {
    if prebuilt {
        Binaries::Prebuilt
    } else {
        Binaries::Source
    }
}

/// The full help text, as `cargo xtask help` prints it.
pub fn help() -> String {
    Cli::command().render_long_help().to_string()
}

/// `args` without the program name.
pub fn parse(args: &[String]) -> Result<Command, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().map(String::as_str)))?;
    Ok(match cli.command {
        None => Command::Help,
        Some(Sub::Up { observe }) => Command::Up { observe },
        Some(Sub::Migrate) => Command::Migrate,
        Some(Sub::Demo { mut channels }) => {
            if channels.is_empty() {
                channels = PayChannel::ALL.to_vec();
            }
            Command::Demo { channels }
        }
        Some(Sub::Token { user }) => Command::Token { user },
        Some(Sub::Refund {
            order_id,
            amount_fen,
            reason,
            request_id,
        }) => Command::Refund {
            order_id,
            amount_fen,
            reason,
            request_id,
        },
        Some(Sub::Reconcile { date, channel }) => Command::Reconcile { date, channel },
        Some(Sub::Dlq {
            command: DlqSub::List { vhost, queue },
        }) => Command::DlqList { vhost, queue },
        Some(Sub::Dlq {
            command:
                DlqSub::Replay {
                    queue,
                    vhost,
                    message_id,
                    all,
                },
        }) => Command::DlqReplay {
            vhost,
            queue,
            // The required group lets exactly one of the two through.
            selection: match message_id {
                Some(id) if !all => Selection::MessageId(id),
                _ => Selection::All,
            },
        },
        Some(Sub::Chaos {
            n,
            seed,
            pg_restarts,
        }) => Command::Chaos {
            n,
            seed,
            pg_restarts,
        },
        Some(Sub::PgOutage {
            purchases,
            students,
            down_secs,
            immediate,
        }) => Command::PgOutage {
            purchases,
            students,
            down_secs,
            immediate,
        },
        Some(Sub::Images { prebuilt }) => Command::Images {
            binaries: binaries(prebuilt),
        },
        Some(Sub::ComposeSmoke { prebuilt }) => Command::ComposeSmoke {
            binaries: binaries(prebuilt),
        },
        Some(Sub::Bench { quick, json }) => Command::Bench { quick, json },
        Some(Sub::ProtoDocs) => Command::ProtoDocs,
        Some(Sub::Fuzz { minutes, cases }) => Command::Fuzz { minutes, cases },
        Some(Sub::FreshCheck { target_tmpfs }) => {
            Command::FreshCheck(crate::fresh_check::Options { target_tmpfs })
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn p(args: &[&str]) -> Result<Command, clap::Error> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn err(args: &[&str]) -> clap::Error {
        p(args).expect_err("a usage error")
    }

    /// Usage errors exit with status 2, like the hand-written parser did.
    fn usage_error(args: &[&str]) -> ErrorKind {
        let e = err(args);
        assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        e.kind()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_parse() {
        let both = vec![PayChannel::Wechat, PayChannel::Alipay];
        let cases: [(&[&str], Command); 17] = [
            (
                &["bench"],
                Command::Bench {
                    quick: false,
                    json: false,
                },
            ),
            (
                &["bench", "--quick", "--json"],
                Command::Bench {
                    quick: true,
                    json: true,
                },
            ),
            (&[], Command::Help),
            (&["up"], Command::Up { observe: false }),
            (&["up", "--observe"], Command::Up { observe: true }),
            (&["migrate"], Command::Migrate),
            (&["proto-docs"], Command::ProtoDocs),
            (
                &["images"],
                Command::Images {
                    binaries: Binaries::Source,
                },
            ),
            (
                &["images", "--prebuilt"],
                Command::Images {
                    binaries: Binaries::Prebuilt,
                },
            ),
            (
                &["compose-smoke"],
                Command::ComposeSmoke {
                    binaries: Binaries::Source,
                },
            ),
            (
                &["compose-smoke", "--prebuilt"],
                Command::ComposeSmoke {
                    binaries: Binaries::Prebuilt,
                },
            ),
            (&["fresh-check"], Command::FreshCheck(Default::default())),
            (
                &["fresh-check", "--target-tmpfs", "12g"],
                Command::FreshCheck(crate::fresh_check::Options {
                    target_tmpfs: Some("12g".into()),
                }),
            ),
            (
                &["demo"],
                Command::Demo {
                    channels: PayChannel::ALL.to_vec(),
                },
            ),
            (
                &["demo", "--channel", "alipay"],
                Command::Demo {
                    channels: vec![PayChannel::Alipay],
                },
            ),
            (
                &["demo", "--channel=wechat", "--channel", "alipay"],
                Command::Demo { channels: both },
            ),
            (
                &["token", "student-1"],
                Command::Token {
                    user: UserId::parse("student-1").unwrap(),
                },
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(p(args).unwrap(), expected, "{args:?}");
        }
    }

    #[test]
    fn refund_takes_an_order_and_optionally_an_amount_and_a_reason() {
        assert_eq!(
            p(&["refund", "42"]).unwrap(),
            Command::Refund {
                order_id: OrderId::from(42),
                amount_fen: None,
                reason: None,
                request_id: None,
            }
        );
        assert_eq!(
            p(&[
                "refund",
                "42",
                "--amount-fen",
                "100",
                "--reason",
                "课程退款"
            ])
            .unwrap(),
            Command::Refund {
                order_id: OrderId::from(42),
                amount_fen: Some(Fen::new(100).unwrap()),
                reason: Some("课程退款".into()),
                request_id: None,
            }
        );
        for bad in [
            &["refund"][..],
            &["refund", "x"],
            &["refund", "42", "--amount-fen", "0"],
            &["refund", "42", "--amount-fen", "-5"],
            &["refund", "42", "--amount-fen", "1.5"],
        ] {
            assert_eq!(p(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn fuzz_parses_with_defaults_and_refuses_zero() {
        assert_eq!(
            p(&["fuzz"]).unwrap(),
            Command::Fuzz {
                minutes: 10,
                cases: 20_000
            }
        );
        assert_eq!(
            p(&["fuzz", "--minutes", "2", "--cases=500"]).unwrap(),
            Command::Fuzz {
                minutes: 2,
                cases: 500
            }
        );
        assert_eq!(
            usage_error(&["fuzz", "--minutes", "0"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn help_is_printed_not_an_error() {
        for args in [&["--help"][..], &["help"], &["-h"], &["dlq", "--help"]] {
            let e = err(args);
            assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{args:?}");
            assert_eq!(e.exit_code(), 0);
        }
        let text = help();
        for expected in [
            "up",
            "migrate",
            "demo",
            "token",
            "dlq",
            "chaos",
            "pg-outage",
            "images",
            "compose-smoke",
            "fresh-check",
            "PAYWIRE_PG",
            "PAYWIRE__AMQP__URL",
            "PAYWIRE__AUTH__JWT_SECRET",
        ] {
            assert!(text.contains(expected), "help lacks {expected:?}:\n{text}");
        }
    }

    #[test]
    fn reconcile_parses_a_day_and_an_optional_channel() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(
            p(&["reconcile", "--date", "2026-12-01"]).unwrap(),
            Command::Reconcile {
                date: day,
                channel: None
            }
        );
        assert_eq!(
            p(&["reconcile", "--date", "2026-12-01", "--channel", "alipay"]).unwrap(),
            Command::Reconcile {
                date: day,
                channel: Some(PayChannel::Alipay)
            }
        );
        assert_eq!(
            usage_error(&["reconcile", "--date", "2026-13-01"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            usage_error(&["reconcile"]),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn dlq_commands_parse() {
        assert_eq!(
            p(&["dlq", "list"]).unwrap(),
            Command::DlqList {
                vhost: None,
                queue: None
            }
        );
        assert_eq!(
            p(&["dlq", "list", "--vhost", "v1", "--queue=order.pay-result"]).unwrap(),
            Command::DlqList {
                vhost: Some("v1".into()),
                queue: Some("order.pay-result".into())
            }
        );
        assert_eq!(
            p(&["dlq", "replay", "order.pay-result", "--all"]).unwrap(),
            Command::DlqReplay {
                vhost: None,
                queue: "order.pay-result".into(),
                selection: Selection::All
            }
        );
        assert_eq!(
            p(&["dlq", "replay", "--vhost=v", "q", "--message-id", "42"]).unwrap(),
            Command::DlqReplay {
                vhost: Some("v".into()),
                queue: "q".into(),
                selection: Selection::MessageId("42".into())
            }
        );
    }

    #[test]
    fn bad_dlq_arguments_are_rejected() {
        for (args, kind) in [
            (
                &["dlq"][..],
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
            ),
            (&["dlq", "purge"][..], ErrorKind::InvalidSubcommand),
            (&["dlq", "list", "x"][..], ErrorKind::UnknownArgument),
            (&["dlq", "list", "--all"][..], ErrorKind::UnknownArgument),
            (&["dlq", "list", "--vhost"][..], ErrorKind::InvalidValue),
            (
                &["dlq", "replay", "--all"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["dlq", "replay", "q"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["dlq", "replay", "q", "--all", "--message-id", "1"][..],
                ErrorKind::ArgumentConflict,
            ),
            (
                &["dlq", "replay", "q", "r", "--all"][..],
                ErrorKind::UnknownArgument,
            ),
            (
                &["dlq", "replay", "q", "--force"][..],
                ErrorKind::UnknownArgument,
            ),
            (
                &["dlq", "replay", "q", "--queue", "r", "--all"][..],
                ErrorKind::UnknownArgument,
            ),
        ] {
            assert_eq!(usage_error(args), kind, "{args:?}");
        }
    }

    #[test]
    fn pg_outage_arguments_parse() {
        assert_eq!(
            p(&["pg-outage"]).unwrap(),
            Command::PgOutage {
                purchases: 600,
                students: 8,
                down_secs: 3,
                immediate: false,
            }
        );
        assert_eq!(
            p(&[
                "pg-outage",
                "--purchases",
                "50",
                "--students=2",
                "--immediate"
            ])
            .unwrap(),
            Command::PgOutage {
                purchases: 50,
                students: 2,
                down_secs: 3,
                immediate: true,
            }
        );
        assert_eq!(
            usage_error(&["pg-outage", "--students", "0"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn chaos_arguments_parse() {
        assert_eq!(
            p(&["chaos"]).unwrap(),
            Command::Chaos {
                n: CHAOS_DEFAULT_N,
                seed: None,
                pg_restarts: None,
            }
        );
        assert_eq!(
            p(&["chaos", "--n", "20", "--seed=7", "--pg-restarts", "4"]).unwrap(),
            Command::Chaos {
                n: 20,
                seed: Some(7),
                pg_restarts: Some(4),
            }
        );
        assert_eq!(
            usage_error(&["chaos", "--n", "0"]),
            ErrorKind::ValueValidation
        );
        assert!(
            err(&["chaos", "--n", "0"])
                .to_string()
                .contains("at least 1")
        );
        assert_eq!(
            usage_error(&["chaos", "--n", "many"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(usage_error(&["chaos", "--seed"]), ErrorKind::InvalidValue);
        assert_eq!(
            usage_error(&["chaos", "--fast"]),
            ErrorKind::UnknownArgument
        );
    }

    #[test]
    fn bad_arguments_are_rejected() {
        assert_eq!(usage_error(&["deploy"]), ErrorKind::InvalidSubcommand);
        assert_eq!(usage_error(&["up", "now"]), ErrorKind::UnknownArgument);
        assert_eq!(
            usage_error(&["fresh-check", "--keep"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(usage_error(&["token"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            usage_error(&["token", "bad id"]),
            ErrorKind::ValueValidation
        );
        assert!(err(&["token", "bad id"]).to_string().contains("user id"));
        assert_eq!(
            usage_error(&["token", "a", "b"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(usage_error(&["demo", "--channel"]), ErrorKind::InvalidValue);
        assert_eq!(
            usage_error(&["demo", "--channel", "paypal"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(usage_error(&["demo", "--fast"]), ErrorKind::UnknownArgument);
    }
}
