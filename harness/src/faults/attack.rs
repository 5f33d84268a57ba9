//! The attackers: bounded, self-stopping misbehaviour against one `127.0.0.1` address, run
//! as tokio tasks on the suite's runtime (pinned to the client CPUs). Each returns what it
//! saw per connection, so the scenario can say how many the proxy closed and when.

use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::client::{request_head, reset_on_drop, wait_close, within, Closed, ProbeClient};
use super::hello::{self, Rng};

/// What happened to one attacking connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The TCP connect succeeded.
    pub connected: bool,
    /// How the proxy ended it (or `Open`: it did not, within the watch).
    pub closed: Closed,
    /// From connect to the close (or to the end of the watch).
    pub after: Duration,
}

impl Outcome {
    fn refused(after: Duration) -> Outcome {
        Outcome {
            connected: false,
            closed: Closed::Open,
            after,
        }
    }
}

/// Totals over a set of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub attempted: u64,
    pub connected: u64,
    pub closed: u64,
    pub still_open: u64,
    /// Shortest and longest connect-to-close time of the closed ones.
    pub first_close: Option<Duration>,
    pub last_close: Option<Duration>,
}

impl Tally {
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Tally {
        let mut t = Tally::default();
        for o in outcomes {
            t.attempted += 1;
            if !o.connected {
                continue;
            }
            t.connected += 1;
            if o.closed.is_closed() {
                t.closed += 1;
                t.first_close = Some(t.first_close.map_or(o.after, |f| f.min(o.after)));
                t.last_close = Some(t.last_close.map_or(o.after, |l| l.max(o.after)));
            } else {
                t.still_open += 1;
            }
        }
        t
    }

    /// `1.98-2.41 s` (connect to close), or `-`.
    pub fn close_span(&self) -> String {
        match (self.first_close, self.last_close) {
            (Some(a), Some(b)) => format!("{:.2}-{:.2} s", a.as_secs_f64(), b.as_secs_f64()),
            _ => "-".into(),
        }
    }
}

/// Scenario 1: `n` connections opened evenly over `spread`; even ones send nothing, odd
/// ones drip a ClientHello one byte a second. Each is watched for `watch` after connecting.
/// Also returns how far behind its planned time the latest connection started: attackers
/// at `SCHED_IDLE` on a busy CPU would attack late, and the row says so.
pub async fn slowloris(
    addr: SocketAddr,
    n: usize,
    spread: Duration,
    watch: Duration,
    seed: u64,
) -> (Vec<Outcome>, Duration) {
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        let start_at = started + spread.mul_f64(i as f64 / n.max(1) as f64);
        let mut rng = Rng::new(seed ^ i as u64);
        tasks.spawn(async move {
            tokio::time::sleep_until(start_at.into()).await;
            let connected = Instant::now();
            let late = connected.saturating_duration_since(start_at);
            let Ok(tcp) = within(CONNECT_LIMIT, TcpStream::connect(addr)).await else {
                return (Outcome::refused(connected.elapsed()), late);
            };
            let (mut rd, mut wr) = tcp.into_split();
            let (closed, _) = if i % 2 == 0 {
                wait_close(&mut rd, watch).await
            } else {
                let bytes = hello::client_hello(&mut rng);
                let drip = async move {
                    for b in bytes {
                        if wr.write_all(&[b]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(DRIP_EVERY).await;
                    }
                    pending::<()>().await
                };
                tokio::select! {
                    seen = wait_close(&mut rd, watch) => seen,
                    () = drip => unreachable!("the drip never ends by itself"),
                }
            };
            let outcome = Outcome {
                connected: true,
                closed,
                after: connected.elapsed(),
            };
            (outcome, late)
        });
    }
    let done = collect(tasks).await;
    let latest = done.iter().map(|(_, late)| *late).max().unwrap_or_default();
    (done.into_iter().map(|(o, _)| o).collect(), latest)
}

/// The kinds of garbage of scenario 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// 1 to 2048 random bytes.
    RandomBytes,
    /// A prefix of a ClientHello, then FIN or silence.
    TruncatedHello,
    /// A valid ClientHello, the proxy's answer, then junk records.
    HelloThenJunk,
    /// A record header announcing 65535 bytes, first or after the ClientHello.
    OversizedRecord,
    /// Alerts where none belongs: before the hello, after it, malformed.
    Alert,
}

impl Garbage {
    pub const ALL: [Garbage; 5] = [
        Garbage::RandomBytes,
        Garbage::TruncatedHello,
        Garbage::HelloThenJunk,
        Garbage::OversizedRecord,
        Garbage::Alert,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Garbage::RandomBytes => "random",
            Garbage::TruncatedHello => "truncated-hello",
            Garbage::HelloThenJunk => "hello+junk",
            Garbage::OversizedRecord => "oversized-record",
            Garbage::Alert => "alert",
        }
    }
}

