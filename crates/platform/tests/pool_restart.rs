//! The pool across a restart of its PostgreSQL (a private server; the suite's shared one
//! stays up): a checkout begun while the server is down completes once it is back, within
//! the pool's patience; with no patience it fails at once; connections the server dropped
//! are replaced, never handed out; work that is safe to repeat and lost its connection
//! half-way is repeated once the server is back (`repeat_while_unavailable`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel_async::RunQueryDsl;
use paywire_platform::config::DatabaseSettings;
use paywire_platform::db::{
    DbFault, DbPool, PoolError, Transience, pool, repeat_while_unavailable,
};
use paywire_testkit::TestDatabase;
use paywire_testkit::postgres::{PrivatePostgres, Shutdown};

fn pool_on(url: &str, patience_ms: u64) -> DbPool {
    pool(&DatabaseSettings {
        url: url.to_owned(),
        max_connections: 2,
        migrate: false,
        connect_patience_ms: patience_ms,
        ..DatabaseSettings::default()
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

/// A request's error type, as a service has one.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("pool: {0}")]
    Pool(#[from] PoolError),
    #[error("query: {0}")]
    Query(#[from] diesel::result::Error),
}

impl Transience for RequestError {
    fn db_fault(&self) -> Option<DbFault> {
        Some(match self {
            RequestError::Pool(e) => DbFault::of_pool(e),
            RequestError::Query(e) => DbFault::of_query(e),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_lost_its_connection_half_way_is_repeated_once_the_server_is_back() {
    let server = PrivatePostgres::start().await.unwrap();
    let control = server.control().clone();
    let db = TestDatabase::create_on(&server.url(), "repeat")
        .await
        .unwrap();
    // No patience in the pool: the waiting below is the repeat's own.
    let pool = pool_on(&db.url, 0);
    let calls = AtomicUsize::new(0);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let proceed = tokio::sync::Notify::new();

    let work = repeat_while_unavailable(
        &pool,
        Duration::from_secs(120),
        async |conn| -> Result<i32, RequestError> {
            calls.fetch_add(1, Ordering::SeqCst);
            let first = started_tx.lock().unwrap().take();
            if let Some(started) = first {
                let _ = started.send(());
                proceed.notified().await;
            }
            #[derive(diesel::QueryableByName)]
            struct One {
                #[diesel(sql_type = diesel::sql_types::Integer)]
                one: i32,
            }
            let row: One = diesel::sql_query("SELECT 1 AS one")
                .get_result(conn)
                .await?;
            Ok(row.one)
        },
    );
    let outage = async {
        started_rx.await.unwrap();
        control.stop(Shutdown::Immediate).await.unwrap();
        proceed.notify_one();
        // Down for a while: checkouts fail at once (no patience) and are tried again.
        tokio::time::sleep(Duration::from_millis(800)).await;
        control.start().await.unwrap();
    };
    let (answer, ()) = tokio::join!(work, outage);
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(
        AtomicUsize::load(&calls, Ordering::SeqCst),
        2,
        "the cut try and the one after the restart; failed checkouts never reach the work"
    );

    // A fault that is not the database's passing is returned at once.
    let calls = AtomicUsize::new(0);
    let missing = repeat_while_unavailable(
        &pool,
        Duration::from_secs(120),
        async |_conn| -> Result<(), RequestError> {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(diesel::result::Error::NotFound.into())
        },
    )
    .await;
    assert!(matches!(missing, Err(RequestError::Query(_))));
    assert_eq!(AtomicUsize::load(&calls, Ordering::SeqCst), 1);

    // Once the budget is spent, the passing fault is the answer (a 503 for an API).
    control.stop(Shutdown::Fast).await.unwrap();
    let down = repeat_while_unavailable(&pool, Duration::ZERO, async |_conn| {
        Ok::<(), RequestError>(())
    })
    .await;
    match down {
        Err(e) => assert_eq!(e.db_fault(), Some(DbFault::Unavailable), "{e}"),
        Ok(()) => panic!("no connection while the server is down"),
    }
    control.start().await.unwrap();
    drop((pool, db));
    drop(server);
}
