//! A TCP relay to Redis or PostgreSQL that tests can turn into a black
//! hole (a service cut off without its connections closing) or cut (as if
//! the server stopped: connections closed, new ones refused).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay that can stop answering without closing anything (a black
/// hole), as a hung server or a partitioned network does, or stop as a
/// server does.
pub struct TcpRelay {
    /// Where clients connect instead of the server.
    pub addr: SocketAddr,
    black_hole: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl TcpRelay {
    /// Relays to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let black_hole = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (hole, refuse, tasks) = (black_hole.clone(), cut.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    // Closed at once, as a port nobody listens on would be.
                    drop(client);
                    continue;
                }
                let hole = hole.clone();
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream.as_str()).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, hole.clone()),
                        pump(server_read, client_write, hole),
                    );
                });
                if let Ok(mut tasks) = tasks.lock() {
                    tasks.push(task);
                }
            }
        });
        Ok(Self {
            addr,
            black_hole,
            cut,
            connections,
            accept,
        })
    }

    /// Bytes are read and dropped from now on; connections stay open.
    pub fn black_hole(&self) {
        self.black_hole.store(true, Ordering::SeqCst);
    }

    /// Closes every connection and refuses new ones, as a stopped server.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.close_all();
    }

    /// Closes every connection (their streams lost bytes) and relays again.
    pub fn restore(&self) {
        self.close_all();
        self.black_hole.store(false, Ordering::SeqCst);
        self.cut.store(false, Ordering::SeqCst);
    }

    fn close_all(&self) {
        if let Ok(mut tasks) = self.connections.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.accept.abort();
        self.restore();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    black_hole: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        if black_hole.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
