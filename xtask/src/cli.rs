//! Hand-rolled argument parsing: a handful of subcommands do not need a framework.

use paywire_domain::{PayChannel, UserId};

use crate::dlq::Selection;

pub const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  up                       create databases, declare broker topology, start all five
                           services and print their URLs; Ctrl-C stops them all
  migrate                  create databases and apply every service's migrations, then exit
  demo [--channel c]...    buy a paid course with each channel (wechat, alipay; default
                           both) through the HTTP API of a running platform
  token <user-id>          print a dev JWT (24 h) for <user-id>
  dlq list [--vhost v] [--queue q]
                           show the messages parked in every <queue>.dlq (or one)
  dlq replay <queue> [--vhost v] (--message-id id | --all)
                           move parked messages from <queue>.dlq back to <queue>
  chaos [--n 500] [--seed s]
                           buy N courses with two instances per service while killing
                           services and restarting RabbitMQ, then check the invariants

environment:
  PAYWIRE_PG                 PostgreSQL server URL (default postgres://postgres@127.0.0.1:5432)
  PAYWIRE__AMQP__URL         RabbitMQ URL (default amqp://guest:guest@127.0.0.1:5672/%2f)
  PAYWIRE__AUTH__JWT_SECRET  JWT signing key (default: the development secret)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Up,
    Migrate,
    Demo {
        /// Each channel buys one course, in order; default: every channel.
        channels: Vec<PayChannel>,
    },
    Token {
        user: UserId,
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
    },
}

/// Default size of `cargo xtask chaos`.
pub const CHAOS_DEFAULT_N: usize = 500;

/// `--name value` or `--name=value`; `None` when `arg` is another option.
fn option_value<'a>(
    arg: &'a str,
    name: &str,
    it: &mut impl Iterator<Item = &'a str>,
) -> Result<Option<&'a str>, String> {
    if arg == name {
        return it
            .next()
            .map(Some)
            .ok_or_else(|| format!("{name} needs a value"));
    }
    Ok(arg
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('=')))
}

fn parse_dlq<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Command, String> {
    let sub = it.next().ok_or("dlq needs list or replay")?;
    let mut vhost = None;
    let mut queue = None;
    let mut message_id = None;
    let mut all = false;
    let mut positional = Vec::new();
    while let Some(arg) = it.next() {
        if let Some(v) = option_value(arg, "--vhost", &mut it)? {
            vhost = Some(v.to_owned());
        } else if let Some(v) = option_value(arg, "--queue", &mut it)? {
            queue = Some(v.to_owned());
        } else if let Some(v) = option_value(arg, "--message-id", &mut it)? {
            message_id = Some(v.to_owned());
        } else if arg == "--all" {
            all = true;
        } else if arg.starts_with("--") {
            return Err(format!("unexpected argument {arg:?}"));
        } else {
            positional.push(arg.to_owned());
        }
    }
    match sub {
        "list" => {
            if let Some(extra) = positional.first() {
                return Err(format!("unexpected argument {extra:?}"));
            }
            if message_id.is_some() || all {
                return Err("dlq list takes only --vhost and --queue".into());
            }
            Ok(Command::DlqList { vhost, queue })
        }
        "replay" => {
            if queue.is_some() {
                return Err("dlq replay takes the queue as its argument".into());
            }
            let mut positional = positional.into_iter();
            let queue = positional.next().ok_or("dlq replay needs a <queue>")?;
            if let Some(extra) = positional.next() {
                return Err(format!("unexpected argument {extra:?}"));
            }
            let selection = match (message_id, all) {
                (Some(id), false) => Selection::MessageId(id),
                (None, true) => Selection::All,
                _ => return Err("dlq replay needs exactly one of --message-id or --all".into()),
            };
            Ok(Command::DlqReplay {
                vhost,
                queue,
                selection,
            })
        }
        other => Err(format!("unknown dlq command {other:?}")),
    }
}