/// Scenario 2: `n` connections, the kinds in turn, at most `concurrency` at once; each is
/// watched for `watch` after its bytes went out.
pub async fn garbage(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    watch: Duration,
    seed: u64,
) -> Vec<(Garbage, Outcome)> {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let kind = Garbage::ALL[i % Garbage::ALL.len()];
        let variant = i / Garbage::ALL.len();
        let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        tasks.spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            let Ok(mut tcp) = within(CONNECT_LIMIT, TcpStream::connect(addr)).await else {
                return (kind, Outcome::refused(started.elapsed()));
            };
            let closed = match send_garbage(&mut tcp, kind, variant, &mut rng).await {
                // A write the proxy refused by closing is a close by the proxy.
                Err(_) => Closed::Abrupt,
                Ok(()) => wait_close(&mut tcp, watch).await.0,
            };
            // The proxy closed first (no TIME_WAIT here); a still-open one is reset.
            reset_on_drop(&tcp);
            let outcome = Outcome {
                connected: true,
                closed,
                after: started.elapsed(),
            };
            (kind, outcome)
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        if let Ok(o) = done {
            out.push(o);
        }
    }
    out
}

async fn send_garbage(
    tcp: &mut TcpStream,
    kind: Garbage,
    variant: usize,
    rng: &mut Rng,
) -> io::Result<()> {
    let hello = hello::client_hello(rng);
    match kind {
        Garbage::RandomBytes => {
            let len = 1 + rng.below(2048) as usize;
            tcp.write_all(&rng.bytes(len)).await?;
        }
        Garbage::TruncatedHello => {
            let cut = 1 + rng.below(hello.len() as u64 - 1) as usize;
            tcp.write_all(&hello[..cut]).await?;
            if variant.is_multiple_of(2) {
                tcp.shutdown().await?;
            }
        }
        Garbage::HelloThenJunk => {
            tcp.write_all(&hello).await?;
            server_answered(tcp).await?;
            let junk = match variant % 3 {
                0 => hello::junk_records(rng, hello::APPLICATION_DATA, 3),
                1 => hello::junk_records(rng, hello::HANDSHAKE, 3),
                _ => {
                    let mut j = hello::record(hello::CHANGE_CIPHER_SPEC, &[1]);
                    j.extend(hello::junk_records(rng, hello::APPLICATION_DATA, 2));
                    j
                }
            };
            tcp.write_all(&junk).await?;
        }
        Garbage::OversizedRecord => {
            let mut bytes = Vec::new();
            let content_type = if variant.is_multiple_of(2) {
                hello::HANDSHAKE
            } else {
                tcp.write_all(&hello).await?;
                server_answered(tcp).await?;
                hello::APPLICATION_DATA
            };
            bytes.extend_from_slice(&hello::record_header(content_type, u16::MAX));
            bytes.extend(rng.bytes(OVERSIZED_SENT_BYTES));
            tcp.write_all(&bytes).await?;
        }
        Garbage::Alert => match variant % 4 {
            0 => {
                tcp.write_all(&hello::alert(hello::FATAL, hello::HANDSHAKE_FAILURE))
                    .await?
            }
            1 => {
                tcp.write_all(&hello::alert(hello::WARNING, hello::CLOSE_NOTIFY))
                    .await?
            }
            2 => {
                tcp.write_all(&hello).await?;
                server_answered(tcp).await?;
                tcp.write_all(&hello::alert(hello::FATAL, hello::HANDSHAKE_FAILURE))
                    .await?;
            }
            _ => {
                // An alert record one byte long: malformed.
                tcp.write_all(&hello).await?;
                tcp.write_all(&hello::record(hello::ALERT, &[2])).await?;
            }
        },
    }
    Ok(())
}

/// Waits until the proxy's first answer bytes arrive (its ServerHello), so the next bytes
/// land mid-handshake rather than in the same read.
async fn server_answered(tcp: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let n = within(ANSWER_LIMIT, tcp.read(&mut buf)).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before answering the ClientHello",
        ));
    }
    Ok(())
}

/// Scenario 3: `n` silent connections at once, held until `hold` after the start; returns
/// what each saw by then. All of them close (FIN) when this returns: the flood stops.
pub async fn flood(addr: SocketAddr, n: usize, hold: Duration) -> Vec<Outcome> {
    let until = Instant::now() + hold;
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        tasks.spawn(async move {
            let started = Instant::now();
            let Ok(mut tcp) = within(CONNECT_LIMIT, TcpStream::connect(addr)).await else {
                return Outcome::refused(started.elapsed());
            };
            let left = until.saturating_duration_since(Instant::now());
            let (closed, _) = wait_close(&mut tcp, left).await;
            Outcome {
                connected: true,
                closed,
                after: started.elapsed(),
            }
        });
    }
    collect(tasks).await
}

/// Where scenario 8's client resets its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Mid-handshake: after the ClientHello and the proxy's answer.
    Handshake,
    /// Mid-upload: a quarter of a 1 MiB request body sent.
    Upload,
    /// Mid-download: 64 KiB of a 1 MiB echo read, the rest unread.
    Download,
}

impl Reset {
    pub const ALL: [Reset; 3] = [Reset::Handshake, Reset::Upload, Reset::Download];
}

