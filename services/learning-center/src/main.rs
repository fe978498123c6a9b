#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paywire_platform::app::main::<learning_center::Settings>().await
}
