//! `cargo xtask migrate`: create the databases and apply migrations, start nothing.
//!
//! Each service binary owns its migrations (embedded at compile time), so xtask runs
//! `target/debug/<service> migrate`: every service `main.rs` handles `migrate` as argv[1]
//! by applying its migrations and exiting.

use std::time::Duration;

use anyhow::bail;

use crate::layout::SERVICES;
use crate::{procs, up};

const MIGRATE_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run() -> anyhow::Result<()> {
    procs::build_services().await?;
    up::ensure_databases().await?;
    for s in SERVICES.iter().filter(|s| s.database.is_some()) {
        println!("==> migrating {}", s.name);
        let mut running = procs::spawn(s, &["migrate"])?;
        match tokio::time::timeout(MIGRATE_TIMEOUT, running.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("{} migrate failed ({status})", s.name);
                }
            }
            Err(_) => {
                let _ = running.child.kill().await;
                bail!(
                    "{} migrate did not exit within {}s (does its main handle `migrate`?)",
                    s.name,
                    MIGRATE_TIMEOUT.as_secs()
                );
            }
        }
    }
    println!("==> all databases migrated");
    Ok(())
}
