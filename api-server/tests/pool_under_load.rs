//! What the store and its pool promise under more requests than connections, whatever sits
//! between them: every answer right; a connection whose backend is gone fails one statement
//! and no more; every connection back in the pool once the load stops; a fixed pool's
//! connections kept open across bursts, and a lost one replaced while requests wait; the
//! pool's other users (the readiness check, the outbox relay, transactions) served in turn.
//! sqlx's pool keeps them, and so must the store's hand-offs (`store/handoff.rs`), which skip
//! the pool's ping on release by handing connections from statement to statement: a first
//! version, whose requests raced their own acquire against hand-offs, broke three of them
//! (the stop 45 note of issue 19). A cut statement's connection cannot be seen reused as if
//! clean: sqlx drains whatever is pending before its next statement.

mod common;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use listacompra_api::domain::{ListDetail, Role};
use listacompra_api::ports::{Store, TokenSubject, UnitOfWork};
use listacompra_api::store::PgStore;
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The application name of the connections under test, so that the killer finds them.
const APP: &str = "pool-under-load";

/// A fresh migrated database with a list its owner (`reader`) is a member of, with a few
/// items.
struct Fixture {
    db: common::TestDb,
    reader: TokenSubject,
    list: Uuid,
}

impl Fixture {
    async fn new() -> Result<Self> {
        let services = common::services().await?;
        let db = common::TestDb::migrated(&services).await?;
        let (reader, list) = member_list(&db.pool).await?;
        Ok(Self { db, reader, list })
    }
}

