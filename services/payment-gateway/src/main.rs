#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: payment_gateway::Settings =
        paywire_platform::config::load(payment_gateway::SERVICE_NAME)?;
    payment_gateway::build(settings).await?.run().await
}
