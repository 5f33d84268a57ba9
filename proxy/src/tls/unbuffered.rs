//! rustls through its unbuffered API ([`UnbufferedServerConnection`]): the connection keeps
//! its TLS state and keys, and the buffers belong to the worker thread.
//!
//! Ciphertext is read into a per-thread buffer and decrypted there; records are encrypted
//! into another per-thread buffer and written straight from it. A connection owns bytes
//! only while they cannot move on: a record cut in half by a read, ciphertext the socket
//! would not take, plaintext the reader had no room for. Each is a `Vec` freed as soon as
//! it drains, so an idle connection owns no TLS buffer at all (the buffered API keeps a
//! 4 KiB read buffer per connection for its whole life). What is held stays bounded: a
//! writer finds `poll_write` pending until its leftover ciphertext is gone (backpressure).
//!
//! Semantics match tokio-rustls, which the `buffered` mode still uses: close_notify reads as
//! EOF, a TCP close without it as an `UnexpectedEof` error, and shutdown sends close_notify
//! then FIN.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus, WriteTraffic};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{HandshakeErrorKind, HandshakeInfo, TlsError};

/// An established server-side TLS stream over `IO`.
pub struct Stream<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Ciphertext received but not yet processed: usually empty and unallocated.
    incoming: Vec<u8>,
    /// Ciphertext produced but not yet taken by the transport; sent before anything else.
    outgoing: Vec<u8>,
    sent: usize,
    /// Plaintext decrypted but not yet read.
    plaintext: Vec<u8>,
    read: usize,
    /// The name the client asked for (rustls's unbuffered connection does not keep it for
    /// us; see [`take_sni`]).
    sni: Option<Box<str>>,
    /// The peer's close_notify was processed (rustls reports it once, to whichever of the
    /// read and write paths happens to ask first).
    peer_closed: bool,
    /// The transport reached EOF.
    eof: bool,
    close_notify_sent: bool,
}

impl<IO> std::fmt::Debug for Stream<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("unbuffered::Stream")
            .field("incoming", &self.incoming.len())
            .field("outgoing", &(self.outgoing.len() - self.sent))
            .field("plaintext", &(self.plaintext.len() - self.read))
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

/// Runs the server handshake on `io`.
pub async fn accept<IO>(config: Arc<ServerConfig>, io: IO) -> Result<Stream<IO>, TlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(|e| TlsError::Handshake {
        kind: HandshakeErrorKind::Other,
        detail: e.to_string(),
    })?;
    let mut stream = Stream {
        io,
        conn,
        incoming: Vec::new(),
        outgoing: Vec::new(),
        sent: 0,
        plaintext: Vec::new(),
        read: 0,
        sni: None,
        peer_closed: false,
        eof: false,
        close_notify_sent: false,
    };
    let driven = std::future::poll_fn(|cx| stream.poll_drive(cx, Goal::Handshake, None)).await;
    match driven {
        Ok(Driven::Reached) => {}
        Ok(Driven::Eof | Driven::PeerClosed) => {
            return Err(TlsError::Handshake {
                kind: HandshakeErrorKind::PeerClosed,
                detail: "the client closed the connection during the handshake".into(),
            })
        }
        Err(Failure::Tls(e)) => {
            // rustls queued an alert saying why; the client should hear it. Best effort:
            // the handshake has failed whatever happens to the alert.
            let _ = std::future::poll_fn(|cx| stream.poll_send_alert(cx)).await;
            return Err(super::rustls::handshake_failed(e));
        }
        Err(Failure::Io(e)) => {
            return Err(TlsError::Handshake {
                kind: HandshakeErrorKind::of_io(&e),
                detail: e.to_string(),
            })
        }
    }
    // The client's Finished and its first request often arrive together; the request
    // stays queued in `conn` for the first read. What was sent in the handshake must be
    // out before the stream is handed over (tokio-rustls flushes here too).
    std::future::poll_fn(|cx| stream.poll_drain(cx))
        .await
        .map_err(|e| TlsError::Handshake {
            kind: HandshakeErrorKind::of_io(&e),
            detail: e.to_string(),
        })?;
    Ok(stream)
}

