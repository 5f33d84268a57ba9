//! Reading HTTP/1.1 responses: the head with httparse, then the body framed by
//! Content-Length, chunked transfer coding or the end of the connection. The body streams
//! through one fixed buffer per connection (never held whole, so a 1 GiB echo needs
//! [`READ_BUF_BYTES`]) and is compared with the expected echo on the way.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What the response is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The body an echo must return; `None` skips the check (`--no-verify`).
    pub body: Option<&'a [u8]>,
    /// The request was HEAD: the response has no body whatever its headers say.
    pub head_request: bool,
}

/// A complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server will close (or has closed) the connection after this response.
    pub close: bool,
    /// Bytes of this response: head, body and chunk framing.
    pub bytes: u64,
    /// The body matched the expectation (always true without one).
    pub body_ok: bool,
}

/// Why a response could not be read. Every case counts as a read error.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("reading the response: {0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection before the response was complete")]
    Closed,
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("response head or chunk line longer than {READ_BUF_BYTES} bytes")]
    TooLong,
}

/// One connection's read buffer and parser. Bytes after a complete response stay buffered
/// for the next one.
#[derive(Debug)]
pub struct ResponseReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> Self {
        ResponseReader {
            buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Forgets buffered bytes (after the connection they came from is gone).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads one complete response from `io`.
    pub async fn read<S>(
        &mut self,
        io: &mut S,
        expect: Expect<'_>,
    ) -> Result<Response, ResponseError>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        let mut bytes = 0u64;
        let head = loop {
            match self.parse_head()? {
                Some((head, len)) => {
                    self.consume(len, &mut bytes);
                    // Interim responses (100 Continue, 103 Early Hints) precede the real one.
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue;
                    }
                    break head;
                }
                None => {
                    if self.fill(io).await? == 0 {
                        return Err(ResponseError::Closed);
                    }
                }
            }
        };
        let mut check = BodyCheck::new(expect.body);
        let mut close = head.close;
        let framing = if expect.head_request || matches!(head.status, 101 | 204 | 304) {
            Framing::Empty
        } else if head.chunked {
            Framing::Chunked
        } else if let Some(len) = head.content_length {
            Framing::Length(len)
        } else {
            Framing::UntilClose
        };
        match framing {
            Framing::Empty => {}
            Framing::Length(len) => {
                self.read_exact_body(io, len, &mut check, &mut bytes)
                    .await?
            }
            Framing::Chunked => self.read_chunked(io, &mut check, &mut bytes).await?,
            Framing::UntilClose => {
                close = true;
                loop {
                    if self.start == self.end && self.fill(io).await? == 0 {
                        break;
                    }
                    let n = self.end - self.start;
                    check.feed(&self.buf[self.start..self.end]);
                    self.consume(n, &mut bytes);
                }
            }
        }
        Ok(Response {
            status: head.status,
            close,
            bytes,
            body_ok: check.finish(),
        })
    }

    /// Parses a response head from the buffered bytes; `None` until it is complete.
    fn parse_head(&self) -> Result<Option<(Head, usize)>, ResponseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&self.buf[self.start..self.end]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ResponseError::Malformed(e.to_string())),
        };
        let status = resp.code.unwrap_or(0);
        // HTTP/1.0 closes unless asked not to; HTTP/1.1 keeps alive unless told to close.
        let mut close = resp.version == Some(0);
        let mut chunked = false;
        let mut content_length: Option<u64> = None;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| ResponseError::Malformed("bad Content-Length".into()))?;
                if content_length.is_some_and(|old| old != value) {
                    return Err(ResponseError::Malformed(
                        "conflicting Content-Length".into(),
                    ));
                }
                content_length = Some(value);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked must be the last coding; anything else is framed by the close.
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                        close = false;
                    }
                }
            }
        }
        Ok(Some((
            Head {
                status,
                close,
                chunked,
                content_length,
            },
            len,
        )))
    }

    async fn read_exact_body<S>(
        &mut self,
        io: &mut S,
        len: u64,
        check: &mut BodyCheck<'_>,
        bytes: &mut u64,
    ) -> Result<(), ResponseError>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        check.declared(len);
        self.read_body_bytes(io, len, check, bytes).await
    }

    /// Reads exactly `len` body bytes (a Content-Length body or one chunk's data) through
    /// the echo check.
    async fn read_body_bytes<S>(
        &mut self,
        io: &mut S,
        len: u64,
        check: &mut BodyCheck<'_>,
        bytes: &mut u64,
    ) -> Result<(), ResponseError>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        let mut remaining = len;
        while remaining > 0 {
            if self.start == self.end && self.fill(io).await? == 0 {
                return Err(ResponseError::Closed);
            }
            let take = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(self.end - self.start);
            check.feed(&self.buf[self.start..self.start + take]);
            self.consume(take, bytes);
            remaining -= take as u64;
        }
        Ok(())
    }

    async fn read_chunked<S>(
        &mut self,
        io: &mut S,
        check: &mut BodyCheck<'_>,
        bytes: &mut u64,
    ) -> Result<(), ResponseError>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        self.consume(len, bytes);
                        break size;
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.fill(io).await? == 0 {
                            return Err(ResponseError::Closed);
                        }
                    }
                    Err(_) => return Err(ResponseError::Malformed("bad chunk size".into())),
                }
            };
            if size == 0 {
                // Trailer fields, if any, then the empty line.
                loop {
                    match self.buf[self.start..self.end]
                        .windows(2)
                        .position(|w| w == b"\r\n")
                    {
                        Some(0) => {
                            self.consume(2, bytes);
                            return Ok(());
                        }
                        Some(line) => self.consume(line + 2, bytes),
                        None => {
                            if self.fill(io).await? == 0 {
                                return Err(ResponseError::Closed);
                            }
                        }
                    }
                }
            }
            self.read_body_bytes(io, size, check, bytes).await?;
            while self.end - self.start < 2 {
                if self.fill(io).await? == 0 {
                    return Err(ResponseError::Closed);
                }
            }
            if &self.buf[self.start..self.start + 2] != b"\r\n" {
                return Err(ResponseError::Malformed(
                    "chunk not followed by CRLF".into(),
                ));
            }
            self.consume(2, bytes);
        }
    }

    fn consume(&mut self, n: usize, bytes: &mut u64) {
        self.start += n;
        *bytes += n as u64;
    }

    /// Reads more bytes after the buffered ones; 0 means the peer closed.
    async fn fill<S>(&mut self, io: &mut S) -> Result<usize, ResponseError>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(ResponseError::TooLong);
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = io.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy)]
struct Head {
    status: u16,
    close: bool,
    chunked: bool,
    content_length: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Compares the body, as it streams by, with the expected one: full length always, and
/// every byte (a memcmp per read, at memory speed: cheaper than the read that brought it).
#[derive(Debug)]
struct BodyCheck<'a> {
    expected: Option<&'a [u8]>,
    offset: usize,
    ok: bool,
}

