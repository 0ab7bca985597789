//! A connection of its own for a loop that runs one statement after another (the claim loop,
//! the completer). Taking a connection from the pool costs a liveness ping before each
//! statement, which on an idle machine takes as long as the statement itself; a loop that owns
//! its connection skips both, and reconnects after a failure instead.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

pub(super) struct DedicatedConnection {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
}

impl DedicatedConnection {
    /// Connects lazily, on the first [`get`](Self::get).
    pub(super) fn new(options: PgConnectOptions) -> Self {
        DedicatedConnection {
            options,
            conn: None,
        }
    }

    /// The connection, opened if there is none.
    pub(super) async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.options.connect().await?,
        };
        Ok(self.conn.insert(conn))
    }

    /// Forgets the connection after a failed statement: whether it broke or only the statement
    /// failed, a new one is cheaper to reason about, and failures are rare.
    pub(super) fn reset(&mut self) {
        self.conn = None;
    }

    /// Closes the connection politely (the server would otherwise log a lost client).
    pub(super) async fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}
