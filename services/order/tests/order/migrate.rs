//! `order migrate`: creates the database and applies the migrations, then exits without
//! touching the broker or binding HTTP (`cargo xtask migrate` relies on it).

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use paywire_testkit::TestDatabase;

#[tokio::test]
async fn migrate_creates_the_database_applies_migrations_and_exits() {
    // A database that does not exist yet (dropped at the end): `migrate` must create it.
    let fresh = TestDatabase {
        url: format!(
            "{}/t_order_migrate_{}",
            paywire_testkit::pg_server(),
            paywire_testkit::unique_suffix()
        ),
    };
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_order"))
        .arg("migrate")
        .env("PAYWIRE__DATABASE__URL", &fresh.url)
        // Neither is reachable: `migrate` must need neither.
        .env("PAYWIRE__AMQP__URL", "amqp://nobody:x@127.0.0.1:1/%2f")
        .env("PAYWIRE__HTTP__PORT", "1")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conn = AsyncPgConnection::establish(&fresh.url).await.unwrap();
    let applied = paywire_testkit::count(
        &mut conn,
        "SELECT count(*) AS n FROM __diesel_schema_migrations",
    )
    .await
    .unwrap();
    let sets = [paywire_messaging::MIGRATIONS, order::MIGRATIONS];
    let expected: usize = sets
        .iter()
        .map(|m| MigrationSource::<Pg>::migrations(m).unwrap().len())
        .sum();
    assert_eq!(applied, i64::try_from(expected).unwrap());
    // The service's and the messaging tables are both there.
    for table in ["orders", "order_items", "outbox", "processed_messages"] {
        let n = paywire_testkit::count(&mut conn, &format!("SELECT count(*) AS n FROM {table}"))
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    drop(conn);
    drop(fresh);
}