impl<'a> BodyCheck<'a> {
    fn new(expected: Option<&'a [u8]>) -> Self {
        BodyCheck {
            expected,
            offset: 0,
            ok: true,
        }
    }

    /// A declared length that differs from the expected one fails without comparing.
    fn declared(&mut self, len: u64) {
        if let Some(expected) = self.expected {
            if len != expected.len() as u64 {
                self.ok = false;
            }
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if let (Some(expected), true) = (self.expected, self.ok) {
            self.ok = expected
                .get(self.offset..self.offset + chunk.len())
                .is_some_and(|want| want == chunk);
        }
        self.offset += chunk.len();
    }

    fn finish(&self) -> bool {
        match self.expected {
            Some(expected) => self.ok && self.offset == expected.len(),
            None => true,
        }
    }
}

/// Read buffer per connection: one TLS record's worth of plaintext (16 KiB), so a
/// 10 000-connection run holds 160 MiB of buffers at most. Also the longest head accepted.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// Response headers parsed; more is malformed for an echo benchmark.
const MAX_HEADERS: usize = 64;

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// Hands out its bytes `step` at a time, to exercise every partial-parse path.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .step
                .min(self.data.len() - self.pos)
                .min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    async fn read_all(
        wire: &[u8],
        body: Option<&[u8]>,
        step: usize,
    ) -> Vec<Result<Response, String>> {
        let mut io = Trickle {
            data: wire.to_vec(),
            pos: 0,
            step,
        };
        let mut reader = ResponseReader::new();
        let mut out = Vec::new();
        loop {
            let r = reader
                .read(
                    &mut io,
                    Expect {
                        body,
                        head_request: false,
                    },
                )
                .await;
            let stop = !matches!(r, Ok(Response { close: false, .. }));
            out.push(r.map_err(|e| e.to_string()));
            if stop || io.pos == io.data.len() && reader.start == reader.end {
                return out;
            }
        }
    }

