//! The step between an accepted socket and the relay, one kind per listener: a TLS
//! listener runs the handshake, a plain one (`tls = false`) hands the socket over as it is.
//!
//! `serve` is generic over [`Front`] and picks the kind once per connection, so each kind
//! is compiled on its own: the TLS path reads its stream with no dispatch per read, and the
//! plain path relays the socket itself, paying nothing for TLS.

use std::future::Future;

use arc_swap::ArcSwap;
use sysio::read_ahead::ReadAhead;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::tls::{Acceptor, HandshakeInfo, TlsError, TlsStream};

/// The accepted socket, after any inbound PROXY header (whatever followed it is kept).
pub(super) type Accepted = ReadAhead<TcpStream>;

/// Turns the accepted socket into the client stream the relay copies from and to.
pub(super) trait Front {
    /// The client side of the relay.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send;

    /// Opens the client stream on `io`, with what the TLS handshake settled on (`None`:
    /// no TLS). No timeout here: `serve` bounds it together with the PROXY header.
    fn open(
        &self,
        io: Accepted,
    ) -> impl Future<Output = Result<(Self::Stream, Option<HandshakeInfo>), TlsError>> + Send;
}

/// A TLS listener: a handshake with the listener's acceptor of the moment.
pub(super) struct Handshake<'a>(pub &'a ArcSwap<Acceptor>);

impl Front for Handshake<'_> {
    type Stream = TlsStream<Accepted>;

    async fn open(&self, io: Accepted) -> Result<(Self::Stream, Option<HandshakeInfo>), TlsError> {
        // Loaded once per handshake: a reload swaps in the acceptor the next one uses.
        let acceptor = self.0.load_full();
        let tls = acceptor.accept(io).await?;
        let info = tls.info();
        Ok((tls, Some(info)))
    }
}

/// A plain listener: the socket is the client stream.
pub(super) struct Plain;

impl Front for Plain {
    type Stream = Accepted;

    async fn open(&self, io: Accepted) -> Result<(Self::Stream, Option<HandshakeInfo>), TlsError> {
        Ok((io, None))
    }
}
