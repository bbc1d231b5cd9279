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
//! A request never waits on the pool itself: it joins the queue of waiting requests and waits
//! for a connection handed to it. Pumps, tasks of their own, take connections from the pool
//! on the queue's behalf and hand each to the request that has waited longest (or give it
//! back when nobody waits any more): never more pumps than waiting requests, nor than the
//! pool's connections. A request that stops waiting (cut) leaves its place; a pump is never
//! cut, so whatever the pool does in an acquire runs to its end: the ping of a connection
//! that rested (`store::pool`'s `before_acquire`), and the connect that replaces a lost
//! connection. An earlier version raced each request's own acquire against hand-offs, and
//! the hand-offs cut both (the pool's promises in `tests/pool_under_load.rs`). A failed
//! acquire (PostgreSQL refusing the login, the pool closed) fails the request that waited
//! longest, as its own acquire would have, if it waited when that acquire began; a request
//! gives up after the pool's acquire timeout, counted from when it came (a pump that timed
//! out, the pool held by others all that time, joins the pool's queue again, at its end). A request that
//! has waited [`RECHECK`] also adds a pump when a connection sits idle in the pool: the pumps
//! at work may be held up in a connect begun for a request that has gone.
//!
//! The store's transactions cannot take a connection handed over (sqlx begins its public
//! transactions on a connection of the pool's), so they wait in the pool's queue: while one
//! waits ([`Handoff::begin`]), no connection is handed over and each goes back to the pool,
//! which serves its waiters, pumps and transactions, in the order they came. A write behind a
//! steady load of reads waits for the reads that came before it, not for a connection's
//! [`CYCLE`].
//!
//! Nothing is held between requests: with nobody waiting, every connection is back in the
//! pool and no pump runs, so an idle server holds what the pool holds.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::oneshot;

/// How long a connection may pass from statement to statement before it goes back through
/// the pool when its statement ends: with that statement's time, the longest a user of the
/// pool outside hand-offs waits behind a steady load, a fraction of the readiness check's
/// timeout.
const CYCLE: Duration = Duration::from_millis(250);

/// How often a waiting request looks again whether it needs a pump more ([`Handoff::add_pump`]).
const RECHECK: Duration = Duration::from_millis(50);

/// The requests waiting for a connection, in the order they came, and the pumps serving them
/// from `pool`.
#[derive(Debug)]
pub(crate) struct Handoff {
    pool: PgPool,
    queue: Mutex<Queue>,
    /// Transactions waiting for the pool: while any does, nothing is handed over.
    beginning: AtomicUsize,
}

/// What a waiting request receives: a connection, or why the pool gave none.
type Handed = Result<Taken, sqlx::Error>;

/// A request waiting for a connection.
#[derive(Debug)]
struct Waiter {
    handed: oneshot::Sender<Handed>,
    since: Instant,
}

/// The waiting requests and the pumps at work.
#[derive(Debug, Default)]
struct Queue {
    /// Oldest first. A request that stopped waiting leaves a closed sender, dropped when it
    /// comes to the front (so that joining the queue costs the same however long it is).
    waiting: VecDeque<Waiter>,
    /// Pumps running ([`Running::pump`]).
    pumps: usize,
}

impl Queue {
    /// Hands `handed` to the request that has waited longest; gives it back when nobody
    /// waits. An error goes only to a request that waited since `since`, when the acquire
    /// that failed began: it is that acquire's answer, not a later request's.
    fn hand(&mut self, mut handed: Handed, since: Instant) -> Option<Handed> {
        while let Some(waiter) = self.waiting.pop_front() {
            if waiter.handed.is_closed() {
                continue;
            }
            if handed.is_err() && waiter.since > since {
                // The oldest came after: so did all the others.
                self.waiting.push_front(waiter);
                break;
            }
            // Its receiver may still be dropped meanwhile: then to the next.
            match waiter.handed.send(handed) {
                Ok(()) => return None,
                Err(back) => handed = back,
            }
        }
        Some(handed)
    }

    /// How many wait, at most: those that stopped waiting are counted until they come to
    /// the front.
    fn waiting(&mut self) -> usize {
        while self
            .waiting
            .front()
            .is_some_and(|waiter| waiter.handed.is_closed())
        {
            self.waiting.pop_front();
        }
        self.waiting.len()
    }
}

