//! `prospector-operator migrate` against a real Postgres: it applies every migration and exits
//! 0, is idempotent, and fails cleanly (without echoing credentials) when the database is down.

use std::process::Command;

use prospector_tests::shared_postgres;

fn operator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prospector-operator"));
    command.env_remove("DATABASE_URL").env("PROSPECTOR_LOG_FORMAT", "json");
    command
}

#[tokio::test]
async fn migrate_applies_every_migration_and_is_idempotent() {
    let db = shared_postgres().empty_database().await.unwrap();
    for _ in 0..2 {
        let output = operator().args(["migrate"]).env("DATABASE_URL", &db.url).output().unwrap();
        assert!(output.status.success(), "migrate failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let applied = prospector_store::applied_migrations(&db.pool).await.unwrap();
    let embedded: Vec<i64> = prospector_store::MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(applied, embedded);
}

#[test]
fn migrate_fails_cleanly_without_a_database_and_never_logs_the_password() {
    let output = operator()
        .args(["migrate", "--database-url", "postgres://prospector:s3cr3t-pass@127.0.0.1:1/prospector"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "migrate must fail when Postgres is unreachable");
    let logs = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(logs.contains("operator command failed"), "the failure is logged: {logs}");
    assert!(!logs.contains("s3cr3t-pass"), "the password leaked into the logs: {logs}");
}
