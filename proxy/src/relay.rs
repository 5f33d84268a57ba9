//! The data path: a bidirectional, half-close aware, byte-counting copy between a client
//! stream and an upstream stream, generic over any `AsyncRead + AsyncWrite` (TLS, TCP and
//! Unix streams alike).
//!
//! Memory is the design constraint. Each direction reads into one per-thread scratch buffer
//! and writes straight out of it within the same poll; only bytes the writer could not take
//! right away are copied into a buffer owned by the connection, freed again once drained.
//! So an idle or flowing connection owns no relay buffer at all; a connection whose reader
//! outpaces its writer owns at most one scratch-sized buffer per direction, and stops reading
//! until it drains (backpressure, never unbounded buffering).
//!
//! Half-close: EOF on one side becomes a write shutdown on the other (for a TLS client:
//! close_notify, then FIN) while the other direction keeps flowing until its own EOF.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes moved in each direction, whatever the outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub client_to_upstream: u64,
    pub upstream_to_client: u64,
    /// Which side ended its sending first (EOF or close_notify), if either did.
    pub first_close: Option<Side>,
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both directions reached EOF and were shut down in order.
    Done,
    /// Nothing moved in either direction for the idle timeout.
    IdleTimeout,
}

/// Which side of the proxy an I/O error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

/// A relay that ended on an I/O error, with the side that failed and the bytes moved.
#[derive(Debug, thiserror::Error)]
#[error("{} {op} failed: {source}", side.name())]
pub struct RelayError {
    pub side: Side,
    pub op: &'static str,
    pub stats: RelayStats,
    #[source]
    pub source: io::Error,
}

/// Copies both ways between `client` and `upstream` until both directions are done or the
/// connection is idle for `idle`. (Shutdown's grace period ends a relay by dropping it.)
pub async fn relay<C, U>(
    client: &mut C,
    upstream: &mut U,
    idle: Duration,
) -> Result<(Outcome, RelayStats), RelayError>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut r = Relay {
        client,
        upstream,
        to_upstream: Half::default(),
        to_client: Half::default(),
        idle,
        idle_timer: Box::pin(tokio::time::sleep(idle)),
        last_progress: Instant::now(),
        first_close: None,
    };
    std::future::poll_fn(|cx| r.poll_relay(cx))
        .await
        .map(|outcome| (outcome, r.stats()))
        .map_err(|(side, op, source)| RelayError {
            side,
            op,
            stats: r.stats(),
            source,
        })
}

struct Relay<'a, C: ?Sized, U: ?Sized> {
    client: &'a mut C,
    upstream: &'a mut U,
    to_upstream: Half,
    to_client: Half,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    last_progress: Instant,
    first_close: Option<Side>,
}

type HalfError = (Side, &'static str, io::Error);

impl<C, U> Relay<'_, C, U>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    fn poll_relay(&mut self, cx: &mut Context<'_>) -> Poll<Result<Outcome, HalfError>> {
        let before = self.to_upstream.bytes + self.to_client.bytes;
        let up = self.to_upstream.poll(
            cx,
            &mut *self.client,
            &mut *self.upstream,
            (Side::Client, Side::Upstream),
        )?;
        let down = self.to_client.poll(
            cx,
            &mut *self.upstream,
            &mut *self.client,
            (Side::Upstream, Side::Client),
        )?;
        if self.first_close.is_none() {
            if self.to_upstream.read_eof {
                self.first_close = Some(Side::Client);
            } else if self.to_client.read_eof {
                self.first_close = Some(Side::Upstream);
            }
        }
        if up.is_ready() && down.is_ready() {
            return Poll::Ready(Ok(Outcome::Done));
        }
        // The idle timer is re-armed lazily: progress only records a timestamp (cheap);
        // when the timer fires before the real deadline, it is pushed out to it.
        if self.to_upstream.bytes + self.to_client.bytes != before {
            self.last_progress = Instant::now();
        }
        loop {
            ready!(self.idle_timer.as_mut().poll(cx));
            let deadline = self.last_progress + self.idle;
            if Instant::now() >= deadline {
                return Poll::Ready(Ok(Outcome::IdleTimeout));
            }
            self.idle_timer.as_mut().reset(deadline);
        }
    }

    fn stats(&self) -> RelayStats {
        RelayStats {
            client_to_upstream: self.to_upstream.bytes,
            upstream_to_client: self.to_client.bytes,
            first_close: self.first_close,
        }
    }
}

/// One direction of the copy.
#[derive(Default)]
struct Half {
    /// Bytes read but not yet accepted by the writer; empty (and unallocated) normally.
    pending: Vec<u8>,
    pending_pos: usize,
    /// The writer took bytes that may still sit in its own buffer (TLS records).
    need_flush: bool,
    read_eof: bool,
    done: bool,
    bytes: u64,
}

