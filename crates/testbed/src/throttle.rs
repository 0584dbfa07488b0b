//! A slow road to a real service: a TCP relay on 127.0.0.1 that passes what
//! the service sends back at a fixed rate per connection.
//!
//! Scenarios that need a download to be under way for a while (to stop a
//! node in the middle of it) put a [`Throttle`] in front of the real
//! registry; the registry itself is untouched and still counts every
//! request in its access log. Dropping the throttle stops accepting and
//! cuts every relayed connection.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The most bytes relayed between two pauses.
const SLICE: usize = 16 * 1024;

/// A rate-limited relay to a service.
#[derive(Debug)]
pub struct Throttle {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Throttle {
    /// Relays connections to `target`, sending its answers back at `rate` bytes per second each.
    pub async fn start(target: SocketAddr, rate: u64) -> Result<Self, Error> {
        let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .await
            .map_err(Error::io("binding the throttle"))?;
        let addr = listener.local_addr().map_err(Error::io("reading the throttle's address"))?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => return,
                    },
                };
                tokio::spawn(relay(client, target, rate.max(1), token.clone()));
            }
        });
        Ok(Self { addr, stop })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` of the relay, as image references name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Its base URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn relay(client: TcpStream, target: SocketAddr, rate: u64, stop: CancellationToken) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; SLICE];
        let started = tokio::time::Instant::now();
        let mut sent = 0u64;
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            sent += n as u64;
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        () = stop.cancelled() => {}
        _ = futures::future::join(up, down) => {}
    }
}