impl<IO> Stream<IO> {
    /// The negotiated parameters.
    pub fn info(&self) -> HandshakeInfo {
        super::rustls::info_of(&self.conn, self.sni.as_deref())
    }

    /// The transport underneath.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

/// What [`Stream::poll_drive`] works towards.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// Until application data may be sent.
    Handshake,
    /// Until some plaintext was delivered, or the peer closed.
    Read,
}

/// The ciphertext [`Stream::poll_drive`] works through: `buf[start..len]` of the per-thread
/// buffer.
struct Held<'a> {
    buf: &'a mut [u8],
    start: usize,
    len: usize,
    /// Plaintext was handed to the reader in this call.
    delivered: bool,
}

/// Where driving stopped (besides `Pending` and errors).
enum Driven {
    Reached,
    /// close_notify from the peer: no more plaintext will come.
    PeerClosed,
    /// The transport reached EOF before the goal.
    Eof,
}

enum Failure {
    Tls(rustls::Error),
    Io(io::Error),
}

impl From<Failure> for io::Error {
    fn from(f: Failure) -> io::Error {
        match f {
            Failure::Io(e) => e,
            Failure::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Stream<IO> {
    /// Processes held ciphertext, reading more from the transport whenever rustls needs
    /// it, and queues whatever rustls has to send, until `goal`. Plaintext goes to `out`
    /// (what does not fit, to `self.plaintext`).
    fn poll_drive(
        &mut self,
        cx: &mut Context<'_>,
        goal: Goal,
        mut out: Option<&mut ReadBuf<'_>>,
    ) -> Poll<Result<Driven, Failure>> {
        // Ciphertext queued earlier goes first (a handshake flight, a key update's reply);
        // pending here only means the transport is full for now.
        if self.sent < self.outgoing.len() {
            if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
                return Poll::Ready(Err(Failure::Io(e)));
            }
        }
        INCOMING.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let buf = &mut scratch[..];
            let len = self.incoming.len();
            buf[..len].copy_from_slice(&self.incoming);
            self.incoming = Vec::new();
            let mut held = Held {
                buf,
                start: 0,
                len,
                delivered: false,
            };
            let result = self.drive_in(cx, goal, &mut out, &mut held);
            if held.start < held.len {
                self.incoming = held.buf[held.start..held.len].to_vec();
            }
            result
        })
    }

