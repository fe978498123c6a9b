//! `cargo xtask images`: every container image, built on this machine.
//!
//! No image registry is reachable here, so nothing is pulled:
//!
//! 1. the Debian base image ([`BASE_IMAGE`]): `debootstrap --variant=minbase` into a
//!    temporary directory, then `docker import` (skipped when the image exists);
//! 2. a Rust builder image: that base, a C compiler, and the host's own Rust toolchain
//!    (skipped when an image built from the same Dockerfile and toolchain exists);
//! 3. one runtime image per service from `deploy/Dockerfile` (its builder stage compiles
//!    all five binaries once; BuildKit cache mounts keep cargo's registry and target
//!    directory between builds);
//! 4. PostgreSQL and RabbitMQ from Debian's packages on the same base.
//!
//! Every step prints its output as it goes and its duration at the end. [`Docker`] and
//! [`ensure_base_image`] are reusable by other commands that need the base image.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::layout::{self, SERVICES};

/// The locally imported Debian 12 base.
pub const BASE_IMAGE: &str = "paywire/debian:bookworm";
/// The builder made from the base and the host's toolchain; tagged with rustc's version.
pub const BUILDER_REPOSITORY: &str = "paywire/rust-builder";
pub const POSTGRES_IMAGE: &str = "paywire/postgres:15";
pub const RABBITMQ_IMAGE: &str = "paywire/rabbitmq:3.10";
/// Debian's mirror (plain HTTP; apt checks the signatures).
pub const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// Label on the builder image: a digest of its Dockerfile and the toolchain it holds.
const BUILDER_INPUTS_LABEL: &str = "paywire.builder-inputs";

/// Where the services' binaries come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binaries {
    /// Compiled in deploy/Dockerfile's builder stage (release profile): what ships.
    Source,
    /// The host's `cargo build` output (dev profile), e.g. what CI's test suite has just
    /// compiled: nothing is compiled twice. Tagged apart so it is never mistaken for a
    /// release image.
    Prebuilt,
}

impl Binaries {
    /// The image tag compose selects with `PAYWIRE_IMAGE_TAG`.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Source => "latest",
            Self::Prebuilt => "host-build",
        }
    }
}

/// `paywire/<service>:<tag>`, as compose names it.
pub fn service_image(service: &str, binaries: Binaries) -> String {
    format!("paywire/{service}:{}", binaries.tag())
}

/// The Docker client. Debian's `/usr/bin/docker` is preferred: it drives the engine's
/// BuildKit (`RUN --mount`) with `DOCKER_BUILDKIT=1`, which some other clients on
/// `PATH` cannot without buildx.
#[derive(Debug, Clone)]
pub struct Docker {
    program: PathBuf,
}

impl Docker {
    /// `$PAYWIRE_DOCKER`, else `/usr/bin/docker` if present, else `docker` on `PATH`;
    /// fails with a hint when no engine answers.
    pub fn locate() -> anyhow::Result<Self> {
        let program = std::env::var_os("PAYWIRE_DOCKER")
            .map(PathBuf::from)
            .or_else(|| {
                let debian = PathBuf::from("/usr/bin/docker");
                debian.is_file().then_some(debian)
            })
            .unwrap_or_else(|| PathBuf::from("docker"));
        let docker = Self { program };
        let answers = docker
            .command()
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !answers {
            bail!(
                "no Docker engine answers `{} info`: install one (apt-get install -y docker.io \
                 docker-compose) and start it (dockerd --bridge=none --iptables=false &)",
                docker.program.display()
            );
        }
        Ok(docker)
    }

