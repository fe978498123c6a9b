use channel_sandbox::{SERVICE_NAME, Settings, build};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = paywire_platform::config::load(SERVICE_NAME)?;
    build(settings).await?.run().await
}