    /// [`Self::poll_drive`]'s loop over the ciphertext `held` in the per-thread buffer.
    fn drive_in(
        &mut self,
        cx: &mut Context<'_>,
        goal: Goal,
        out: &mut Option<&mut ReadBuf<'_>>,
        held: &mut Held<'_>,
    ) -> Poll<Result<Driven, Failure>> {
        let Held {
            buf,
            start,
            len,
            delivered,
        } = held;
        loop {
            // The SNI reaches us only through the certificate resolver (see `take_sni`).
            let handshaking = self.conn.is_handshaking();
            if handshaking {
                super::rustls::forget_sni();
            }
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut buf[*start..*len]);
            if handshaking {
                if let Some(name) = super::rustls::take_sni() {
                    self.sni = Some(name.into_boxed_str());
                }
            }
            let mut need_data = false;
            let mut stop = None;
            match state.map_err(Failure::Tls)? {
                ConnectionState::ReadTraffic(mut traffic) => match goal {
                    // Left queued in `conn` for the first read.
                    Goal::Handshake => stop = Some(Driven::Reached),
                    Goal::Read => {
                        while let Some(record) = traffic.next_record() {
                            let record = record.map_err(Failure::Tls)?;
                            deliver(record.payload, out, &mut self.plaintext);
                        }
                        *delivered = true;
                        if out.as_ref().is_none_or(|o| o.remaining() == 0) {
                            stop = Some(Driven::Reached);
                        }
                    }
                },
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.outgoing, |b| encode.encode(b))?;
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // The bytes are ours to deliver now, ahead of anything written later.
                    transmit.done();
                }
                ConnectionState::BlockedHandshake => need_data = true,
                // No complete record left: done if anything was delivered, else read on.
                ConnectionState::WriteTraffic(_) => match goal {
                    // (Half-RTT data, were it configured, would allow writing before the
                    // client's Finished: the handshake is done only once it is processed.)
                    Goal::Handshake if self.conn.is_handshaking() => need_data = true,
                    Goal::Handshake => stop = Some(Driven::Reached),
                    Goal::Read if *delivered => stop = Some(Driven::Reached),
                    Goal::Read => need_data = true,
                },
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.peer_closed = true;
                    stop = Some(match goal {
                        // A client with nothing to send may close right after its
                        // Finished: the handshake is complete all the same.
                        Goal::Handshake if !self.conn.is_handshaking() => Driven::Reached,
                        Goal::Read if *delivered => Driven::Reached,
                        _ => Driven::PeerClosed,
                    });
                }
                other => {
                    return Poll::Ready(Err(Failure::Io(io::Error::other(format!(
                        "unexpected TLS state {other:?}"
                    )))))
                }
            }
            *start += discard;
            if self.sent < self.outgoing.len() {
                if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
                    return Poll::Ready(Err(Failure::Io(e)));
                }
            }
            if let Some(driven) = stop {
                return Poll::Ready(Ok(driven));
            }
            if !need_data {
                continue;
            }
            if self.eof {
                return Poll::Ready(Ok(if *delivered {
                    Driven::Reached
                } else {
                    Driven::Eof
                }));
            }
            // Make room at the front, then read one window's worth after what is held.
            buf.copy_within(*start..*len, 0);
            *len -= *start;
            *start = 0;
            if *len == buf.len() {
                // rustls caps a handshake message at 64 KiB and a record at 16 KiB plus
                // overhead, both well inside the buffer: a peer that fills it is not TLS.
                return Poll::Ready(Err(Failure::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a TLS message larger than the read buffer",
                ))));
            }
            let end = (*len + READ_WINDOW).min(buf.len());
            let mut window = ReadBuf::new(&mut buf[*len..end]);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut window)).map_err(Failure::Io)?;
            let n = window.filled().len();
            if n == 0 {
                self.eof = true;
            }
            *len += n;
        }
    }

    /// Writes queued ciphertext until none is left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if !self.outgoing.is_empty() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// After a failure, sends the alert rustls queued for it, if any.
    fn poll_send_alert(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
            encode_into(&mut self.outgoing, |b| encode.encode(b)).map_err(io::Error::from)?;
        }
        self.poll_drain(cx)
    }

    /// Runs `f` once rustls is ready to encrypt application data: queued ciphertext sent,
    /// handshake messages it wants to send (a key update) queued, plaintext that arrived
    /// meanwhile set aside for the reader.
    fn poll_with_write_traffic<R>(
        &mut self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(
            WriteTraffic<'_, ServerConnectionData>,
            &mut Vec<u8>,
            &mut IO,
            &mut Context<'_>,
        ) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            ready!(self.poll_drain(cx))?;
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let result = match state.map_err(Failure::Tls)? {
                ConnectionState::WriteTraffic(traffic) => {
                    Some(f(traffic, &mut self.outgoing, &mut self.io, cx))
                }
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(Failure::Tls)?;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.outgoing, |b| encode.encode(b))?;
                    None
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    None
                }
                other => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        format!("cannot write in TLS state {other:?}"),
                    )))
                }
            };
            self.incoming.drain(..discard);
            if let Some(result) = result {
                return Poll::Ready(result);
            }
        }
    }
}

/// Copies a record's plaintext to the reader, keeping what does not fit.
fn deliver(payload: &[u8], out: &mut Option<&mut ReadBuf<'_>>, rest: &mut Vec<u8>) {
    let n = out.as_ref().map_or(0, |o| o.remaining().min(payload.len()));
    if let Some(out) = out {
        out.put_slice(&payload[..n]);
    }
    rest.extend_from_slice(&payload[n..]);
}