    /// A `docker` command with BuildKit switched on.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.env("DOCKER_BUILDKIT", "1");
        cmd
    }

    pub fn image_exists(&self, image: &str) -> bool {
        self.image_label(image, "").is_some()
    }

    /// The value of `label` on `image`; `Some("")` when the image exists without it (or
    /// `label` is empty), `None` when there is no such image.
    pub fn image_label(&self, image: &str, label: &str) -> Option<String> {
        let format = if label.is_empty() {
            "{{.Id}}".to_owned()
        } else {
            format!("{{{{index .Config.Labels {label:?}}}}}")
        };
        let out = self
            .command()
            .args(["image", "inspect", "--format", &format, image])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Some(if label.is_empty() || value == "<no value>" {
            String::new()
        } else {
            value
        })
    }

    /// Image size in bytes, for the summary.
    pub fn image_size(&self, image: &str) -> Option<u64> {
        let out = self
            .command()
            .args(["image", "inspect", "--format", "{{.Size}}", image])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }
}

/// Runs `cmd` with the terminal attached (its output is the progress).
fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Built,
    /// Already there; nothing was done.
    Present,
}

/// Makes [`BASE_IMAGE`]-like `image` from Debian 12 with debootstrap unless it exists.
/// Needs root and `debootstrap` (Debian package of that name); takes about two minutes.
pub fn ensure_base_image(docker: &Docker, image: &str) -> anyhow::Result<Outcome> {
    if docker.image_exists(image) {
        return Ok(Outcome::Present);
    }
    if Command::new("debootstrap")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        bail!(
            "{image} is missing and debootstrap is not installed: apt-get install -y debootstrap"
        );
    }
    let mirror = std::env::var("PAYWIRE_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DEBIAN_MIRROR.to_owned());
    // On disk, not in a tmpfs: the tree is a few hundred megabytes.
    let root = TempDir::new(Path::new("/var/tmp"), "paywire-debootstrap")?;
    println!(
        "==> debootstrap --variant=minbase bookworm {}",
        root.path().display()
    );
    run(
        Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(root.path())
            .arg(&mirror),
        "debootstrap",
    )?;
    prepare_rootfs(root.path(), &mirror)?;
    println!("==> docker import {image}");
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(root.path())
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting tar")?;
    let tar_out = tar.stdout.take().context("tar's output")?;
    let import = docker
        .command()
        .args([
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "CMD [\"/bin/bash\"]",
            "-",
            image,
        ])
        .stdin(Stdio::from(tar_out))
        .stdout(Stdio::null())
        .status()
        .context("starting docker import")?;
    let tar_status = tar.wait().context("waiting for tar")?;
    if !tar_status.success() || !import.success() {
        bail!("importing {image} failed (tar: {tar_status}, docker import: {import})");
    }
    Ok(Outcome::Built)
}

