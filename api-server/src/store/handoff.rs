//! A connection handed from a finished statement straight to a request waiting for one.
//!
//! sqlx pings every connection on its way back to the pool: one more round trip to
//! PostgreSQL, waking its backend, while the connection is still held. Under load, when
//! requests wait for a connection, that round trip stands between every statement and the
//! next. So a statement that ran to its end hands its connection to the request that has
//! waited longest instead ([`Lease::done`]); the connection is clean, as sqlx read its answer
//! up to PostgreSQL's ready-for-query. Every other connection goes back through the pool and
//! its ping, as before: one whose statement failed or was cut (its future dropped: a request
//! timeout, a client gone), one that nobody waits for, and one out of the pool for [`CYCLE`]
//! or longer when its statement ends, so that a steady load does not starve the pool's other
//! users (the readiness check, the outbox relay) nor skip its lifetime checks for long.
//!
//! Only a request that finds others waiting, or the pool saturated (no idle connection, no
//! room for a new one), waits for a hand-off, racing the pool's queue, where it waits at the
//! same time. Its wait there is a wait for its turn, which is safe to give up. Had the pool
//! had a connection to ping (idle for a second, `store::pool`: never while requests wait,
//! as they would have taken it) or room to open one, the request would have gone to the pool
//! alone: a hand-off that cut that ping would close a sound connection (a fixed pool would
//! then open its replacement under a later request). Only when a connection closes while
//! requests wait may a hand-off cut the connect that replaces it (one wasted connect). A
//! hand-off skips the pool's hooks (`before_acquire`), which only check a connection that
//! rested.
//!
//! The store's transactions cannot take a connection handed over (sqlx begins its public
//! transactions on a connection of the pool's), so they wait in the pool's queue: while one
//! waits ([`Handoff::begin`]), no connection is handed over and each goes back to the pool,
//! which serves its waiters in the order they came. A write behind a steady load of reads
//! waits for the reads that came before it, not for a connection's [`CYCLE`].
//!
//! Nothing is held between requests: with nobody waiting, the connection is back in the pool,
//! so an idle server holds what the pool holds.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::oneshot;

/// How long a connection may pass from statement to statement before it goes back through
/// the pool when its statement ends: with that statement's time, the longest a user of the
/// pool outside hand-offs waits behind a steady load, a fraction of the readiness check's
/// timeout.
const CYCLE: Duration = Duration::from_millis(250);

/// The requests waiting for a connection, in the order they came, over the pool they also
/// wait on.
#[derive(Debug)]
pub(crate) struct Handoff {
    pool: PgPool,
    waiting: Mutex<VecDeque<oneshot::Sender<Taken>>>,
    /// Transactions waiting for the pool: while any does, nothing is handed over.
    beginning: AtomicUsize,
}

/// A connection and when it was taken from the pool.
#[derive(Debug)]
struct Taken {
    conn: PoolConnection<Postgres>,
    at: Instant,
}

impl Taken {
    /// `conn`, just taken from the pool.
    fn new(conn: PoolConnection<Postgres>) -> Self {
        Self {
            conn,
            at: Instant::now(),
        }
    }
}

impl Handoff {
    /// Hand-offs between the users of one store over `pool`.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            waiting: Mutex::new(VecDeque::new()),
            beginning: AtomicUsize::new(0),
        }
    }

    /// The pool under the hand-offs.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction on a connection from the pool. Until it has one, connections go back to
    /// the pool instead of being handed over, so it waits its turn in the pool's queue.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        struct Beginning<'a>(&'a AtomicUsize);
        impl Drop for Beginning<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.beginning.fetch_add(1, Ordering::Relaxed);
        let _beginning = Beginning(&self.beginning);
        self.pool.begin().await
    }

    /// A connection: from the pool alone when nobody waits and it has one idle or room for
    /// one; else the first of one handed over and one from the pool (sqlx's acquire timeout
    /// applies). One handed over while the pool's came is dropped with the receiver, and so
    /// goes back to the pool.
    pub(crate) async fn acquire(&self) -> Result<Lease<'_>, sqlx::Error> {
        let taken = match self.queue() {
            Some(handed) => tokio::select! {
                biased;
                Ok(taken) = handed => taken,
                conn = self.pool.acquire() => Taken::new(conn?),
            },
            None => Taken::new(self.pool.acquire().await?),
        };
        Ok(Lease {
            handoff: self,
            taken,
        })
    }

    /// Where a connection will be handed over, when requests wait already or the pool is
    /// saturated; none when the pool alone serves this request.
    fn queue(&self) -> Option<oneshot::Receiver<Taken>> {
        let mut waiting = self.waiting();
        // Requests that stopped waiting (served by the pool, or cut) leave their sender;
        // dropping those here keeps the queue to the requests waiting now.
        waiting.retain(|waiter| !waiter.is_closed());
        if waiting.is_empty() && !self.saturated() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        waiting.push_back(tx);
        Some(rx)
    }

    /// Every connection the pool may open is open and in use.
    fn saturated(&self) -> bool {
        self.pool.num_idle() == 0 && self.pool.size() >= self.pool.options().get_max_connections()
    }

    fn waiting(&self) -> MutexGuard<'_, VecDeque<oneshot::Sender<Taken>>> {
        // Nothing panics while holding it; a poisoned queue is still a queue.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection in use. Dropped, it goes back to the pool (which pings it); [`Lease::done`]
/// hands it over instead when its statements ran to their end.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    handoff: &'a Handoff,
    taken: Taken,
}

impl Lease<'_> {
    /// Every statement run on this connection returned its answer: hands the connection to
    /// the request that has waited longest; back to the pool when nobody waits, when a
    /// transaction waits for the pool ([`Handoff::begin`]) or when it is out of the pool for
    /// [`CYCLE`].
    pub(crate) fn done(self) {
        let Self { handoff, mut taken } = self;
        if taken.at.elapsed() >= CYCLE || handoff.beginning.load(Ordering::Relaxed) > 0 {
            return;
        }
        loop {
            // One at a time: the lock is not held while sending.
            let Some(waiter) = handoff.waiting().pop_front() else {
                return;
            };
            match waiter.send(taken) {
                Ok(()) => return,
                Err(back) => taken = back,
            }
        }
    }
}

impl Deref for Lease<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.taken.conn
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.taken.conn
    }
}
