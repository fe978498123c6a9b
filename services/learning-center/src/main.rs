use learning_center::{MIGRATIONS, SERVICE_NAME, Settings, build};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = paywire_platform::config::load(SERVICE_NAME)?;
    paywire_platform::telemetry::init(SERVICE_NAME, &settings.telemetry);
    // PAYWIRE__ENVIRONMENT=production: refuse development secrets, test keys, the sandbox.
    paywire_platform::production::enforce(SERVICE_NAME, &settings)?;
    if paywire_platform::db::migrate_requested() {
        let sets = vec![paywire_messaging::MIGRATIONS, MIGRATIONS];
        return Ok(paywire_platform::db::create_and_migrate(&settings.database, sets).await?);
    }
    build(settings).await?.run().await
}