/// What the official slim image has and a bare debootstrap lacks: updates and security
/// sources, no package cache, no apt lists.
fn prepare_rootfs(root: &Path, mirror: &str) -> anyhow::Result<()> {
    let security = if mirror == DEFAULT_DEBIAN_MIRROR {
        "http://deb.debian.org/debian-security".to_owned()
    } else {
        format!("{}-security", mirror.trim_end_matches('/'))
    };
    std::fs::write(
        root.join("etc/apt/sources.list"),
        format!(
            "deb {mirror} bookworm main\n\
             deb {mirror} bookworm-updates main\n\
             deb {security} bookworm-security main\n"
        ),
    )
    .context("writing sources.list")?;
    // Keep images small: no recommended packages, no cached .debs, no package caches
    // (/var/cache/apt/*.bin, tens of megabytes), as in the official slim image.
    std::fs::write(
        root.join("etc/apt/apt.conf.d/90paywire-container"),
        "APT::Install-Recommends \"false\";\n\
         DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb || true\"; };\n\
         Dir::Cache::pkgcache \"\";\n\
         Dir::Cache::srcpkgcache \"\";\n",
    )
    .context("writing apt settings")?;
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let dir = root.join(dir);
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(&path).with_context(|| format!("{}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// A directory removed on drop (also when a step fails half-way).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(parent: &Path, prefix: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = parent.join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The host's Rust toolchain: its sysroot and `rustc`'s version.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub sysroot: PathBuf,
    pub version: String,
}

impl Toolchain {
    pub fn host() -> anyhow::Result<Self> {
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let out = Command::new(&rustc)
            .args(["--print", "sysroot"])
            .output()
            .with_context(|| format!("running {rustc} --print sysroot"))?;
        let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let out = Command::new(&rustc)
            .arg("--version")
            .output()
            .with_context(|| format!("running {rustc} --version"))?;
        let version = parse_rustc_version(&String::from_utf8_lossy(&out.stdout))
            .context("reading rustc's version")?;
        for needed in ["bin/rustc", "bin/cargo", "lib/rustlib"] {
            if !sysroot.join(needed).exists() {
                bail!(
                    "the host toolchain at {} has no {needed}: the builder image copies a \
                     rustup-style toolchain (rustc and cargo side by side)",
                    sysroot.display()
                );
            }
        }
        Ok(Self { sysroot, version })
    }
}

/// `rustc 1.95.0 (59807616e 2026-04-14)` → `1.95.0`.
pub fn parse_rustc_version(line: &str) -> Option<String> {
    let version = line.strip_prefix("rustc ")?.split_whitespace().next()?;
    version
        .split(['.', '-'])
        .take(3)
        .all(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty())
        .then(|| version.to_owned())
}

/// A digest over what the builder image is made of: its Dockerfile, the base image id and
/// the toolchain's version.
fn builder_inputs(dockerfile: &str, base_id: &str, toolchain: &Toolchain) -> String {
    let mut h = Sha256::new();
    for part in [dockerfile, base_id, &toolchain.version] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn base_image_id(docker: &Docker, image: &str) -> anyhow::Result<String> {
    let out = docker
        .command()
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .context("docker image inspect")?;
    if !out.status.success() {
        bail!("no image {image}");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the Rust builder image from `base` and the host toolchain, unless one made from
/// the same inputs exists. Returns its tag.
pub fn ensure_builder_image(
    docker: &Docker,
    base: &str,
    toolchain: &Toolchain,
) -> anyhow::Result<(String, Outcome)> {
    let tag = format!("{BUILDER_REPOSITORY}:{}", toolchain.version);
    let dockerfile = layout::repo_root().join("deploy/images/rust-builder/Dockerfile");
    let text = std::fs::read_to_string(&dockerfile)
        .with_context(|| format!("reading {}", dockerfile.display()))?;
    let inputs = builder_inputs(&text, &base_image_id(docker, base)?, toolchain);
    if docker.image_label(&tag, BUILDER_INPUTS_LABEL).as_deref() == Some(inputs.as_str()) {
        return Ok((tag, Outcome::Present));
    }
    run(
        docker
            .command()
            .args(["build", "--network", "host", "--progress", "plain", "-f"])
            .arg(&dockerfile)
            .args(["--build-arg", &format!("BASE_IMAGE={base}")])
            .args(["--label", &format!("{BUILDER_INPUTS_LABEL}={inputs}")])
            .args(["-t", &tag])
            // The context is the toolchain; only its bin/ and lib/ are copied.
            .arg(&toolchain.sysroot),
        "building the Rust builder image",
    )?;
    Ok((tag, Outcome::Built))
}

/// Which base images `deploy/Dockerfile` and the infrastructure images start from.
#[derive(Debug, Clone)]
pub struct Bases {
    pub builder: String,
    pub runtime: String,
}

/// One service's runtime image. From source, the first call compiles every binary and
/// the others find the builder stage in BuildKit's cache.
pub fn build_service_image(
    docker: &Docker,
    bases: &Bases,
    binaries: Binaries,
    service: &str,
) -> anyhow::Result<()> {
    let root = layout::repo_root();
    let image = service_image(service, binaries);
    let mut cmd = docker.command();
    cmd.args(["build", "--network", "host", "--progress", "plain"])
        .arg("-f")
        .arg(root.join("deploy/Dockerfile"))
        .args(["--build-arg", &format!("BUILDER_IMAGE={}", bases.builder)])
        .args(["--build-arg", &format!("RUNTIME_IMAGE={}", bases.runtime)])
        .args(["--build-arg", &format!("SERVICE={service}")])
        .args(["-t", &image]);
    if binaries == Binaries::Prebuilt {
        cmd.args(["--build-arg", "BINARIES=prebuilt"]).args([
            "--label",
            "paywire.binaries=host dev-profile build (not a release)",
        ]);
    }
    // The machine's CA bundle, for cargo's TLS to crates.io from inside the builder.
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if ca.is_file() {
        cmd.arg("--secret")
            .arg(format!("id=cacert,src={}", ca.display()));
    }
    cmd.arg(&root);
    run(&mut cmd, &format!("building {image}"))
}

/// `deploy/.prebuilt/`: where deploy/Dockerfile's `prebuilt` stage takes binaries from.
pub fn prebuilt_dir() -> PathBuf {
    layout::repo_root().join("deploy/.prebuilt")
}

/// Builds the services with the host's cargo and copies the binaries to [`prebuilt_dir`].
///
/// The build is the test suite's own (`cargo test --workspace --no-run`, whose integration
/// tests put every service binary in target/debug/), so right after `cargo test --workspace`
/// it is a no-op. A narrower `cargo build -p <service>…` unifies dependency features without
/// the dev-dependencies and recompiled a dozen crates (233 s in a cold CI run here).
pub fn stage_prebuilt_binaries() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--workspace", "--no-run"])
        .current_dir(layout::repo_root());
    run(&mut cmd, "cargo test --workspace --no-run (host binaries)")?;
    let dir = prebuilt_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Debug info is most of a dev binary (about 200 MB of build context for five) and no
    // use inside a container; `--strip-debug` keeps the symbol table, so backtraces still
    // name functions. Without binutils the binaries are copied as they are.
    let objcopy = Command::new("objcopy")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    for s in SERVICES {
        let from = layout::binary(s.name);
        let to = dir.join(s.name);
        if objcopy {
            run(
                Command::new("objcopy")
                    .arg("--strip-debug")
                    .arg(&from)
                    .arg(&to),
                &format!("stripping debug info from {}", from.display()),
            )?;
        } else {
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(())
}

/// What image builds need free on the Docker engine's disk: the PostgreSQL and RabbitMQ
/// images, five service images and the build cache come to about 2 GiB; the rest is margin.
pub const MIN_FREE_DISK: u64 = 4 << 30;

/// Fails early, with what to do about it, when the engine's data directory is short of
/// [`MIN_FREE_DISK`]: a full disk otherwise surfaces minutes later as an obscure
/// "copy file range failed: no space left on device" in the middle of a build.
pub fn ensure_free_disk(docker: &Docker) -> anyhow::Result<()> {
    let out = docker
        .command()
        .args(["info", "--format", "{{.DockerRootDir}}"])
        .output()
        .context("asking the Docker engine for its data directory")?;
    let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let root = if root.is_empty() {
        "/var/lib/docker".to_owned()
    } else {
        root
    };
    let df = Command::new("df")
        .args(["-P", "-k", &root])
        .output()
        .with_context(|| format!("df {root}"))?;
    let free = parse_df_available(&String::from_utf8_lossy(&df.stdout))
        .with_context(|| format!("reading df's answer for {root}"))?;
    if free < MIN_FREE_DISK {
        bail!(
            "only {:.1} GiB free under {root} (Docker's data directory); building the images \
             needs at least {} GiB. Free some: `docker system prune` (unused images and build \
             cache), old cargo target directories",
            free as f64 / f64::from(1u32 << 30),
            MIN_FREE_DISK >> 30
        );
    }
    Ok(())
}

/// Bytes available, from `df -P -k PATH`'s second line (fourth column, 1024-byte blocks).
fn parse_df_available(df: &str) -> Option<u64> {
    let line = df.lines().nth(1)?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// Builds `deploy/images/<dir>` on `base` as `tag`.
pub fn build_infra_image(docker: &Docker, base: &str, dir: &str, tag: &str) -> anyhow::Result<()> {
    let context = layout::repo_root().join("deploy/images").join(dir);
    run(
        docker
            .command()
            .args(["build", "--network", "host", "--progress", "plain"])
            .args(["--build-arg", &format!("BASE_IMAGE={base}")])
            .args(["-t", tag])
            .arg(&context),
        &format!("building {tag}"),
    )
}

/// One line of the summary.
#[derive(Debug, Clone)]
pub struct StepTime {
    pub step: String,
    pub image: String,
    pub outcome: Outcome,
    pub took: Duration,
}

/// Timed steps, printed as they finish and as a table at the end.
#[derive(Debug, Default)]
pub struct Steps(pub Vec<StepTime>);

impl Steps {
    pub fn time<T>(
        &mut self,
        step: &str,
        image: &str,
        f: impl FnOnce() -> anyhow::Result<(T, Outcome)>,
    ) -> anyhow::Result<T> {
        println!("\n==> [{}] {step}: {image}", self.0.len() + 1);
        let started = Instant::now();
        let (value, outcome) = f().with_context(|| format!("{step} ({image})"))?;
        let took = started.elapsed();
        println!(
            "==> {step}: {} in {}",
            match outcome {
                Outcome::Built => "built",
                Outcome::Present => "already present",
            },
            seconds(took)
        );
        self.0.push(StepTime {
            step: step.to_owned(),
            image: image.to_owned(),
            outcome,
            took,
        });
        Ok(value)
    }

    pub fn table(&self, docker: &Docker) -> String {
        let mut out = String::from("| step | image | size | time |\n|---|---|---:|---:|\n");
        let mut total = Duration::ZERO;
        for s in &self.0 {
            total += s.took;
            let size = docker
                .image_size(&s.image)
                .map(|b| format!("{} MB", b / 1_000_000))
                .unwrap_or_default();
            let note = if s.outcome == Outcome::Present {
                " (present)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {} | {} | {size} | {}{note} |",
                s.step,
                s.image,
                seconds(s.took)
            );
        }
        let _ = writeln!(out, "| total | | | {} |", seconds(total));
        out
    }
}

pub fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `cargo xtask images [--prebuilt]`: everything compose runs, built here.
pub fn run_all(binaries: Binaries) -> anyhow::Result<()> {
    let docker = Docker::locate()?;
    let mut steps = Steps::default();
    build_all(&docker, &mut steps, binaries)?;
    println!("\n==> images built\n\n{}", steps.table(&docker));
    Ok(())
}

/// The steps of `cargo xtask images`, timed into `steps`.
pub fn build_all(docker: &Docker, steps: &mut Steps, binaries: Binaries) -> anyhow::Result<()> {
    ensure_free_disk(docker)?;
    steps.time("Debian base (debootstrap + import)", BASE_IMAGE, || {
        Ok(((), ensure_base_image(docker, BASE_IMAGE)?))
    })?;
    let builder = match binaries {
        Binaries::Source => {
            let toolchain = Toolchain::host()?;
            let builder_tag = format!("{BUILDER_REPOSITORY}:{}", toolchain.version);
            steps.time("Rust builder (host toolchain)", &builder_tag, || {
                ensure_builder_image(docker, BASE_IMAGE, &toolchain)
            })?
        }
        Binaries::Prebuilt => {
            steps.time(
                "host binaries (the test suite's build, dev profile)",
                "deploy/.prebuilt",
                || Ok((stage_prebuilt_binaries()?, Outcome::Built)),
            )?;
            // Unused: the Dockerfile's builder stage is skipped.
            "scratch".to_owned()
        }
    };
    let bases = Bases {
        builder,
        runtime: BASE_IMAGE.to_owned(),
    };
    for (i, s) in SERVICES.iter().enumerate() {
        let step = if i == 0 && binaries == Binaries::Source {
            "service image (compiles all five binaries)"
        } else {
            "service image"
        };
        steps.time(step, &service_image(s.name, binaries), || {
            Ok((
                build_service_image(docker, &bases, binaries, s.name)?,
                Outcome::Built,
            ))
        })?;
    }
    steps.time("PostgreSQL (Debian packages)", POSTGRES_IMAGE, || {
        Ok((
            build_infra_image(docker, BASE_IMAGE, "postgres", POSTGRES_IMAGE)?,
            Outcome::Built,
        ))
    })?;
    steps.time("RabbitMQ (Debian packages)", RABBITMQ_IMAGE, || {
        Ok((
            build_infra_image(docker, BASE_IMAGE, "rabbitmq", RABBITMQ_IMAGE)?,
            Outcome::Built,
        ))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_available_space_is_read_in_bytes() {
        let df = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                  /dev/vda        263174212  12582912  83886080      13% /\n";
        assert_eq!(parse_df_available(df), Some(83_886_080 * 1024));
        assert_eq!(
            parse_df_available("Filesystem 1024-blocks Used Available\n"),
            None
        );
        assert_eq!(parse_df_available("header\n/dev/vda 1 2 lots 4% /\n"), None);
    }

    #[test]
    fn rustc_versions_parse() {
        assert_eq!(
            parse_rustc_version("rustc 1.95.0 (59807616e 2026-04-14)\n").as_deref(),
            Some("1.95.0")
        );
        assert_eq!(
            parse_rustc_version("rustc 1.96.0-nightly (abc 2026-05-01)").as_deref(),
            Some("1.96.0-nightly")
        );
        assert_eq!(parse_rustc_version("cargo 1.95.0"), None);
        assert_eq!(parse_rustc_version("rustc x.y"), None);
    }

    #[test]
    fn builder_inputs_change_with_each_input() {
        let tc = Toolchain {
            sysroot: PathBuf::from("/x"),
            version: "1.95.0".into(),
        };
        let a = builder_inputs("FROM x", "sha256:1", &tc);
        assert_eq!(a.len(), 64);
        assert_eq!(a, builder_inputs("FROM x", "sha256:1", &tc));
        assert_ne!(a, builder_inputs("FROM y", "sha256:1", &tc));
        assert_ne!(a, builder_inputs("FROM x", "sha256:2", &tc));
        let newer = Toolchain {
            version: "1.96.0".into(),
            ..tc
        };
        assert_ne!(a, builder_inputs("FROM x", "sha256:1", &newer));
    }

    #[test]
    fn debootstrapped_trees_get_slim_image_settings() {
        let root = TempDir::new(&std::env::temp_dir(), "paywire-rootfs-test").unwrap();
        for dir in [
            "etc/apt/apt.conf.d",
            "var/cache/apt/archives/partial",
            "var/lib/apt/lists",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("var/cache/apt/archives/x.deb"), "deb").unwrap();
        std::fs::write(root.path().join("var/lib/apt/lists/y_Packages"), "p").unwrap();
        prepare_rootfs(root.path(), DEFAULT_DEBIAN_MIRROR).unwrap();
        let sources = std::fs::read_to_string(root.path().join("etc/apt/sources.list")).unwrap();
        assert!(sources.contains("http://deb.debian.org/debian bookworm-updates main"));
        assert!(sources.contains("http://deb.debian.org/debian-security bookworm-security main"));
        assert!(!root.path().join("var/cache/apt/archives/x.deb").exists());
        assert!(!root.path().join("var/lib/apt/lists/y_Packages").exists());
        assert!(root.path().join("var/cache/apt/archives/partial").is_dir());
        let kept = root.path().to_path_buf();
        drop(root);
        assert!(!kept.exists(), "the temporary tree is removed");
    }
}