fn parse_chaos<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Command, String> {
    let mut n = CHAOS_DEFAULT_N;
    let mut seed = None;
    while let Some(arg) = it.next() {
        if let Some(v) = option_value(arg, "--n", &mut it)? {
            n = v.parse().map_err(|e| format!("--n {v:?}: {e}"))?;
            if n == 0 {
                return Err("--n must be at least 1".into());
            }
        } else if let Some(v) = option_value(arg, "--seed", &mut it)? {
            seed = Some(v.parse().map_err(|e| format!("--seed {v:?}: {e}"))?);
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    Ok(Command::Chaos { n, seed })
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().map(String::as_str);
    let command = match it.next() {
        None | Some("help" | "-h" | "--help") => Command::Help,
        Some("up") => Command::Up,
        Some("migrate") => Command::Migrate,
        Some("demo") => {
            let mut channels = Vec::new();
            while let Some(arg) = it.next() {
                let value = match arg {
                    "--channel" => it.next().ok_or("--channel needs a value")?,
                    other => other
                        .strip_prefix("--channel=")
                        .ok_or_else(|| format!("unexpected argument {other:?}"))?,
                };
                channels.push(
                    value
                        .parse()
                        .map_err(|e| format!("--channel {value:?}: {e}"))?,
                );
            }
            if channels.is_empty() {
                channels = PayChannel::ALL.to_vec();
            }
            return Ok(Command::Demo { channels });
        }
        Some("dlq") => return parse_dlq(it),
        Some("chaos") => return parse_chaos(it),
        Some("token") => {
            let raw = it.next().ok_or("token needs a <user-id>")?;
            let user = UserId::parse(raw).map_err(|e| format!("user id {raw:?}: {e}"))?;
            Command::Token { user }
        }
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    match it.next() {
        Some(extra) => Err(format!("unexpected argument {extra:?}")),
        None => Ok(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn subcommands_parse() {
        assert_eq!(p(&[]), Ok(Command::Help));
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&["up"]), Ok(Command::Up));
        assert_eq!(p(&["migrate"]), Ok(Command::Migrate));
        assert_eq!(
            p(&["demo"]),
            Ok(Command::Demo {
                channels: vec![PayChannel::Wechat, PayChannel::Alipay]
            })
        );
        assert_eq!(
            p(&["demo", "--channel", "alipay"]),
            Ok(Command::Demo {
                channels: vec![PayChannel::Alipay]
            })
        );
        assert_eq!(
            p(&["demo", "--channel=wechat"]),
            Ok(Command::Demo {
                channels: vec![PayChannel::Wechat]
            })
        );
        assert_eq!(
            p(&["token", "student-1"]),
            Ok(Command::Token {
                user: UserId::parse("student-1").unwrap()
            })
        );
    }

    #[test]
    fn dlq_commands_parse() {
        assert_eq!(
            p(&["dlq", "list"]),
            Ok(Command::DlqList {
                vhost: None,
                queue: None
            })
        );
        assert_eq!(
            p(&["dlq", "list", "--vhost", "v1", "--queue=order.pay-result"]),
            Ok(Command::DlqList {
                vhost: Some("v1".into()),
                queue: Some("order.pay-result".into())
            })
        );
        assert_eq!(
            p(&["dlq", "replay", "order.pay-result", "--all"]),
            Ok(Command::DlqReplay {
                vhost: None,
                queue: "order.pay-result".into(),
                selection: Selection::All
            })
        );
        assert_eq!(
            p(&["dlq", "replay", "--vhost=v", "q", "--message-id", "42"]),
            Ok(Command::DlqReplay {
                vhost: Some("v".into()),
                queue: "q".into(),
                selection: Selection::MessageId("42".into())
            })
        );
    }

    #[test]
    fn bad_dlq_arguments_are_rejected() {
        assert!(p(&["dlq"]).unwrap_err().contains("list or replay"));
        assert!(p(&["dlq", "purge"]).unwrap_err().contains("unknown dlq"));
        assert!(p(&["dlq", "list", "x"]).unwrap_err().contains("unexpected"));
        assert!(p(&["dlq", "list", "--all"]).is_err());
        assert!(
            p(&["dlq", "list", "--vhost"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            p(&["dlq", "replay", "--all"])
                .unwrap_err()
                .contains("<queue>")
        );
        assert!(
            p(&["dlq", "replay", "q"])
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(
            p(&["dlq", "replay", "q", "--all", "--message-id", "1"])
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(
            p(&["dlq", "replay", "q", "r", "--all"])
                .unwrap_err()
                .contains("unexpected")
        );
        assert!(
            p(&["dlq", "replay", "q", "--force"])
                .unwrap_err()
                .contains("unexpected")
        );
    }

    #[test]
    fn chaos_arguments_parse() {
        assert_eq!(
            p(&["chaos"]),
            Ok(Command::Chaos {
                n: CHAOS_DEFAULT_N,
                seed: None
            })
        );
        assert_eq!(
            p(&["chaos", "--n", "20", "--seed=7"]),
            Ok(Command::Chaos {
                n: 20,
                seed: Some(7)
            })
        );
        assert!(p(&["chaos", "--n", "0"]).is_err());
        assert!(p(&["chaos", "--n", "many"]).is_err());
        assert!(
            p(&["chaos", "--seed"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(p(&["chaos", "--fast"]).unwrap_err().contains("unexpected"));
    }

    #[test]
    fn bad_arguments_are_rejected() {
        assert!(p(&["deploy"]).unwrap_err().contains("unknown command"));
        assert!(p(&["up", "now"]).unwrap_err().contains("unexpected"));
        assert!(p(&["token"]).unwrap_err().contains("<user-id>"));
        assert!(p(&["token", "bad id"]).unwrap_err().contains("user id"));
        assert!(p(&["token", "a", "b"]).unwrap_err().contains("unexpected"));
        assert!(
            p(&["demo", "--channel"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(p(&["demo", "--channel", "paypal"]).is_err());
        assert!(p(&["demo", "--fast"]).unwrap_err().contains("unexpected"));
    }
}
