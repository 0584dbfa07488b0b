//! `futures_timer::Delay` on tokio's clock: what libp2p uses of the
//! `futures-timer` crate (`Delay::new`, `Delay::reset`, awaiting it), so
//! that under `tokio::time::pause` every libp2p time-out fires on simulated
//! time. Must be used inside a tokio runtime, as everything in the
//! simulation is.

#![forbid(unsafe_code)]

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

/// A future that completes once its duration has passed on tokio's clock.
pub struct Delay(Pin<Box<tokio::time::Sleep>>);

impl Delay {
    /// Completes `dur` from now.
    pub fn new(dur: Duration) -> Delay {
        Delay(Box::pin(tokio::time::sleep(dur)))
    }

    /// Completes `dur` from now instead.
    pub fn reset(&mut self, dur: Duration) {
        self.0.as_mut().reset(tokio::time::Instant::now() + dur);
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Delay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delay").field("deadline", &self.0.deadline()).finish()
    }
}
