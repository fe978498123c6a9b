//! A private PostgreSQL server: made, stopped in both modes and started again while a
//! client holds connections, without touching the machine's server; gone after drop.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywire_testkit::TestDatabase;
use paywire_testkit::postgres::{PrivatePostgres, Shutdown};

async fn rows(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    paywire_testkit::count(conn, "SELECT count(*) AS n FROM kept").await
}

#[tokio::test]
async fn a_private_server_stops_and_starts_and_keeps_what_was_committed() {
    let server = PrivatePostgres::start().await.unwrap();
    assert_ne!(server.port(), 5432);
    let control = server.control().clone();
    assert!(control.is_accepting().await);
    let db = TestDatabase::create_on(&server.url(), "private")
        .await
        .unwrap();
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    diesel::sql_query("CREATE TABLE kept (id int PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("INSERT INTO kept VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap();

    // Immediate: no checkpoint; the commit above survives through WAL replay.
    control.stop(Shutdown::Immediate).await.unwrap();
    assert!(!control.is_accepting().await);
    assert!(rows(&mut conn).await.is_err(), "the old connection is dead");
    assert!(AsyncPgConnection::establish(&db.url).await.is_err());
    control.start().await.unwrap();
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    assert_eq!(rows(&mut conn).await.unwrap(), 1);

    // Fast, through restart: down for the pause, then up again.
    let restarting = {
        let control = control.clone();
        tokio::spawn(async move {
            control
                .restart(Shutdown::Fast, Duration::from_millis(500))
                .await
        })
    };
    paywire_testkit::eventually(Duration::from_secs(30), || {
        let control = control.clone();
        async move { (!control.is_accepting().await).then_some(()) }
    })
    .await
    .unwrap();
    restarting.await.unwrap().unwrap();
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    assert_eq!(rows(&mut conn).await.unwrap(), 1);

    drop(conn);
    drop(db);
    drop(server);
    assert!(!control.is_accepting().await, "dropped servers are stopped");
}

#[tokio::test]
async fn private_servers_are_independent() {
    let (a, b) = tokio::join!(PrivatePostgres::start(), PrivatePostgres::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.port(), b.port());
    a.control().stop(Shutdown::Fast).await.unwrap();
    assert!(!a.control().is_accepting().await);
    assert!(b.control().is_accepting().await);
}
