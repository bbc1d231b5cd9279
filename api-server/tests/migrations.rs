//! Migrations on a real PostgreSQL: up to head, down to zero, up again; step by step; and
//! through the binary, as the operator's Jobs run it.

mod common;

use anyhow::Result;
use common::TestDb;
use listacompra_api::migrate::{self, Outcome};

async fn tables(db: &TestDb) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?)
}

#[tokio::test]
async fn migrations_go_up_to_head_down_to_zero_and_up_again() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::empty(&services).await?;
    let head = migrate::head();
    assert!(head >= 4, "head {head}");

    let up = migrate::migrate_to(&db.pool, None).await?;
    assert_eq!(up, Outcome { from: 0, to: head });
    let all = tables(&db).await?;
    for t in [
        "users",
        "lists",
        "list_members",
        "items",
        "outbox_events",
        "processed_events",
        "suggestion_requests",
    ] {
        assert!(all.iter().any(|x| x == t), "{t} missing after up: {all:?}");
    }

    let down = migrate::reset_to(&db.pool, Some(0)).await?;
    assert_eq!(down, Outcome { from: head, to: 0 });
    assert_eq!(tables(&db).await?, Vec::<String>::new());

    let again = migrate::migrate_to(&db.pool, None).await?;
    assert_eq!(again, Outcome { from: 0, to: head });
    assert_eq!(tables(&db).await?, all);

    // Idempotent at head.
    assert_eq!(
        migrate::migrate_to(&db.pool, None).await?,
        Outcome {
            from: head,
            to: head
        }
    );
    Ok(())
}

#[tokio::test]
async fn migrate_to_moves_one_revision_at_a_time_and_rejects_unknown_ones() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::empty(&services).await?;
    assert_eq!(
        migrate::migrate_to(&db.pool, Some(2)).await?,
        Outcome { from: 0, to: 2 }
    );
    assert_eq!(
        tables(&db).await?,
        ["items", "list_members", "lists", "users"]
    );
    // Data survives a revert of later revisions.
    sqlx::query(
        "INSERT INTO users (id, email, password_hash) VALUES (gen_random_uuid(), 'a@b.es', 'x')",
    )
    .execute(&db.pool)
    .await?;
    assert_eq!(
        migrate::migrate_to(&db.pool, Some(4)).await?,
        Outcome { from: 2, to: 4 }
    );
    assert_eq!(
        migrate::reset_to(&db.pool, Some(1)).await?,
        Outcome { from: 4, to: 1 }
    );
    assert_eq!(tables(&db).await?, ["users"]);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(users, 1);
    let err = migrate::migrate_to(&db.pool, Some(99))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("99"), "{err}");
    assert_eq!(migrate::current(&db.pool).await?, 1);
    Ok(())
}

#[tokio::test]
async fn the_binary_migrates_and_reports_the_revision() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::empty(&services).await?;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_listacompra-api"))
            .args(args)
            .env_clear()
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .output()
    };
    let out = run(&["migrate", "--to", "3"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("schema revision 3 (was 0"), "{text}");
    let out = run(&["migrate"])?;
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("schema revision {} (was 3", migrate::head()))
    );
    // Down across revisions whose down steps lose data: refused before any step runs, the
    // plan says which, and an explicit MIGRATION_ALLOW_IRREVERSIBLE goes through.
    let out = run(&["migrate", "--to", "12"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("IrreversibleMigration: revision 13 cannot be reverted")
            && err.contains("pending ownership transfer")
            && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(migrate::current(&db.pool).await?, migrate::head());
    let out = run(&["migrate", "--plan", "--to", "10"])?;
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("revert 13: irreversible: dropping list_transfer_offers")
            && plan.contains("revert 12: reversible")
            && plan.contains("revert 11: reversible")
            && !plan.contains("revert 10"),
        "{plan}"
    );
    assert_eq!(
        migrate::current(&db.pool).await?,
        migrate::head(),
        "--plan changes nothing"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_listacompra-api"))
        .args(["migrate", "--to", "0"])
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env("MIGRATION_ALLOW_IRREVERSIBLE", "true")
        .output()?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema revision 0"));
    let out = run(&["migrate", "--to", "42"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown schema revision 42"));

    // A missing variable stops start-up with one message naming it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_listacompra-api"))
        .arg("migrate")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .output()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn a_revert_across_a_step_that_loses_data_is_refused_and_changes_nothing() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let head = migrate::head();
    // Revision 7's down step would drop users.token_version (the record of revoked tokens);
    // revisions 8 to 13 above it include another irreversible one (13) and reversible ones.
    let err = migrate::migrate_to(&db.pool, Some(6)).await.unwrap_err();
    match &err {
        listacompra_api::Error::IrreversibleMigration {
            revision,
            current,
            target,
            ..
        } => assert_eq!(
            (*revision, *current, *target),
            (7, head, 6),
            "the lowest irreversible revision on the way: a backup from before it is needed"
        ),
        other => panic!("{other}"),
    }
    // Not even the reversible steps above it ran.
    assert_eq!(migrate::current(&db.pool).await?, head);
    let columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'token_version'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(columns, 1);
    // Reversible steps alone go down as before (no irreversible one between 13 and 12 is
    // crossed when 13 is not reverted).
    migrate::reset_to(&db.pool, Some(12)).await?;
    assert_eq!(
        migrate::migrate_to(&db.pool, Some(10)).await?,
        Outcome { from: 12, to: 10 }
    );
    Ok(())
}

#[tokio::test]
async fn an_older_binary_refuses_a_newer_schema_and_says_which_image_to_use() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let head = migrate::head();
    // What a newer release leaves behind: one more applied revision.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer release', true, '\\x00'::bytea, 1)",
    )
    .bind(head + 1)
    .execute(&db.pool)
    .await?;
    for target in [None, Some(head), Some(1)] {
        let err = migrate::migrate_to(&db.pool, target)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("revision {}", head + 1)) && err.contains("image"),
            "{err}"
        );
    }
    assert_eq!(migrate::current(&db.pool).await?, head + 1);
    Ok(())
}

async fn has_token_version(db: &TestDb) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_name = 'users' AND column_name = 'token_version')",
    )
    .fetch_one(&db.pool)
    .await?)
}

#[tokio::test]
async fn revision_7_adds_token_versions_to_existing_users_and_its_down_removes_them() -> Result<()>
{
    let services = common::services().await?;
    let db = TestDb::empty(&services).await?;
    migrate::migrate_to(&db.pool, Some(6)).await?;
    assert!(!has_token_version(&db).await?);
    // A user registered by a build of revision 6.
    sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, 'old@example.com', 'x')")
        .bind(uuid::Uuid::new_v4())
        .execute(&db.pool)
        .await?;
    migrate::migrate_to(&db.pool, Some(7)).await?;
    let version: i64 = sqlx::query_scalar("SELECT token_version FROM users")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(version, 0, "existing users start at token version 0");
    // Builds of revision 6 insert users without naming the column: the default applies.
    sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, 'new@example.com', 'x')")
        .bind(uuid::Uuid::new_v4())
        .execute(&db.pool)
        .await?;
    migrate::reset_to(&db.pool, Some(6)).await?;
    assert!(
        !has_token_version(&db).await?,
        "the down migration left the column"
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(users, 2, "the down migration lost users");
    Ok(())
}
