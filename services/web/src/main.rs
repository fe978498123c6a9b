use web::{SERVICE_NAME, Settings, build};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = paywire_platform::config::load(SERVICE_NAME)?;
    paywire_platform::telemetry::init(SERVICE_NAME, &settings.telemetry);
    build(settings).await?.run().await
}