/// Scenario 8: `n` connections, the kinds in turn, `concurrency` at once, each ended by
/// RST (SO_LINGER 0). Returns how many reached the point of the reset.
pub async fn resets(
    client: ProbeClient,
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    seed: u64,
) -> (usize, Vec<String>) {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let kind = Reset::ALL[i % Reset::ALL.len()];
        let client = client.clone();
        let mut rng = Rng::new(seed ^ i as u64);
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        tasks.spawn(async move {
            let _slot = slot;
            within(RESET_LIMIT, reset_one(&client, addr, kind, &mut rng))
                .await
                .map_err(|e| format!("{kind:?}: {e}"))
        });
    }
    let mut reached = 0;
    let mut errors = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => reached += 1,
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (reached, errors)
}

async fn reset_one(
    client: &ProbeClient,
    addr: SocketAddr,
    kind: Reset,
    rng: &mut Rng,
) -> io::Result<()> {
    match kind {
        Reset::Handshake => {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.write_all(&hello::client_hello(rng)).await?;
            server_answered(&mut tcp).await?;
            reset_on_drop(&tcp);
        }
        Reset::Upload => {
            let mut tls = client.connect(addr, RESET_LIMIT).await?;
            tls.write_all(&request_head(TRANSFER_BYTES)).await?;
            tls.write_all(&rng.bytes(TRANSFER_BYTES / 4)).await?;
            tls.flush().await?;
            reset_on_drop(tls.get_ref().0);
        }
        Reset::Download => {
            let tls = client.connect(addr, RESET_LIMIT).await?;
            let (mut r, mut w) = tokio::io::split(tls);
            let mut request = request_head(TRANSFER_BYTES);
            request.extend(rng.bytes(TRANSFER_BYTES));
            let send = async {
                // May stall once the proxy stops reading (we stop reading): fine.
                let _ = w.write_all(&request).await;
                pending::<()>().await
            };
            let read_some = async {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = 0;
                while got < DOWNLOAD_READ_BYTES {
                    match r.read(&mut buf).await? {
                        0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                        n => got += n,
                    }
                }
                Ok(())
            };
            tokio::select! {
                res = read_some => res?,
                () = send => unreachable!("the sender never ends by itself"),
            }
            let tls = r.unsplit(w);
            reset_on_drop(tls.get_ref().0);
        }
    }
    Ok(())
}

async fn collect<T: 'static>(mut tasks: JoinSet<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    while let Some(done) = tasks.join_next().await {
        if let Ok(o) = done {
            out.push(o);
        }
    }
    out
}

/// TCP connect limit of an attacker (loopback connects take microseconds; a full accept
/// queue makes them wait).
const CONNECT_LIMIT: Duration = Duration::from_secs(2);
/// The drip's pace: one byte a second, the classic slowloris.
const DRIP_EVERY: Duration = Duration::from_secs(1);
/// How long to wait for the proxy's answer to a ClientHello.
const ANSWER_LIMIT: Duration = Duration::from_secs(2);
/// Payload bytes sent after an oversized record's header (far fewer than it announces).
const OVERSIZED_SENT_BYTES: usize = 64;
/// Request body of the upload and download resets.
const TRANSFER_BYTES: usize = 1024 * 1024;
/// Response bytes read before a download is reset.
const DOWNLOAD_READ_BYTES: usize = 64 * 1024;
/// Limit on one reset connection's whole life.
const RESET_LIMIT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_closes_and_their_span() {
        let o = |connected, closed, ms| Outcome {
            connected,
            closed,
            after: Duration::from_millis(ms),
        };
        let t = Tally::of(&[
            o(true, Closed::Clean, 2100),
            o(true, Closed::Abrupt, 1900),
            o(true, Closed::Open, 5000),
            o(false, Closed::Open, 10),
        ]);
        assert_eq!(
            (t.attempted, t.connected, t.closed, t.still_open),
            (4, 3, 2, 1)
        );
        assert_eq!(t.close_span(), "1.90-2.10 s");
        assert_eq!(Tally::default().close_span(), "-");
    }

    #[test]
    fn attackers_see_a_closing_server_close() {
        // A listener that reads a little and closes: every attacker must report the close.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                loop {
                    let (mut s, _) = listener.accept().await.unwrap();
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        let _ = within(Duration::from_millis(200), s.read(&mut buf)).await;
                    });
                }
            });
            let out = garbage(addr, 10, 4, Duration::from_secs(5), 1).await;
            assert_eq!(out.len(), 10);
            let t = Tally::of(out.iter().map(|(_, o)| o));
            assert_eq!((t.connected, t.closed), (10, 10), "{out:?}");
            let (out, latest_start) = slowloris(
                addr,
                4,
                Duration::from_millis(50),
                Duration::from_secs(5),
                1,
            )
            .await;
            let t = Tally::of(&out);
            assert_eq!((t.connected, t.closed), (4, 4), "{out:?}");
            // Ten times looser than anything a working timer gives.
            assert!(latest_start < Duration::from_secs(1), "{latest_start:?}");
            let out = flood(addr, 5, Duration::from_millis(500)).await;
            assert_eq!(Tally::of(&out).closed, 5);
        });
    }
}
