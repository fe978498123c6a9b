use payment_gateway::{MIGRATIONS, SERVICE_NAME, Settings, build};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = paywire_platform::config::load(SERVICE_NAME)?;
    paywire_platform::telemetry::init(SERVICE_NAME, &settings.telemetry);
    // PAYWIRE__ENVIRONMENT=production: refuse development secrets, test keys, the sandbox.
    paywire_platform::production::enforce(SERVICE_NAME, &settings)?;
    // `payment-gateway migrate`: create the database and apply every migration, then stop
    // (deploy pipelines, `cargo xtask migrate`).
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        paywire_platform::db::ensure_database(&settings.database.url).await?;
        let sets = vec![paywire_messaging::MIGRATIONS, MIGRATIONS];
        paywire_platform::db::migrate(&settings.database.url, sets).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    build(settings).await?.run().await
}
