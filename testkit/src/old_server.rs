//! A PostgreSQL that says it is another version: a proxy in front of the test server that
//! rewrites the `server_version` the server reports when a session starts, which is what a
//! client reads the version from. It lets a test meet a server older than the services support
//! without installing one.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The request codes of SSLRequest and GSSENCRequest, which the proxy declines itself so that
/// the session stays readable.
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

/// A running proxy; it stops accepting when dropped.
pub struct OldServer {
    port: u16,
    accepting: tokio::task::JoinHandle<()>,
}

impl OldServer {
    /// Listens on an ephemeral loopback port and forwards to `target` (`host:port`), reporting
    /// `server_version` (e.g. "13.11") instead of the server's own.
    pub async fn start(target: &str, server_version: &str) -> OldServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds a port");
        let port = listener.local_addr().expect("proxy address").port();
        let target = target.to_owned();
        let version = server_version.to_owned();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, version) = (target.clone(), version.clone());
                tokio::spawn(async move {
                    let _ = serve(client, &target, &version).await;
                });
            }
        });
        OldServer { port, accepting }
    }

    /// `url` (a `postgres://` URL) with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        crate::proxy::through_local_port(url, self.port)
    }
}

impl Drop for OldServer {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn serve(mut client: TcpStream, target: &str, version: &str) -> std::io::Result<()> {
    let mut server = TcpStream::connect(target).await?;
    // The startup packet (no type byte), after any number of declined encryption requests.
    loop {
        let mut head = [0u8; 8];
        client.read_exact(&mut head).await?;
        let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if length == 8 && ENCRYPTION_REQUESTS.contains(&code) {
            client.write_all(b"N").await?;
            continue;
        }
        let mut rest = vec![0u8; length.saturating_sub(8)];
        client.read_exact(&mut rest).await?;
        server.write_all(&head).await?;
        server.write_all(&rest).await?;
        break;
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    // Every message the server sends: a type byte, a length that counts itself, a body.
    let result = async {
        loop {
            let kind = server_read.read_u8().await?;
            let length = server_read.read_u32().await? as usize;
            let mut body = vec![0u8; length.saturating_sub(4)];
            server_read.read_exact(&mut body).await?;
            if kind == b'S' && body.starts_with(b"server_version\0") {
                body = [b"server_version\0", version.as_bytes(), b"\0"].concat();
            }
            client_write.write_u8(kind).await?;
            client_write.write_u32(body.len() as u32 + 4).await?;
            client_write.write_all(&body).await?;
        }
    }
    .await;
    upstream.abort();
    result
}
