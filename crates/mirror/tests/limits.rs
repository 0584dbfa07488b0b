//! The accept loop under abuse: connections past the limits are answered at
//! once (503 with Retry-After) instead of waiting in the backlog, one address
//! cannot take every slot, and slots come back when connections close.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerpull_mirror::{stream, text};
use peerpull_mirror::{Limits, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

async fn serve(limits: Limits) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let handler = |_request| async { text(http::StatusCode::OK, "ok\n") };
    tokio::spawn(Server::new(limits).serve(listener, handler, stop.clone()));
    (addr, stop)
}

/// Connects from `from` (a loopback address) to `addr`.
async fn connect(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends `GET /` from `from` and returns the status line and how long the answer took.
async fn get(from: &str, addr: SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = connect(from, addr).await;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: mirror\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    (text, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_a_request_is_answered_at_once() {
    let limits = Limits { max_connections: 8, max_connections_per_ip: 8, ..Limits::default() };
    let (addr, _stop) = serve(limits).await;
    // A flood of idle connections takes every slot (and more wait behind them).
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(connect("127.0.0.1", addr).await);
    }
    let (answer, took) = get("127.0.0.1", addr).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("TOOMANYREQUESTS"), "{answer}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    // The flood goes away: requests are served again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (answer, _) = get("127.0.0.1", addr).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "not served again: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_slot() {
    let limits = Limits { max_connections: 64, max_connections_per_ip: 4, ..Limits::default() };
    let (addr, _stop) = serve(limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect("127.0.0.1", addr).await);
    }
    let (answer, _) = get("127.0.0.1", addr).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let (answer, _) = get("127.0.0.2", addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "another address is served: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_no_headers_is_let_go() {
    let limits = Limits { header_timeout: Duration::from_millis(300), ..Limits::default() };
    let (addr, _stop) = serve(limits).await;
    let mut idle = connect("127.0.0.1", addr).await;
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await.unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)), "the server kept a silent connection open: {closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Set when the response body is dropped: the connection is gone.
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let handler = move |_request| {
        let guard = Dropped(flag.clone());
        async move {
            // An endless body: the client's buffers fill, then the window closes.
            let chunks = futures::stream::repeat_with(move || {
                let _held = &guard;
                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 64 * 1024]))
            });
            http::Response::new(stream(chunks))
        }
    };
    let limits = Limits { send_timeout: Duration::from_secs(1), ..Limits::default() };
    tokio::spawn(Server::new(limits).serve(listener, handler, stop.clone()));

    let mut stream = connect("127.0.0.1", addr).await;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: mirror\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    // Read nothing more; the server gives up on this client.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dropped.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "a client that reads nothing was kept for 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stream);
}
