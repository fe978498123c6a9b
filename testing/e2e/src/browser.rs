//! Headless Chromium driven from Rust over WebDriver: Debian's `chromium` and
//! `chromium-driver` packages and the `fantoccini` client, nothing from npm.
//!
//! Why WebDriver and not Playwright: `playwright-core` 1.62 and later declare
//! `engines.node >= 20` and refuse Debian 12's Node.js 18; pinning 1.61 would tie the
//! tests to a Node.js past its end of life and to a driver tested only against the
//! Chromium of its own release, while Debian's Chromium moves on with every security
//! update. `chromedriver` is built from the same Debian source package as `chromium`, so
//! the two always match, and the browser tests need no Node.js at all.
//!
//! Every browser gets a fresh profile (`--user-data-dir`, own cookies and localStorage)
//! and the flags this machine needs: its network is closed, so Chromium's background
//! services (sync, component updates, QUIC probes) must stay off.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use paywire_testkit::TempDir;
use serde_json::{Value, json};

/// Debian's Chromium (package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver (package `chromium-driver`), built from the same source.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// What installs both.
pub const INSTALL_HINT: &str = "apt-get install -y chromium chromium-driver";

/// Tall enough that every cashier page fits: screenshots are of the viewport.
const WINDOW: (u32, u32) = (1100, 1200);
/// How long one step (an element appearing, a navigation) may take: a pay result
/// travels relay → broker → two consumers before the page shows it.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// `target/browser-artifacts` (under `$CARGO_TARGET_DIR` when it is absolute).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("browser-artifacts")
}

/// Fails with the install command when Chromium or its driver is missing.
pub fn require_tools(chromium: &Path, chromedriver: &Path) -> anyhow::Result<()> {
    for (tool, what) in [(chromium, "Chromium"), (chromedriver, "ChromeDriver")] {
        ensure!(
            tool.is_file(),
            "{} is missing: the browser tests drive headless {what} from Debian; install \
             both with: {INSTALL_HINT}",
            tool.display()
        );
    }
    Ok(())
}

/// The `[data-testid="…"]` selector.
pub fn test_id(id: &str) -> String {
    format!(r#"[data-testid="{id}"]"#)
}

/// Polls `check` until it yields `Some`, failing after `timeout` with `what` and the last
/// error seen (elements go stale and pages navigate while we look: that is "not yet").
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("{what}: not within {timeout:?} (last error: {e:#})"),
                None => bail!("{what}: not within {timeout:?}"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One `chromedriver` process on a free port, killed on drop.
#[derive(Debug)]
pub struct Chromedriver {
    url: String,
    chromium: PathBuf,
    _child: tokio::process::Child,
}

impl Chromedriver {
    /// Starts Debian's ChromeDriver and waits until it is ready.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Path::new(CHROMIUM), Path::new(CHROMEDRIVER)).await
    }

    pub async fn start_with(chromium: &Path, chromedriver: &Path) -> anyhow::Result<Self> {
        require_tools(chromium, chromedriver)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let status = format!("{url}/status");
        until("chromedriver ready", STEP_TIMEOUT, || async {
            let body: Value = http.get(&status).send().await?.json().await?;
            Ok((body["value"]["ready"] == json!(true)).then_some(()))
        })
        .await?;
        Ok(Self {
            url,
            chromium: chromium.to_owned(),
            _child: child,
        })
    }

    /// A new headless Chromium with a fresh profile; its screenshots go to
    /// `<artifacts>/<scenario>/<step>.png`.
    pub async fn browser(&self, scenario: &str) -> anyhow::Result<Browser> {
        let profile = TempDir::new("paywire-chromium")?;
        let shots = artifacts_dir().join(scenario);
        // Stale pictures of an earlier run must not pass for this run's.
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).with_context(|| format!("creating {}", shots.display()))?;
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            // Containers give /dev/shm 64 MiB; Chromium's renderers crash on less.
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            format!("--user-data-dir={}", profile.path.display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": args,
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal");
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .context("opening a WebDriver session in headless Chromium")?;
        Ok(Browser {
            client,
            shots,
            _profile: profile,
        })
    }
}

/// One headless Chromium (one WebDriver session) with its own profile.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    shots: PathBuf,
    _profile: TempDir,
}