    fn ok(status: u16, close: bool, bytes: usize, body_ok: bool) -> Result<Response, String> {
        Ok(Response {
            status,
            close,
            bytes: bytes as u64,
            body_ok,
        })
    }

    #[tokio::test]
    async fn content_length_responses_back_to_back() {
        let one = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        let wire = [&one[..], &one[..]].concat();
        for step in [1, 3, wire.len()] {
            assert_eq!(
                read_all(&wire, Some(b"hello"), step).await,
                [
                    ok(200, false, one.len(), true),
                    ok(200, false, one.len(), true)
                ],
                "step {step}"
            );
        }
    }

    #[tokio::test]
    async fn chunked_with_trailers_and_interim_response() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 7, wire.len()] {
            assert_eq!(
                read_all(wire, Some(b"hello"), step).await,
                [ok(200, false, wire.len(), true)],
                "step {step}"
            );
        }
    }

    #[tokio::test]
    async fn mismatches_are_flagged_not_fatal() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhellX";
        assert_eq!(
            read_all(wire, Some(b"hello"), 2).await,
            [ok(200, false, wire.len(), false)]
        );
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhell";
        assert_eq!(
            read_all(wire, Some(b"hello"), 2).await,
            [ok(200, false, wire.len(), false)]
        );
        // Without an expectation nothing is compared.
        assert_eq!(
            read_all(wire, None, 2).await,
            [ok(200, false, wire.len(), true)]
        );
    }

    #[tokio::test]
    async fn close_framing_and_http10() {
        let wire = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert_eq!(
            read_all(wire, Some(b"hello"), 2).await,
            [ok(200, true, wire.len(), true)]
        );
        let wire = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            read_all(wire, None, 100).await,
            [ok(503, true, wire.len(), true)]
        );
    }

    #[tokio::test]
    async fn truncated_and_malformed_are_errors() {
        let r = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", None, 4).await;
        assert!(
            r[0].as_ref()
                .unwrap_err()
                .contains("before the response was complete"),
            "{r:?}"
        );
        let r = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", None, 4).await;
        assert!(
            r[0].as_ref().unwrap_err().contains("Content-Length"),
            "{r:?}"
        );
        let r = read_all(b"SMTP ready\r\n\r\n", None, 64).await;
        assert!(r[0].as_ref().unwrap_err().contains("malformed"), "{r:?}");
        let huge = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(READ_BUF_BYTES)
        );
        let r = read_all(huge.as_bytes(), None, 4096).await;
        assert!(r[0].as_ref().unwrap_err().contains("longer than"), "{r:?}");
    }

    #[tokio::test]
    async fn body_larger_than_the_buffer_streams_through() {
        let body = crate::request::generated_body(5 * READ_BUF_BYTES + 17);
        let mut wire =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        let head = wire.len();
        wire.extend_from_slice(&body);
        assert_eq!(
            read_all(&wire, Some(&body), 5000).await,
            [ok(200, false, head + body.len(), true)]
        );
    }
}
