#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paywire_platform::app::main::<channel_sandbox::Settings>().await
}
