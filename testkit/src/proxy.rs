//! A TCP proxy in front of the test database, for network faults that a real PostgreSQL cannot
//! be asked to produce: a partition (bytes stop flowing both ways, nothing is refused, as when
//! packets are dropped), a lost answer (the request reaches the server, the connection is cut
//! before the answer comes back), and connections refused while the server runs on.
//!
//! Only the processes pointed at the proxy see the fault; everything else (the test's own pool,
//! other workers) still reaches the database directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; it stops accepting when dropped (open connections end with the test).
pub struct FaultyProxy {
    port: u16,
    faults: Arc<Faults>,
    accepting: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Faults {
    partitioned: AtomicBool,
    cut_after_request: AtomicBool,
    down: AtomicBool,
}

/// How long the proxy lets the server work on a request before it cuts the connection, so that
/// the statement commits and only its answer is lost.
const SERVER_WORK: Duration = Duration::from_millis(300);

impl FaultyProxy {
    /// Listens on an ephemeral loopback port and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds a port");
        let port = listener.local_addr().expect("proxy address").port();
        let faults = Arc::new(Faults::default());
        let target = target.to_owned();
        let shared = faults.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, target.clone(), shared.clone()));
            }
        });
        FaultyProxy {
            port,
            faults,
            accepting,
        }
    }

    /// `url` (a `postgres://` URL) with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        through_local_port(url, self.port)
    }

    /// While set, no byte crosses in either direction and new connections hang unanswered.
    pub fn partition(&self, on: bool) {
        self.faults.partitioned.store(on, Ordering::SeqCst);
    }

    /// While set, the database looks down to the clients behind the proxy: their connections
    /// are closed, and new ones closed as soon as they are made.
    pub fn down(&self, on: bool) {
        self.faults.down.store(on, Ordering::SeqCst);
    }

    /// From now on the database looks stopped to the clients behind the proxy, as when it
    /// crashes or a firewall rejects its port: their connections are closed and new ones
    /// refused, as nothing listens on the port any more. There is no way back.
    pub fn refuse(&self) {
        self.faults.down.store(true, Ordering::SeqCst);
        self.accepting.abort();
    }

    /// While set, every request a client sends is delivered, and then the connection is cut
    /// before the server's answer gets back.
    pub fn cut_after_request(&self, on: bool) {
        self.faults.cut_after_request.store(on, Ordering::SeqCst);
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// The `host:port` of a `postgres://` URL.
/// `url` (a `postgres://` URL) with its host and port replaced by 127.0.0.1:`port`.
pub(crate) fn through_local_port(url: &str, port: u16) -> String {
    let mut parsed = reqwest::Url::parse(url).expect("a valid database URL");
    parsed.set_host(Some("127.0.0.1")).expect("host settable");
    parsed.set_port(Some(port)).expect("port settable");
    parsed.to_string()
}

pub fn address_of(url: &str) -> String {
    let parsed = reqwest::Url::parse(url).expect("a valid database URL");
    format!(
        "{}:{}",
        parsed.host_str().expect("URL has a host"),
        parsed.port().unwrap_or(5432)
    )
}

async fn forward(client: TcpStream, target: String, faults: Arc<Faults>) {
    if faults.down.load(Ordering::SeqCst) {
        return;
    }
    let Ok(server) = TcpStream::connect(&target).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let upstream = pump(
        client_read,
        server_write,
        Direction::ToServer,
        &faults,
        &cut,
    );
    let downstream = pump(
        server_read,
        client_write,
        Direction::ToClient,
        &faults,
        &cut,
    );
    // Either direction ending ends the connection, as does the database going down: both
    // halves are dropped here.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = wait_until_down(&faults) => {}
    }
}

async fn wait_until_down(faults: &Faults) {
    while !faults.down.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Which way a [`pump`] carries bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// Copies bytes one way until either side closes, holding them while partitioned. Going to the
/// server with `cut_after_request` set, it delivers the request, marks the connection `cut` and
/// ends after [`SERVER_WORK`]; going to the client, it swallows whatever comes once `cut`.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    faults: &Faults,
    cut: &AtomicBool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        wait_while_partitioned(faults).await;
        if direction == Direction::ToClient && cut.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
        if direction == Direction::ToServer && faults.cut_after_request.load(Ordering::SeqCst) {
            cut.store(true, Ordering::SeqCst);
            tokio::time::sleep(SERVER_WORK).await;
            return;
        }
    }
}

async fn wait_while_partitioned(faults: &Faults) {
    while faults.partitioned.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
