//! [`ReadAhead`]: fewer `recv` calls under a TLS library.
//!
//! rustls reads the socket at most 4 KiB at a time, and OpenSSL reads a record's 5-byte
//! header and then its body: a 10 KB request costs three or more `recv` calls. Under load
//! those calls are most of the proxy's kernel time (and the load generator's).
//! `ReadAhead` reads once into a large per-thread buffer and serves the library's small
//! reads from memory; only bytes left over after a read are kept per connection, in a buffer
//! freed as soon as it is drained, so an idle connection still owns nothing.
//!
//! [`ReadAhead::unread`] puts bytes back in front: the proxy reads an inbound PROXY protocol
//! header through it and hands back what it read past the header, for the TLS library.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A transport wrapper that reads ahead; writes pass straight through.
#[derive(Debug)]
pub struct ReadAhead<IO> {
    io: IO,
    /// Bytes read from `io` but not yet handed out; usually empty and unallocated.
    pending: Vec<u8>,
    pos: usize,
}

impl<IO> ReadAhead<IO> {
    pub fn new(io: IO) -> Self {
        ReadAhead {
            io,
            pending: Vec::new(),
            pos: 0,
        }
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Puts bytes back in front of what is still to be read (a PROXY protocol reader
    /// hands back what it read past the header, for the TLS library).
    pub fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut front = Vec::with_capacity(bytes.len() + self.pending.len() - self.pos);
        front.extend_from_slice(bytes);
        front.extend_from_slice(&self.pending[self.pos..]);
        self.pending = front;
        self.pos = 0;
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ReadAhead<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.pending.len() {
            let n = out.remaining().min(this.pending.len() - this.pos);
            out.put_slice(&this.pending[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.pending.len() {
                this.pending = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if out.remaining() >= READ_AHEAD_BYTES {
            return Pin::new(&mut this.io).poll_read(cx, out);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let data = buf.filled();
                    let n = out.remaining().min(data.len());
                    out.put_slice(&data[..n]);
                    if n < data.len() {
                        this.pending.extend_from_slice(&data[n..]);
                    }
                    Poll::Ready(Ok(()))
                }
                other => other,
            }
        })
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ReadAhead<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// One read takes up to this much: several full TLS records (16 KiB + overhead each).
pub const READ_AHEAD_BYTES: usize = 64 * 1024;

thread_local! {
    // Separate from the proxy relay's scratch buffer: the relay holds that one while the TLS
    // library, below it, calls into this one.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_AHEAD_BYTES].into_boxed_slice());
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn unread_bytes_come_back_first() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(b"HEADERrest").await.unwrap();
        drop(a);
        let mut r = ReadAhead::new(b);
        let mut head = [0u8; 8];
        r.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HEADERre");
        r.unread(&head[6..]);
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"rest");
    }

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order() {
        let (mut a, b) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let send = data.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&send).await.unwrap();
            a.shutdown().await.unwrap();
        });
        let mut r = ReadAhead::new(b);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = r.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, data);
        assert!(r.pending.capacity() == 0, "drained buffer is freed");
    }
}
