use order::{MIGRATIONS, SERVICE_NAME, Settings, build};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = paywire_platform::config::load(SERVICE_NAME)?;
    paywire_platform::telemetry::init(SERVICE_NAME, &settings.telemetry);
    // PAYWIRE__ENVIRONMENT=production: refuse development secrets, test keys, the sandbox.
    paywire_platform::production::enforce(SERVICE_NAME, &settings)?;
    // `order migrate`: create the database and apply migrations, nothing else (deploy
    // pipelines, `cargo xtask migrate`).
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        let url = &settings.database.url;
        paywire_platform::db::ensure_database(url).await?;
        paywire_platform::db::migrate(url, vec![paywire_messaging::MIGRATIONS, MIGRATIONS]).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    build(settings).await?.run().await
}
