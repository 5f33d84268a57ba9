//! The step between an accepted socket and the relay, one kind per listener: a TLS
//! listener runs the handshake, a plain one (`tls = false`) hands the socket over as it is.
//!
//! The accept loop picks the kind once per connection and spawns `handle` generic over
//! [`Front`], so each kind is compiled on its own: the TLS path reads its stream with no
//! dispatch per read, and the plain path relays the socket itself, paying nothing for TLS,
//! not even in the size of its task (each connection's task is as large as its own kind's
//! state needs).

use std::future::Future;
use std::sync::Arc;

use sysio::read_ahead::ReadAhead;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::tls::{Acceptor, HandshakeInfo, TlsError, TlsStream};

/// The accepted socket, after any inbound PROXY header (whatever followed it is kept).
pub(super) type Accepted = ReadAhead<TcpStream>;

/// Turns the accepted socket into the client stream the relay copies from and to.
pub(super) trait Front: Send + 'static {
    /// The client side of the relay.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send;

    /// Opens the client stream on `io`, with what the TLS handshake settled on (`None`:
    /// no TLS). No timeout here: `serve` bounds it together with the PROXY header.
    fn open(
        self,
        io: Accepted,
    ) -> impl Future<Output = Result<(Self::Stream, Option<HandshakeInfo>), TlsError>> + Send;
}

/// A TLS listener: a handshake with the listener's acceptor of the moment the connection
/// was accepted (a reload swaps in the acceptor the next connection uses).
pub(super) struct Handshake(pub Arc<Acceptor>);

impl Front for Handshake {
    type Stream = TlsStream<Accepted>;

    async fn open(self, io: Accepted) -> Result<(Self::Stream, Option<HandshakeInfo>), TlsError> {
        // The acceptor is released once the handshake is done.
        let tls = self.0.accept(io).await?;
        let info = tls.info();
        Ok((tls, Some(info)))
    }
}

/// A plain listener: the socket is the client stream.
pub(super) struct Plain;

impl Front for Plain {
    type Stream = Accepted;

    async fn open(self, io: Accepted) -> Result<(Self::Stream, Option<HandshakeInfo>), TlsError> {
        Ok((io, None))
    }
}
