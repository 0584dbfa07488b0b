//! A simulated network for many routers in one process: libp2p's memory
//! transport with a one-way latency on every byte, for runs under tokio's
//! paused clock (the simulation in `sim/`), where time-outs fire on
//! simulated time rather than on how busy the machine is.
//!
//! Each side of a connection holds back what it receives until `one_way`
//! (plus up to `jitter`) after it arrived, keeping its order, so a request
//! and its answer take a round trip. Under a paused clock nothing arrives
//! while tasks are still runnable, so the arrival time is the send time.
//! The handshake is libp2p's plaintext exchange of public keys instead of
//! Noise (built with the `simulation` feature only): the simulation measures
//! routing, not cryptography, on two cores. Never use it outside a test.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::{AsyncRead, AsyncWrite, Future as _};
use tokio::time::{Instant, Sleep};

/// The most one read from the underlying connection takes.
const CHUNK: usize = 2 * 1024;

/// How long a byte takes from one simulated node to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// The least one-way delay.
    pub one_way: Duration,
    /// Up to this much more, drawn per arrival.
    pub jitter: Duration,
}

/// A connection whose reads lag behind its writer by the latency.
#[cfg_attr(not(feature = "simulation"), allow(dead_code))]
pub(crate) struct Laggy<S> {
    io: S,
    latency: Latency,
    /// What arrived, each with when it may be read and how much of it was read.
    arrived: VecDeque<(Instant, Vec<u8>, usize)>,
    /// When the other side closed, as seen here.
    eof: Option<Instant>,
    /// The last release time, so jitter never reorders.
    last: Instant,
    sleep: Pin<Box<Sleep>>,
    rng: u64,
}

#[cfg_attr(not(feature = "simulation"), allow(dead_code))]
impl<S> Laggy<S> {
    pub(crate) fn new(io: S, latency: Latency, seed: u64) -> Self {
        let now = Instant::now();
        Self {
            io,
            latency,
            arrived: VecDeque::new(),
            eof: None,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now)),
            rng: seed | 1,
        }
    }

    /// When something that arrives now may be read.
    fn release_time(&mut self) -> Instant {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter_ns = u64::try_from(self.latency.jitter.as_nanos()).unwrap_or(u64::MAX);
        let extra = if jitter_ns == 0 { 0 } else { self.rng % jitter_ns };
        let at = (Instant::now() + self.latency.one_way + Duration::from_nanos(extra)).max(self.last);
        self.last = at;
        at
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Laggy<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        // Small: most of what crosses is a frame of a few hundred bytes, and
        // each call ends with a read that finds nothing.
        let mut chunk = [0u8; CHUNK];
        while me.eof.is_none() {
            match Pin::new(&mut me.io).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(0)) => me.eof = Some(me.release_time()),
                Poll::Ready(Ok(n)) => {
                    let at = me.release_time();
                    me.arrived.push_back((at, chunk[..n].to_vec(), 0));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        let Some(due) = me.arrived.front().map(|(at, _, _)| *at).or(me.eof) else { return Poll::Pending };
        if due > Instant::now() {
            me.sleep.as_mut().reset(due);
            // Registers the waker for `due`; it cannot be ready yet.
            let _ = me.sleep.as_mut().poll(cx);
            return Poll::Pending;
        }
        let Some((_, data, read)) = me.arrived.front_mut() else { return Poll::Ready(Ok(0)) };
        let n = buf.len().min(data.len() - *read);
        buf[..n].copy_from_slice(&data[*read..*read + n]);
        *read += n;
        if *read == data.len() {
            me.arrived.pop_front();
        }
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Laggy<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures::{io::Cursor, AsyncReadExt as _};

    use super::*;

    /// What arrives is read one latency (plus at most the jitter) later, in order.
    #[tokio::test(start_paused = true)]
    async fn what_arrives_is_read_one_latency_later_in_order() {
        let latency = Latency { one_way: Duration::from_millis(5), jitter: Duration::from_millis(1) };
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut reader = Laggy::new(Cursor::new(sent.clone()), latency, 7);
        let start = Instant::now();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        let took = start.elapsed();
        assert_eq!(got, sent);
        assert!(took >= latency.one_way && took <= latency.one_way + latency.jitter, "{took:?}");
    }
}
