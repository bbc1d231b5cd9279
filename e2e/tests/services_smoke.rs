//! Smoke tests of the real backing services: connect, write, read back.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::env::Component;
use e2e::services::Services;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use redis::AsyncCommands;
use sqlx::{AssertSqlSafe, Connection as _, Executor, PgConnection, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

#[tokio::test]
async fn postgres_writes_and_reads_back_in_a_fresh_database() -> Result<()> {
    let services = Services::start(&[Component::Postgres]).await?;
    let db = format!("smoke_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(services.postgres_admin_url()?).await?;
    // The name is generated here, never user input, so building the statement is safe.
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await?;

    let url = services
        .database_url()?
        .replace("/listacompra", &format!("/{db}"));
    let result = async {
        let mut conn = PgConnection::connect(&url).await?;
        conn.execute("CREATE TABLE items (id uuid PRIMARY KEY, name text NOT NULL)")
            .await?;
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO items (id, name) VALUES ($1, $2)")
            .bind(id)
            .bind("leche")
            .execute(&mut conn)
            .await?;
        let row = sqlx::query("SELECT name FROM items WHERE id = $1")
            .bind(id)
            .fetch_one(&mut conn)
            .await?;
        let name: String = row.try_get("name")?;
        ensure!(name == "leche", "read back {name:?}");
        conn.close().await?;
        anyhow::Ok(())
    }
    .await;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    result
}

#[tokio::test]
async fn redis_writes_and_reads_back() -> Result<()> {
    let services = Services::start(&[Component::Redis]).await?;
    let client = redis::Client::open(services.redis_url()?)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let key = format!("smoke:{}", Uuid::new_v4());
    let _: () = conn.set_ex(&key, "pan", 60).await?;
    let value: String = conn.get(&key).await?;
    ensure!(value == "pan", "read back {value:?}");
    let ttl: i64 = conn.ttl(&key).await?;
    ensure!((1..=60).contains(&ttl), "ttl {ttl}");
    Ok(())
}

#[tokio::test]
async fn rabbitmq_confirms_a_publish_and_delivers_it() -> Result<()> {
    let services = Services::start(&[Component::RabbitMq]).await?;
    let conn =
        Connection::connect(services.rabbitmq_url()?, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let queue = format!("smoke-{}", Uuid::new_v4());
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"huevos",
            BasicProperties::default(),
        )
        .await?
        .await?;
    ensure!(
        confirm.is_ack(),
        "the broker did not ack the publish: {confirm:?}"
    );
    let message = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await?
        .context("the queue was empty after a confirmed publish")?;
    ensure!(
        message.delivery.data == b"huevos",
        "read back {:?}",
        message.delivery.data
    );
    conn.close(200, "bye".into()).await?;
    Ok(())
}

/// Serves one gauge in the Prometheus text format, lets the real Prometheus scrape it
/// through a `file_sd` target file, and reads the value back through the query API.
#[tokio::test]
async fn prometheus_scrapes_a_target_and_answers_a_query() -> Result<()> {
    let services = Services::start(&[Component::Prometheus]).await?;
    let run = Uuid::new_v4().simple().to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body = format!("# TYPE lc_smoke_value gauge\nlc_smoke_value{{run=\"{run}\"}} 42.5\n");
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });

    let target = services
        .prometheus_targets_dir()?
        .join(format!("smoke-{run}.json"));
    std::fs::write(
        &target,
        format!(r#"[{{"targets":["{addr}"],"labels":{{"suite":"smoke"}}}}]"#),
    )?;
    let http = reqwest::Client::new();
    let query = format!("{}/api/v1/query", services.prometheus_url()?);
    let promql = format!("lc_smoke_value{{run=\"{run}\"}}");
    let value = e2e::cluster::eventually(
        "Prometheus to scrape the smoke target",
        Duration::from_secs(60),
        || {
            let request = http.get(&query).query(&[("query", promql.as_str())]);
            async move {
                let body: serde_json::Value = request.send().await.ok()?.json().await.ok()?;
                body["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_owned)
            }
        },
    )
    .await;
    std::fs::remove_file(&target)?;
    server.abort();
    let value = value.map_err(anyhow::Error::msg)?;
    ensure!(value == "42.5", "Prometheus returned {value}");
    Ok(())
}
