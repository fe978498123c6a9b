//! The pool across a restart of its PostgreSQL (a private server; the suite's shared one
//! stays up): a checkout begun while the server is down completes once it is back, within
//! the pool's patience; with no patience it fails at once; connections the server dropped
//! are replaced, never handed out.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use paywire_platform::config::DatabaseSettings;
use paywire_platform::db::{DbPool, pool};
use paywire_testkit::TestDatabase;
use paywire_testkit::postgres::{PrivatePostgres, Shutdown};

fn pool_on(url: &str, patience_ms: u64) -> DbPool {
    pool(&DatabaseSettings {
        url: url.to_owned(),
        max_connections: 2,
        migrate: false,
        connect_patience_ms: patience_ms,
    })
    .unwrap()
}

async fn select_one(pool: &DbPool) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_wait_for_a_restarting_server_within_their_patience() {
    let server = PrivatePostgres::start().await.unwrap();
    let control = server.control().clone();
    let db = TestDatabase::create_on(&server.url(), "pool")
        .await
        .unwrap();
    let patient = pool_on(&db.url, 120_000);
    let impatient = pool_on(&db.url, 0);
    // Both pools hold a connection from before the restart.
    select_one(&patient).await.unwrap();
    select_one(&impatient).await.unwrap();

    for mode in [Shutdown::Immediate, Shutdown::Fast] {
        control.stop(mode).await.unwrap();
        assert!(
            select_one(&impatient).await.is_err(),
            "no patience: fails while the server is down"
        );
        let waiting = {
            let patient = patient.clone();
            tokio::spawn(async move { select_one(&patient).await })
        };
        // Give the checkout time to meet the server down (the claim holds either way).
        tokio::time::sleep(Duration::from_millis(300)).await;
        control.start().await.unwrap();
        waiting
            .await
            .unwrap()
            .expect("the checkout begun during the outage completes once the server is back");
        // The old connections died with the server; the pools hand out fresh ones.
        select_one(&patient).await.unwrap();
        select_one(&impatient).await.unwrap();
    }
    drop((patient, impatient, db));
    drop(server);
}
