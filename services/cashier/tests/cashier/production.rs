//! Production mode of the cashier: the dev sign-in, the sandbox wallet link and the
//! development JWT secret are refused; with real settings it starts and serves.

use std::time::Duration;

use cashier::{SERVICE_NAME, Settings};
use paywire_platform::production::{Environment, check};
use paywire_testkit::production::{assert_refused, run_in_production};

const STRONG: &str = "3a7f09c1d2e4b5a6978877665544332211ffeeddccbbaa00";

#[test]
fn development_defaults_are_refused_by_name() {
    let refusal = check(SERVICE_NAME, Environment::Production, &Settings::default()).unwrap_err();
    let named: Vec<&str> = refusal
        .findings
        .iter()
        .map(|f| f.setting.as_str())
        .collect();
    assert_eq!(
        named,
        ["auth.jwt_secret", "dev_login.enabled", "pages.wallet_url"]
    );
}

#[test]
fn the_binary_refuses_the_dev_sign_in() {
    assert_refused(
        env!("CARGO_BIN_EXE_cashier"),
        &[
            ("PAYWIRE__AUTH__JWT_SECRET", STRONG),
            ("PAYWIRE__PAGES__WALLET_URL", ""),
        ],
        &[
            "dev_login.enabled (PAYWIRE__DEV_LOGIN__ENABLED): is enabled",
            "1 setting is",
        ],
        &[STRONG],
    );
}

/// Real-looking settings: the binary starts and serves `/health` on the internal port the
/// environment names (it needs no database or broker, so the whole start is observable
/// here).
#[test]
fn the_binary_starts_in_production_with_real_settings() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string()
    };
    let (port, internal_port) = (free(), free());
    let binary = env!("CARGO_BIN_EXE_cashier");
    let probe = std::thread::spawn({
        let port = internal_port.clone();
        move || {
            let url = format!("http://127.0.0.1:{port}/health");
            for _ in 0..200 {
                if let Ok(resp) = http::blocking_get(&url) {
                    return resp;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        }
    });
    let run = run_in_production(
        binary,
        &[
            ("PAYWIRE__AUTH__JWT_SECRET", STRONG),
            ("PAYWIRE__DEV_LOGIN__ENABLED", "false"),
            ("PAYWIRE__PAGES__WALLET_URL", ""),
            ("PAYWIRE__HTTP__PORT", &port),
            ("PAYWIRE__HTTP__INTERNAL_PORT", &internal_port),
        ],
        Duration::from_secs(5),
    );
    let health = probe.join().unwrap();
    assert!(run.exit.is_none(), "cashier exited:\n{}", run.output);
    assert_eq!(health, Some(200), "no /health answer:\n{}", run.output);
    assert!(
        run.output.contains("production settings checked"),
        "{}",
        run.output
    );
    assert!(!run.output.contains(STRONG));
}

mod http {
    /// `GET url` → status, on a throwaway runtime (the test itself is synchronous).
    pub fn blocking_get(url: &str) -> Result<Option<u16>, ()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|_| ())?;
        rt.block_on(async {
            match ::reqwest::get(url).await {
                Ok(resp) => Ok(Some(resp.status().as_u16())),
                Err(_) => Err(()),
            }
        })
    }
}