/// Appends what `encode` writes to `outgoing`, growing it to the size rustls asks for.
fn encode_into(
    outgoing: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), Failure> {
    let mut room = 4096;
    loop {
        let at = outgoing.len();
        outgoing.resize(at + room, 0);
        match encode(&mut outgoing[at..]) {
            Ok(n) => {
                outgoing.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(need)) => {
                outgoing.truncate(at);
                room = need.required_size;
            }
            Err(e) => {
                outgoing.truncate(at);
                return Err(Failure::Io(io::Error::other(e.to_string())));
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.plaintext.len() {
            let n = buf.remaining().min(this.plaintext.len() - this.read);
            buf.put_slice(&this.plaintext[this.read..this.read + n]);
            this.read += n;
            if this.read == this.plaintext.len() {
                this.plaintext = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if this.peer_closed || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match ready!(this.poll_drive(cx, Goal::Read, Some(buf))) {
            Ok(Driven::Reached | Driven::PeerClosed) => Poll::Ready(Ok(())),
            Ok(Driven::Eof) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed the connection without sending TLS close_notify",
            ))),
            Err(e) => {
                // Tell the peer why (a bad record's alert), as far as the socket takes it.
                let _ = this.poll_send_alert(cx);
                Poll::Ready(Err(e.into()))
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &data[..data.len().min(WRITE_CHUNK)];
        self.get_mut()
            .poll_with_write_traffic(cx, |mut traffic, outgoing, io, cx| {
                OUTGOING.with(|scratch| {
                    let mut scratch = scratch.borrow_mut();
                    let n = traffic
                        .encrypt(data, &mut scratch[..])
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    // Straight from the per-thread buffer; only what the socket would not
                    // take stays with the connection.
                    let mut sent = 0;
                    while sent < n {
                        match Pin::new(&mut *io).poll_write(cx, &scratch[sent..n]) {
                            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                            Poll::Ready(Ok(k)) => sent += k,
                            Poll::Ready(Err(e)) => return Err(e),
                            Poll::Pending => break,
                        }
                    }
                    outgoing.extend_from_slice(&scratch[sent..n]);
                    Ok(data.len())
                })
            })
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Sends close_notify, then shuts the transport's write side (FIN).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_notify_sent {
            ready!(
                this.poll_with_write_traffic(cx, |mut traffic, outgoing, _, _| {
                    let mut record = [0u8; 256];
                    let n = traffic
                        .queue_close_notify(&mut record)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    outgoing.extend_from_slice(&record[..n]);
                    Ok(())
                })
            )?;
            this.close_notify_sent = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Largest plaintext taken by one `poll_write`: four full records.
const WRITE_CHUNK: usize = 64 * 1024;
/// One read from the transport: the read-ahead layer below reads straight into a window
/// this large (sysio's `READ_AHEAD_BYTES`) rather than through its own buffer.
const READ_WINDOW: usize = sysio::read_ahead::READ_AHEAD_BYTES;
/// Room for a held partial record (at most 16 KiB of plaintext plus the largest record
/// overhead) in front of a full read window.
const INCOMING_BYTES: usize = READ_WINDOW + 18 * 1024;
/// A full write chunk once encrypted: each 16 KiB record gains at most 5 bytes of header,
/// 8 of explicit nonce (TLS 1.2) and 16 of tag, or 5 + 1 + 16 (TLS 1.3).
const OUTGOING_BYTES: usize = WRITE_CHUNK + 1024;

thread_local! {
    // Per worker thread, so reads and writes never pay to zero them again.
    static INCOMING: RefCell<Box<[u8]>> = RefCell::new(vec![0; INCOMING_BYTES].into_boxed_slice());
    static OUTGOING: RefCell<Box<[u8]>> = RefCell::new(vec![0; OUTGOING_BYTES].into_boxed_slice());
}