impl Half {
    /// Ready(Ok) once EOF was read, everything written and the writer shut down.
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        (rside, wside): (Side, Side),
    ) -> Poll<Result<(), HalfError>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            // 1. Drain what the writer could not take earlier.
            while self.pending_pos < self.pending.len() {
                let n = ready!(
                    Pin::new(&mut *writer).poll_write(cx, &self.pending[self.pending_pos..])
                )
                .map_err(|e| (wside, "write", e))?;
                if n == 0 {
                    return Poll::Ready(Err((wside, "write", io::ErrorKind::WriteZero.into())));
                }
                self.pending_pos += n;
                self.bytes += n as u64;
                self.need_flush = true;
            }
            if !self.pending.is_empty() {
                // Drained: give the memory back.
                self.pending = Vec::new();
                self.pending_pos = 0;
            }

            // 2. Reader finished: flush, then pass the half-close on.
            if self.read_eof {
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))
                    .map_err(|e| (wside, "shutdown", e))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }

            // 3. Read into the scratch buffer and write straight out of it.
            let step = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                    Poll::Pending => Ok(Step::ReadPending),
                    Poll::Ready(Err(e)) if is_eof(&e) => Ok(Step::Eof),
                    Poll::Ready(Err(e)) => Err((rside, "read", e)),
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => Ok(Step::Eof),
                    Poll::Ready(Ok(())) => {
                        let data = buf.filled();
                        let mut written = 0;
                        while written < data.len() {
                            match Pin::new(&mut *writer).poll_write(cx, &data[written..]) {
                                Poll::Ready(Ok(0)) => {
                                    return Err((wside, "write", io::ErrorKind::WriteZero.into()))
                                }
                                Poll::Ready(Ok(n)) => written += n,
                                Poll::Ready(Err(e)) => return Err((wside, "write", e)),
                                Poll::Pending => break,
                            }
                        }
                        self.bytes += written as u64;
                        self.need_flush |= written > 0;
                        if written < data.len() {
                            self.pending.extend_from_slice(&data[written..]);
                        }
                        Ok(Step::Moved)
                    }
                }
            })?;
            match step {
                Step::Moved => continue,
                Step::Eof => {
                    self.read_eof = true;
                    continue;
                }
                Step::ReadPending => {
                    // Nothing more to read now: push out whatever the writer buffered.
                    if self.need_flush {
                        ready!(Pin::new(&mut *writer).poll_flush(cx))
                            .map_err(|e| (wside, "write", e))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

enum Step {
    Moved,
    Eof,
    ReadPending,
}

/// A peer that closes TCP without TLS close_notify (wrk, many HTTP clients) ends its
/// direction like a clean EOF; nothing of its data is lost by treating it so.
fn is_eof(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
}

/// Size of the per-thread read buffer: one full TLS record (16 KiB of plaintext) and more,
/// so large transfers move in few syscalls.
pub const RELAY_BUF_BYTES: usize = 64 * 1024;

thread_local! {
    // Initialised once per thread, so reads never pay to zero it.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; RELAY_BUF_BYTES].into_boxed_slice());
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn carries_both_directions_and_half_close() {
        for size in [0, 1, 16 * 1024 - 1, 16 * 1024 + 1, 3 * 1024 * 1024] {
            let (mut client, mut proxy_client) = tokio::io::duplex(8 * 1024);
            let (mut proxy_up, mut upstream) = tokio::io::duplex(8 * 1024);
            let relay = tokio::spawn(async move {
                relay(&mut proxy_client, &mut proxy_up, Duration::from_secs(30)).await
            });
            let up_data = pattern(size);
            let down_data: Vec<u8> = pattern(size).into_iter().rev().collect();
            // Upstream: read everything to EOF, then answer and close.
            let down = down_data.clone();
            let up = tokio::spawn(async move {
                let mut got = Vec::new();
                upstream.read_to_end(&mut got).await.unwrap();
                upstream.write_all(&down).await.unwrap();
                upstream.shutdown().await.unwrap();
                got
            });
            let (mut rd, mut wr) = tokio::io::split(&mut client);
            let send = up_data.clone();
            let writer = async move {
                wr.write_all(&send).await.unwrap();
                wr.shutdown().await.unwrap();
            };
            let reader = async move {
                let mut got = Vec::new();
                rd.read_to_end(&mut got).await.unwrap();
                got
            };
            let ((), got_down) = tokio::join!(writer, reader);
            assert_eq!(up.await.unwrap(), up_data, "size {size}");
            assert_eq!(got_down, down_data, "size {size}");
            let (outcome, stats) = relay.await.unwrap().unwrap();
            assert_eq!(outcome, Outcome::Done);
            assert_eq!(stats.client_to_upstream, size as u64);
            assert_eq!(stats.upstream_to_client, size as u64);
        }
    }

    // Real time, a short timeout: tokio's paused clock (`test-util`) would put that feature
    // into the release binaries too, since the workspace builds one feature set.
    #[tokio::test]
    async fn idle_connection_times_out() {
        let (_client, mut proxy_client) = tokio::io::duplex(1024);
        let (mut proxy_up, _upstream) = tokio::io::duplex(1024);
        let (outcome, _) = relay(&mut proxy_client, &mut proxy_up, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::IdleTimeout);
    }
}
