//! A TCP proxy in front of a test's Redis that can cut every connection (a network
//! partition) or silently drop what the server sends on subscribed connections (a NAT that
//! forgot an idle flow).
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PASS: u8 = 0;
const CUT: u8 = 1;
const SILENT: u8 = 2;

pub struct Proxy {
    mode: Arc<AtomicU8>,
    /// Bumped to end every open connection.
    kill: watch::Sender<u64>,
    port: u16,
}

impl Proxy {
    pub async fn start(target: &str) -> Self {
        let target: u16 = target.rsplit(':').next().unwrap().parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(PASS));
        let (kill, _) = watch::channel(0);
        let proxy = Self {
            mode: mode.clone(),
            kill: kill.clone(),
            port,
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if mode.load(Ordering::SeqCst) == CUT {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, mode.clone(), kill.subscribe()));
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Refuses new connections and ends the open ones.
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        self.kill.send_modify(|generation| *generation += 1);
    }

    /// Drops, from now on, whatever the server sends on a subscribed connection.
    pub fn silence_subscriptions(&self) {
        self.mode.store(SILENT, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.mode.store(PASS, Ordering::SeqCst);
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    mode: Arc<AtomicU8>,
    mut killed: watch::Receiver<u64>,
) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let subscribed = Arc::new(AtomicBool::new(false));
    let marks = subscribed.clone();
    let up = async move {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
            if buf[..n]
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                marks.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
            if mode.load(Ordering::SeqCst) == SILENT && subscribed.load(Ordering::SeqCst) {
                continue;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = killed.changed() => {}
    }
}
