//! `paywire-bench [--quick] [--json] [--out DIR] --services DIR`: what `cargo xtask bench`
//! runs (built in release, like the services it measures). Prints progress to stderr, the
//! table (or with `--json` the JSON) to stdout, and writes `bench.json`, `bench.md` and
//! `bench.svg` into `--out`.

// A command-line tool: its output is stdout.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::Context;
use paywire_bench::BenchConfig;
use paywire_chaos::procs::Launcher;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let mut json = false;
    let mut out: Option<PathBuf> = None;
    let mut services: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json = true,
            "--out" => out = Some(args.next().context("--out DIR")?.into()),
            "--services" => services = Some(args.next().context("--services DIR")?.into()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let services = services.context("--services DIR (where the service binaries are)")?;
    let root = paywire_testkit::repo_root();
    let launcher = Launcher::Binaries(services);
    let config = if quick {
        BenchConfig::quick(launcher, root)
    } else {
        BenchConfig::full(launcher, root)
    };
    let report = paywire_bench::run(config).await?;
    let as_json = serde_json::to_string_pretty(&report)?;
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("bench.json"), &as_json)?;
        std::fs::write(dir.join("bench.md"), report.table())?;
        std::fs::write(dir.join("bench.svg"), report.svg())?;
        eprintln!("bench: wrote {}/bench.{{json,md,svg}}", dir.display());
    }
    if json {
        println!("{as_json}");
    } else {
        println!("{}", report.table());
    }
    Ok(())
}
