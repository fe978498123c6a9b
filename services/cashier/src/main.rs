#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paywire_platform::app::main::<cashier::Settings>().await
}
