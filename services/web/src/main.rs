use web::{SERVICE_NAME, Settings, build};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = paywire_platform::config::load(SERVICE_NAME)?;
    paywire_platform::telemetry::init(SERVICE_NAME, &settings.telemetry);
    // PAYWIRE__ENVIRONMENT=production: refuse development secrets, test keys, the sandbox.
    paywire_platform::production::enforce(SERVICE_NAME, &settings)?;
    build(settings).await?.run().await
}
