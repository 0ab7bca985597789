//! A connection of its own for a loop that runs one statement after another (the claim loop,
//! the completer, the lease heartbeat, the rescuer). Taking a connection from the pool costs a
//! liveness ping, one more round trip, before each statement, and waits behind API requests
//! when the pool is busy; a loop that owns its connection skips both, and reconnects after a
//! failure instead. It also knows since when it has been connected, which the rescuer needs.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// Longest wait for a new connection, as for one from the pool: a server that does not answer
/// must not hold up the loop (or the worker's shutdown) for the minutes a TCP connect can take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a statement, connecting included. The server's statement timeout does not
/// help when the network stops answering (a partition): without this, a loop would wait for
/// TCP to give up, minutes, and hold up the worker's shutdown meanwhile.
const PATIENCE: Duration = Duration::from_secs(15);

pub(super) struct DedicatedConnection {
    options: PgConnectOptions,
    conn: Option<(PgConnection, Instant)>,
}

impl DedicatedConnection {
    /// A connection with the pool's options, opened on the first [`run`](Self::run).
    pub(super) fn for_pool(pool: &sqlx::PgPool) -> Self {
        Self::new(pool.connect_options().as_ref().clone())
    }

    /// Connects lazily, on the first [`run`](Self::run).
    pub(super) fn new(options: PgConnectOptions) -> Self {
        DedicatedConnection {
            options,
            conn: None,
        }
    }

    /// Runs `statement` on the connection, opened first if there is none, giving up after
    /// [`PATIENCE`]. After a failure the connection is dropped, so the next call starts on a new
    /// one: whether it broke or only the statement failed, a new one is cheaper to reason about,
    /// and failures are rare.
    pub(super) async fn run<T>(
        &mut self,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        self.run_within(PATIENCE, statement).await
    }

    async fn run_unbounded<T>(
        &mut self,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let outcome = match self.get().await {
            Ok(conn) => statement(conn).await,
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            self.conn = None;
        }
        outcome
    }

    /// [`run`](Self::run), given up after `limit` (connecting included): a partitioned network
    /// answers nothing, and the caller must not wait for TCP to notice. The connection is
    /// dropped then too, as its state is unknown.
    pub(super) async fn run_within<T>(
        &mut self,
        limit: Duration,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        match tokio::time::timeout(limit, self.run_unbounded(statement)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.conn = None;
                Err(timed_out(format!(
                    "no answer from the database within {limit:?}"
                )))
            }
        }
    }

    /// When the current connection was opened; `None` while there is none.
    pub(super) fn connected_since(&self) -> Option<Instant> {
        self.conn.as_ref().map(|(_, since)| *since)
    }

    async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => (self.connect().await?, Instant::now()),
        };
        Ok(&mut self.conn.insert(conn).0)
    }

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.options.connect()).await {
            Ok(connected) => connected,
            Err(_) => Err(timed_out(format!(
                "no connection to the database within {CONNECT_TIMEOUT:?}"
            ))),
        }
    }

    /// Closes the connection politely (the server would otherwise log a lost client).
    pub(super) async fn close(mut self) {
        if let Some((conn, _)) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

fn timed_out(message: String) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
}
