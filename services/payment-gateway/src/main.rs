#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paywire_platform::app::main::<payment_gateway::Settings>().await
}