/// A connection and when it was taken from the pool.
#[derive(Debug)]
struct Taken {
    conn: PoolConnection<Postgres>,
    at: Instant,
}

impl Handoff {
    /// Hand-offs between the users of one store over `pool`.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queue: Mutex::new(Queue::default()),
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

    /// A connection, handed over by a statement that ran to its end or by a pump from the
    /// pool; `PoolTimedOut` after the pool's acquire timeout.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Lease<'_>, sqlx::Error> {
        let (tx, mut handed) = oneshot::channel();
        let since = Instant::now();
        self.queue().waiting.push_back(Waiter { handed: tx, since });
        let deadline = since + self.pool.options().get_acquire_timeout();
        self.add_pump(false);
        let handed = loop {
            let wake = deadline.min(Instant::now() + RECHECK);
            match tokio::time::timeout_at(wake.into(), &mut handed).await {
                Ok(Ok(handed)) => break handed?,
                // Senders are only dropped after a send, or with the queue, which `self` holds.
                Ok(Err(_)) => return Err(sqlx::Error::WorkerCrashed),
                Err(_) if wake >= deadline => return Err(sqlx::Error::PoolTimedOut),
                Err(_) => self.add_pump(true),
            }
        };
        Ok(Lease {
            handoff: self,
            taken: handed,
        })
    }

    /// Starts a pump when fewer run than requests wait (when a request joins, or after one
    /// ended by a panic), or, for a request that has waited [`RECHECK`] (`waited`), when a
    /// connection sits idle in the pool: the pumps at work may be held up in a connect begun
    /// for a request that has gone. Never more pumps than the pool's connections.
    fn add_pump(self: &Arc<Self>, waited: bool) {
        let running = {
            let mut queue = self.queue();
            let waiting = queue.waiting();
            let max = self.pool.options().get_max_connections() as usize;
            let wanted = queue.pumps < waiting || (waited && self.pool.num_idle() > 0);
            if !wanted || queue.pumps >= max {
                return;
            }
            queue.pumps += 1;
            Running {
                handoff: Arc::clone(self),
                counted: true,
            }
        };
        // Outside the lock: were the pump dropped unpolled (a runtime shutting down), its
        // `Running` would take the lock to count it out.
        tokio::spawn(running.pump());
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still a queue.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A pump at work, counted in [`Queue::pumps`]; counted out when it ends, however it ends
/// (a panic, or its task dropped unpolled by a runtime shutting down): it is then not counted
/// as serving the queue for good.
struct Running {
    handoff: Arc<Handoff>,
    /// Still counted: the pump has not counted itself out.
    counted: bool,
}

impl Running {
    /// Takes connections from the pool for the waiting requests, one at a time, until fewer
    /// wait than the other pumps serve.
    async fn pump(mut self) {
        let handoff = &self.handoff;
        loop {
            let since = Instant::now();
            let taken = handoff.pool.acquire().await.map(|conn| Taken {
                conn,
                at: Instant::now(),
            });
            let mut queue = handoff.queue();
            // The pool's timeout is each request's own (`acquire`), counted from when it
            // came: a pump's, counted from before, is no request's.
            let unclaimed = match taken {
                Err(sqlx::Error::PoolTimedOut) => None,
                taken => queue.hand(taken, since),
            };
            // Counted out under the same lock as the count it looks at: a request that
            // joins the queue meanwhile sees it gone and starts a pump of its own.
            let done = queue.waiting() < queue.pumps;
            if done {
                queue.pumps -= 1;
                self.counted = false;
            }
            drop(queue);
            // A connection nobody waits for goes back to the pool, outside the lock.
            drop(unclaimed);
            if done {
                return;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.counted {
            self.handoff.queue().pumps -= 1;
        }
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
    /// transaction waits for the pool ([`Handoff::begin`]), when it is out of the pool for
    /// [`CYCLE`] or when the pool is closed (shutting down: it waits for its connections).
    pub(crate) fn done(self) {
        let Self { handoff, taken } = self;
        if taken.at.elapsed() >= CYCLE
            || handoff.beginning.load(Ordering::Relaxed) > 0
            || handoff.pool.is_closed()
            || sqlx::Connection::is_in_transaction(&*taken.conn)
        {
            return;
        }
        let unclaimed = handoff.queue().hand(Ok(taken), Instant::now());
        drop(unclaimed);
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
