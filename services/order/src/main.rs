#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paywire_platform::app::main::<order::Settings>().await
}