impl Browser {
    /// Runs `scenario`, then quits Chromium whether it passed or not; a failure leaves a
    /// `failed.png` of the page it stopped on.
    pub async fn run<F>(self, scenario: F) -> anyhow::Result<()>
    where
        F: AsyncFnOnce(&Browser) -> anyhow::Result<()>,
    {
        let result = scenario(&self).await;
        if result.is_err() {
            let _ = self.shot("failed").await;
        }
        let closed = self.client.clone().close().await;
        result?;
        closed.context("closing the browser")
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    pub async fn url(&self) -> anyhow::Result<url::Url> {
        Ok(self.client.current_url().await?)
    }

    /// Waits until the current URL satisfies `accept`.
    pub async fn wait_url(
        &self,
        what: &str,
        accept: impl Fn(&url::Url) -> bool,
    ) -> anyhow::Result<url::Url> {
        until(&format!("URL {what}"), STEP_TIMEOUT, || async {
            let url = self.url().await?;
            Ok(accept(&url).then_some(url))
        })
        .await
    }

    /// The first element matching `css` that is displayed, waiting up to `timeout`.
    pub async fn visible_within(&self, css: &str, timeout: Duration) -> anyhow::Result<Element> {
        until(&format!("{css} visible"), timeout, || async {
            for el in self.client.find_all(Locator::Css(css)).await? {
                if el.is_displayed().await? {
                    return Ok(Some(el));
                }
            }
            Ok(None)
        })
        .await
    }

    /// The first element matching `css`, displayed or not (a value read from a collapsed
    /// `<details>`, say), waiting one step's time for it to exist.
    pub async fn present(&self, css: &str) -> anyhow::Result<Element> {
        until(&format!("{css} present"), STEP_TIMEOUT, || async {
            Ok(self
                .client
                .find_all(Locator::Css(css))
                .await?
                .into_iter()
                .next())
        })
        .await
    }

    /// [`Self::visible_within`] one step's time.
    pub async fn visible(&self, css: &str) -> anyhow::Result<Element> {
        self.visible_within(css, STEP_TIMEOUT).await
    }

    /// `[data-testid=id]`, once displayed.
    pub async fn by_id(&self, id: &str) -> anyhow::Result<Element> {
        self.visible(&test_id(id)).await
    }

    /// Whether no element matching `css` is displayed (none at all counts as hidden).
    pub async fn is_hidden(&self, css: &str) -> anyhow::Result<bool> {
        for el in self.client.find_all(Locator::Css(css)).await? {
            if el.is_displayed().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Waits until `script` (a function body, `arguments` as given) returns `true`.
    pub async fn wait_script(
        &self,
        what: &str,
        script: &str,
        args: Vec<Value>,
    ) -> anyhow::Result<()> {
        until(what, STEP_TIMEOUT, || async {
            let v = self.client.execute(script, args.clone()).await?;
            Ok((v == json!(true)).then_some(()))
        })
        .await
    }

    /// Clears the field and types `text` into it.
    pub async fn fill(&self, id: &str, text: &str) -> anyhow::Result<()> {
        let field = self.by_id(id).await?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    /// Clicks `[data-testid=id]` once it is displayed.
    pub async fn click(&self, id: &str) -> anyhow::Result<()> {
        self.by_id(id).await?.click().await?;
        Ok(())
    }

    /// Saves a screenshot of the current page as `<step>.png`.
    pub async fn shot(&self, step: &str) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{step}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Opens `url` in a new tab and makes it current; the previous tab's handle is
    /// returned to come back with [`Self::back_to`].
    pub async fn open_tab(&self, url: &str) -> anyhow::Result<fantoccini::wd::WindowHandle> {
        let previous = self.client.window().await?;
        let tab = self.client.new_window(true).await?;
        self.client.switch_to_window(tab.handle).await?;
        self.goto(url).await?;
        Ok(previous)
    }

    /// Closes the current tab and returns to `previous`.
    pub async fn back_to(&self, previous: fantoccini::wd::WindowHandle) -> anyhow::Result<()> {
        self.client.close_window().await?;
        self.client.switch_to_window(previous).await?;
        Ok(())
    }
}

/// The DOM `textContent` of an element (what the page wrote, hidden or not).
pub async fn text(el: &Element) -> anyhow::Result<String> {
    Ok(el.prop("textContent").await?.unwrap_or_default())
}

/// An attribute's value; an error names it when it is missing.
pub async fn attr(el: &Element, name: &str) -> anyhow::Result<String> {
    el.attr(name)
        .await?
        .with_context(|| format!("attribute {name} missing"))
}
