//! Hand-rolled argument parsing: four subcommands do not need a framework.

use paywire_domain::{PayChannel, UserId};

pub const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  up                       create databases, declare broker topology, start all four
                           services and print their URLs; Ctrl-C stops them all
  migrate                  create databases and apply every service's migrations, then exit
  demo [--channel wechat]  buy a paid course through the HTTP API of a running platform
  token <user-id>          print a dev JWT (24 h) for <user-id>

environment:
  PAYWIRE_PG                 PostgreSQL server URL (default postgres://postgres@127.0.0.1:5432)
  PAYWIRE__AMQP__URL         RabbitMQ URL (default amqp://guest:guest@127.0.0.1:5672/%2f)
  PAYWIRE__AUTH__JWT_SECRET  JWT signing key (default: the development secret)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Up,
    Migrate,
    Demo { channel: PayChannel },
    Token { user: UserId },
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().map(String::as_str);
    let command = match it.next() {
        None | Some("help" | "-h" | "--help") => Command::Help,
        Some("up") => Command::Up,
        Some("migrate") => Command::Migrate,
        Some("demo") => {
            let mut channel = PayChannel::Wechat;
            while let Some(arg) = it.next() {
                let value = match arg {
                    "--channel" => it.next().ok_or("--channel needs a value")?,
                    other => other
                        .strip_prefix("--channel=")
                        .ok_or_else(|| format!("unexpected argument {other:?}"))?,
                };
                channel = value
                    .parse()
                    .map_err(|e| format!("--channel {value:?}: {e}"))?;
            }
            return Ok(Command::Demo { channel });
        }
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
                channel: PayChannel::Wechat
            })
        );
        assert_eq!(
            p(&["demo", "--channel", "alipay"]),
            Ok(Command::Demo {
                channel: PayChannel::Alipay
            })
        );
        assert_eq!(
            p(&["demo", "--channel=wechat"]),
            Ok(Command::Demo {
                channel: PayChannel::Wechat
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
