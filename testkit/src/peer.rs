//! A peer that answers any HTTP request with a fixed body, written by hand on a raw socket so
//! that it can do what a well-behaved server framework will not: send bytes that are not text,
//! or a body that never ends.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the peer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// `body` once, then the connection closes.
    Once,
    /// `body` again and again, for as long as the client reads.
    Never,
}

/// Serves `200 OK` with `body` (close-delimited) on an ephemeral loopback port; returns
/// `http://127.0.0.1:{port}/`. Runs until the test's runtime ends.
pub async fn answering_peer(body: &'static [u8], end: BodyEnd) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("peer binds a port");
    let url = format!("http://{}/", listener.local_addr().expect("peer address"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                while stream.write_all(body).await.is_ok() && end == BodyEnd::Never {}
            });
        }
    });
    url
}