/// A list its owner is a member of, with a few items; the owner's claim and the list.
async fn member_list(pool: &PgPool) -> Result<(TokenSubject, Uuid)> {
    let (owner, list) = common::user_with_list(pool).await?;
    sqlx::query("INSERT INTO list_members (list_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(list)
        .bind(owner)
        .execute(pool)
        .await?;
    for position in 0..5 {
        sqlx::query("INSERT INTO items (id, list_id, name, position) VALUES ($1, $2, $3, $4)")
            .bind(Uuid::new_v4())
            .bind(list)
            .bind(format!("item {position}"))
            .bind(position)
            .execute(pool)
            .await?;
    }
    let reader = TokenSubject {
        user: owner,
        version: 0,
    };
    Ok((reader, list))
}

/// The answer of a list read, as the API would write it.
async fn read(store: &PgStore, reader: TokenSubject, list: Uuid) -> Result<String> {
    let detail = store
        .list_detail(reader, list)
        .await?
        .context("the owner reads the list")?;
    Ok(serde_json::to_string(&detail)?)
}

/// `url` with the application name the killer looks for.
fn under_test(url: &str) -> String {
    let join = if url.contains('?') { '&' } else { '?' };
    format!("{url}{join}application_name={APP}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_load_of_reads_leaves_the_pool_to_its_other_users() -> Result<()> {
    let Fixture { db, reader, list } = Fixture::new().await?;
    // One connection, and a user of the pool that waits a second fails: four readers keep
    // it busy, each waiting for it as soon as it has read, so a connection passed from
    // reader to reader for as long as one waits would never come back to the pool.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&db.url)
        .await?;
    let store = PgStore::new(pool.clone());
    let readers = Readers::start(&store, reader, list).await?;
    // Three seconds of the pool's other user, each wait under the acquire timeout.
    for turn in 0..30 {
        let mut conn = pool
            .acquire()
            .await
            .with_context(|| format!("turn {turn}: the pool's other user is starved"))?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        drop(conn);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    readers.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_behind_a_steady_load_of_reads_waits_for_the_reads_before_it() -> Result<()> {
    let Fixture { db, reader, list } = Fixture::new().await?;
    // One connection, which four readers keep busy. A transaction waits in the pool's queue
    // behind the reads that came before it, not longer (a connection passed from reader to
    // reader would reach it only when it goes back to the pool: hundreds of reads).
    let pool = listacompra_api::store::pool(&db.url, 1, None)?;
    let store = PgStore::new(pool);
    let readers = Readers::start(&store, reader, list).await?;
    for turn in 0..20 {
        let before = readers.reads();
        let tx = store.begin().await?;
        let meanwhile = readers.reads() - before;
        tx.commit().await?;
        // The read holding the connection and those queued before the transaction: one
        // per reader at most, the bound doubled for the reads counted as they end.
        assert!(
            meanwhile <= 2 * READERS,
            "turn {turn}: {meanwhile} reads were served while a transaction waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    readers.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_after_a_quiet_second_keep_every_connection_open() -> Result<()> {
    let Fixture { db, reader, list } = Fixture::new().await?;
    let (store, mut observer, opened) = warmed_fixed_pool(&db, 3).await?;
    let expected = read(&store, reader, list).await?;
    for burst in 0..5 {
        // Every connection rests past a second, so the pool pings each one it hands out;
        // anything that cut such a ping would close a sound connection.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let reads = (0..4 * opened.len()).map(|_| read(&store, reader, list));
        for got in futures::future::join_all(reads).await {
            assert_eq!(got?, expected);
        }
        assert_eq!(
            backends(&mut observer).await?,
            opened,
            "burst {burst}: the pool's connections changed"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_replaced_while_reads_wait() -> Result<()> {
    let Fixture { db, reader, list } = Fixture::new().await?;
    let (store, mut observer, opened) = warmed_fixed_pool(&db, 4).await?;
    let readers = Readers::start(&store, reader, list).await?;
    let more = Readers::start(&store, reader, list).await?;
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(opened[0])
        .fetch_one(&mut observer)
        .await?;
    anyhow::ensure!(ended, "the backend {} was not ended", opened[0]);
    // Eight readers on four connections: the pool opens the replacement while reads wait.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = backends(&mut observer).await?;
        if now.len() == 4 && !now.contains(&opened[0]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "5 s after a backend ended under load the pool holds {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // At most the one read that met the ended backend failed (and stopped its reader).
    let failed: Vec<anyhow::Error> = [readers.stop().await, more.stop().await]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    anyhow::ensure!(
        failed.len() <= 1 && failed.iter().all(met_an_ended_backend),
        "reads failed: {failed:?}"
    );
    Ok(())
}

/// How a connect that a request started goes on after the request left.
#[derive(Debug, Clone, Copy)]
enum LeftConnect {
    /// PostgreSQL answers "too many connections" (53300), which sqlx retries until the
    /// acquire timeout.
    Retried,
    /// It then fails: the role's password changed meanwhile (28P01, not retried).
    Failed,
}

/// When a connection comes back to the pool, for the request that takes it next.
#[derive(Debug, Clone, Copy)]
enum Back {
    /// Before the request comes.
    Before,
    /// While it waits: the pool alone would have it wait on a connect of its own, retried
    /// until the acquire timeout.
    While,
}

/// A request cut while its connection was being opened, then a connection idle in the pool:
/// the next request takes that one, whatever the connect started for the first does. The
/// connect is held up by a real PostgreSQL: a role of the test's, allowed one connection.
async fn a_request_takes_an_idle_connection_whatever_a_left_connect_does(
    left: LeftConnect,
    back: Back,
) -> Result<()> {
    let Fixture { db, reader, list } = Fixture::new().await?;
    let role = format!("pool_limit_{}", Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'first' CONNECTION LIMIT 1; \
         GRANT pg_read_all_data TO {role}"
    )))
    .execute(&db.pool)
    .await?;
    let options = PgConnectOptions::from_str(&db.url)?
        .username(&role)
        .password("first");
    // The left connect is retried until this timeout, so that the pool closes soon after.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options);
    let store = PgStore::new(pool.clone());
    read(&store, reader, list)
        .await
        .context("the first read, on the role's one connection")?;
    // The role's one connection, back in the pool (sqlx takes it back in a task of its
    // own: an acquire before that would open a second one, and be refused until it times
    // out), then taken by another user of the pool.
    idle(&pool).await?;
    let held = pool.acquire().await.context("the pool's other user")?;
    let cut = tokio::time::timeout(Duration::from_millis(300), read(&store, reader, list)).await;
    anyhow::ensure!(cut.is_err(), "a second connection was opened: {cut:?}");
    if let LeftConnect::Failed = left {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER ROLE {role} PASSWORD 'second'"
        )))
        .execute(&db.pool)
        .await?;
    }
    let started = std::time::Instant::now();
    let read_next = || {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(1), read(&store, reader, list)).await
        })
    };
    let next = match back {
        Back::Before => {
            drop(held);
            idle(&pool).await?;
            read_next()
        }
        Back::While => {
            let next = read_next();
            // It joins the queue and waits; then the connection comes back.
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
            next
        }
    };
    let got = next.await?;
    anyhow::ensure!(
        matches!(got, Ok(Ok(_))),
        "{left:?}, back {back:?}: a read with a connection idle in the pool answered {got:?} \
         after {:?}",
        started.elapsed()
    );
    pool.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Waits until `pool` holds a connection idle.
async fn idle(pool: &PgPool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while pool.num_idle() == 0 {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no connection idle");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_takes_an_idle_connection_while_a_left_connect_is_retried() -> Result<()> {
    for back in [Back::Before, Back::While] {
        a_request_takes_an_idle_connection_whatever_a_left_connect_does(LeftConnect::Retried, back)
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_takes_an_idle_connection_not_the_error_of_a_left_connect() -> Result<()> {
    // Only before: a request that waits while no connection is idle needs a new one, and
    // would fail with that connect's error through the pool alone too.
    a_request_takes_an_idle_connection_whatever_a_left_connect_does(
        LeftConnect::Failed,
        Back::Before,
    )
    .await
}

/// A store error of a statement on a connection whose backend was ended.
fn met_an_ended_backend(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<listacompra_api::Error>(),
        Some(listacompra_api::Error::Database { source, .. }) if ended(source)
    )
}

/// A store over a fixed pool of `size` connections under test, all open (as the server's:
/// they stay open for good), a connection to watch them, and their backends.
async fn warmed_fixed_pool(
    db: &common::TestDb,
    size: u32,
) -> Result<(PgStore, PgConnection, Vec<i32>)> {
    let pool = listacompra_api::store::pool(
        &under_test(&db.url),
        listacompra_api::store::PoolSize {
            min: size,
            max: size,
        },
        None,
    )?;
    listacompra_api::store::warm(&pool).await?;
    let mut observer = PgConnection::connect(&db.url).await?;
    let opened = backends(&mut observer).await?;
    anyhow::ensure!(
        opened.len() == size as usize,
        "the warmed pool holds {opened:?}"
    );
    Ok((PgStore::new(pool), observer, opened))
}

/// The backends of the connections under test (of this test's database: tests run at once),
/// by pid.
async fn backends(observer: &mut PgConnection) -> Result<Vec<i32>> {
    Ok(sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database() ORDER BY pid",
    )
    .bind(APP)
    .fetch_all(observer)
    .await?)
}

/// Readers of the load tests.
const READERS: usize = 4;

/// [`READERS`] tasks reading a list in a loop, each asking again as soon as it has read,
/// so that requests always wait for a connection of a smaller pool.
struct Readers {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Readers {
    /// Starts them, each checking every answer against the first; returns once each has
    /// read once.
    async fn start(store: &PgStore, reader: TokenSubject, list: Uuid) -> Result<Self> {
        let expected = read(store, reader, list).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(tokio::sync::Barrier::new(READERS + 1));
        let tasks = (0..READERS)
            .map(|_| {
                let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
                let (expected, started) = (expected.clone(), started.clone());
                tokio::spawn(async move {
                    let mut first = true;
                    while first || !stop.load(Ordering::Relaxed) {
                        let got = read(&store, reader, list).await?;
                        anyhow::ensure!(got == expected, "a read answered {got}");
                        reads.fetch_add(1, Ordering::Relaxed);
                        if std::mem::take(&mut first) {
                            started.wait().await;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        started.wait().await;
        Ok(Self { stop, reads, tasks })
    }

    /// Reads answered so far.
    fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// Stops them; an error if a read failed or answered another list.
    async fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await??;
        }
        Ok(())
    }
}

/// Rounds of concurrent operations per run, and at most how many run at once.
const ROUNDS: usize = 200;
const AT_ONCE: u64 = 8;
/// The pool's connections: fewer than the operations at once, so that reads wait and
/// connections change hands.
const CONNECTIONS: u32 = 3;

/// One operation of a drawn sequence.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A list read that must answer the list.
    Read,
    /// A list read cut after this many microseconds, maybe mid-statement.
    Cut(u64),
    /// The pool's other user: takes a connection from the pool itself, as the readiness
    /// check does.
    Direct,
    /// A transaction of the store (a write's), which reads the caller's role in the list.
    Transaction,
    /// Ends the backend of the `n`th connection under test (ordered by pid), as a restarted
    /// PostgreSQL or a cut network would.
    Kill(u64),
}

fn draw(rng: &mut Pcg64) -> Op {
    match rng.next_u64() % 11 {
        0..=4 => Op::Read,
        5..=7 => Op::Cut(rng.next_u64() % 3_000),
        8 => Op::Direct,
        9 => Op::Transaction,
        _ => Op::Kill(rng.next_u64()),
    }
}

/// What one operation saw.
#[derive(Debug, PartialEq)]
enum Seen {
    /// The list, `SELECT 1`'s one, or the owner's role in a transaction.
    Answered,
    Cut,
    /// A statement met an ended backend.
    Failed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_cut_and_failed_in_any_order_answer_right_and_give_every_connection_back()
-> Result<()> {
    let (seed, replay) = common::seed("LC_POOL_LOAD_SEED")?;
    let mut rng = Pcg64::seed_from_u64(seed);
    let Fixture { db, reader, list } = Fixture::new().await?;
    let pool = listacompra_api::store::pool(&under_test(&db.url), CONNECTIONS, None)?;
    let store = PgStore::new(pool.clone());
    let expected = read(&store, reader, list).await?;
    let mut killer = PgConnection::connect(&db.url).await?;
    let (mut killed, mut failed) = (0, 0);
    for round in 0..ROUNDS {
        let ops: Vec<Op> = (0..1 + rng.next_u64() % AT_ONCE)
            .map(|_| draw(&mut rng))
            .collect();
        let mut kills = Vec::new();
        let mut running = Vec::new();
        for op in &ops {
            match *op {
                Op::Kill(n) => kills.push(n),
                op => {
                    let (store, pool, expected) = (store.clone(), pool.clone(), expected.clone());
                    running.push(tokio::spawn(async move {
                        run(op, &store, &pool, reader, list, &expected).await
                    }));
                }
            }
        }
        for n in kills {
            let pids = backends(&mut killer).await?;
            if let Some(pid) = pids.get((n % pids.len().max(1) as u64) as usize) {
                let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .fetch_one(&mut killer)
                    .await?;
                killed += usize::from(ended);
            }
        }
        for op in running {
            let seen = op
                .await?
                .with_context(|| format!("{replay}: round {round}: {ops:?}"))?;
            failed += usize::from(seen == Seen::Failed);
        }
    }
    // Each ended backend fails at most the one statement that meets it: its connection is
    // then closed, never used again.
    assert!(
        failed <= killed,
        "{replay}: {failed} statements failed, {killed} backends were ended"
    );
    // Every connection back in the pool (sqlx takes them back in tasks of their own).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pool.num_idle() != pool.size() as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{replay}: {} of the pool's {} connections are still out",
            pool.size() as usize - pool.num_idle(),
            pool.size()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the store reads on: a dead connection still idle is replaced when pinged
    // (idle for a second or more).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for _ in 0..CONNECTIONS * 2 {
        assert_eq!(read(&store, reader, list).await?, expected, "{replay}");
    }
    Ok(())
}

/// Runs `op`: an answer must be the list; a statement may fail only on a connection whose
/// backend was ended (counted by the caller).
async fn run(
    op: Op,
    store: &PgStore,
    pool: &PgPool,
    reader: TokenSubject,
    list: Uuid,
    expected: &str,
) -> Result<Seen> {
    let answered = |got: listacompra_api::Result<Option<ListDetail>>| match got {
        Ok(Some(detail)) => {
            let got = serde_json::to_string(&detail)?;
            anyhow::ensure!(got == expected, "a read answered {got}, not {expected}");
            Ok(Seen::Answered)
        }
        Ok(None) => anyhow::bail!("the owner's list read answered no list"),
        Err(listacompra_api::Error::Database { source, .. }) if ended(&source) => Ok(Seen::Failed),
        Err(e) => Err(e.into()),
    };
    match op {
        Op::Read => answered(store.list_detail(reader, list).await),
        Op::Cut(micros) => {
            let cut = Duration::from_micros(micros);
            match tokio::time::timeout(cut, store.list_detail(reader, list)).await {
                Ok(got) => answered(got),
                Err(_) => Ok(Seen::Cut),
            }
        }
        Op::Direct => {
            let mut conn = pool.acquire().await.context("the pool's other user")?;
            match sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut *conn)
                .await
            {
                Ok(1) => Ok(Seen::Answered),
                Ok(other) => anyhow::bail!("SELECT 1 answered {other}"),
                Err(e) if ended(&e) => Ok(Seen::Failed),
                Err(e) => Err(e.into()),
            }
        }
        Op::Transaction => {
            let failed = |e: listacompra_api::Error| match e {
                listacompra_api::Error::Database { source, .. } if ended(&source) => {
                    Ok(Seen::Failed)
                }
                e => Err(anyhow::Error::from(e)),
            };
            let mut tx = match store.begin().await {
                Ok(tx) => tx,
                Err(e) => return failed(e),
            };
            match tx.role(list, reader.user).await {
                Ok(Some(Role::Owner)) => {}
                Ok(other) => anyhow::bail!("the owner's role read {other:?}"),
                Err(e) => return failed(e),
            }
            match tx.commit().await {
                Ok(()) => Ok(Seen::Answered),
                Err(e) => failed(e),
            }
        }
        Op::Kill(_) => unreachable!("kills are run by the caller"),
    }
}

/// A failure of a connection whose backend was ended: the termination's error (SQLSTATE
/// 57P01), or the closed socket after it.
fn ended(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P01"),
        _ => false,
    }
}
