//! The PROXY protocol, versions 1 (text) and 2 (binary), as specified in HAProxy's
//! `doc/proxy-protocol.txt`: a pure encoder and an incremental, strictly bounded parser.
//!
//! It exists for two directions of the same fact, "who is the client?":
//! - towards the upstream, [`encode`] writes the header that goes before any client byte, so
//!   the backend learns the client address; v2 also carries the TLS facts (ALPN, SNI, version,
//!   cipher, client certificate) as TLVs laid out the way HAProxy sends them;
//! - behind a load balancer, [`parse`] reads the header that arrives before the TLS handshake.
//!   That header is untrusted input: the parser never asks for more than [`MAX_HEADER_BYTES`],
//!   never panics, never consumes a byte past the header, and says what was wrong.
//!
//! No sockets here: the connection path feeds bytes in and writes bytes out; [`read_header`]
//! is the one reader, generic over any stream behind a `ReadAhead`. Choices the spec leaves
//! open, made on purpose:
//! - v2 `verify` follows the spec, not HAProxy: 0 only when a client certificate was presented
//!   *and* verified, 1 otherwise (HAProxy leaves it 0 when no certificate was presented, which
//!   a receiver that checks only `verify` would read as "verified").
//! - A client certificate sets both `PP2_CLIENT_CERT_CONN` and `PP2_CLIENT_CERT_SESS`, as
//!   HAProxy does: presented on this connection implies presented in its session.
//! - Mixed IPv4/IPv6 endpoints are sent as IPv6 with the IPv4 one mapped (`::ffff:a.b.c.d`).
//! - A value that cannot be represented is left out rather than cut: a Unix path over 108
//!   bytes makes the v2 family AF_UNSPEC; a TLS string over its `MAX_*_BYTES` cap omits its
//!   TLV. The caps make the largest header we can write smaller than [`MAX_HEADER_BYTES`]
//!   (checked at compile time), so our own parser always accepts what we send.
//! - On parse, v2 LOCAL headers and the DGRAM families give [`Addresses::Unknown`] (use the
//!   real connection endpoints); family bytes outside the seven the spec lists are rejected.
//!   CRC32C TLVs are kept raw and not verified.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sysio::read_ahead::ReadAhead;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Which header format to write, or which one was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// Human-readable one-line header (`PROXY TCP4 ...\r\n`).
    V1,
    /// Binary header with TLVs.
    V2,
}

/// Where the connection came from (`src`, the client) and went to (`dst`, our listener).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// TCP over IPv4 or IPv6. Only the IP and port travel: an IPv6 flow label or scope id is
    /// not part of the protocol and is dropped.
    Inet { src: SocketAddr, dst: SocketAddr },
    /// A Unix stream socket: the 108-byte `sun_path` fields with trailing NULs trimmed
    /// (an unnamed client socket is empty).
    Unix { src: Vec<u8>, dst: Vec<u8> },
    /// No usable addresses: a v2 LOCAL command, v1 `UNKNOWN`, or a family we do not relay
    /// (AF_UNSPEC, DGRAM). The receiver uses the real connection's endpoints.
    Unknown,
}

/// TLS facts of the client connection, carried as v2 TLVs the way HAProxy sends them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFacts {
    /// Protocol version as OpenSSL spells it, e.g. `"TLSv1.3"` (`PP2_SUBTYPE_SSL_VERSION`);
    /// empty: not known (the backend does not report it), and no TLV is sent.
    pub version: String,
    /// Cipher suite, IANA name, e.g. `"TLS_AES_128_GCM_SHA256"` (`PP2_SUBTYPE_SSL_CIPHER`);
    /// empty as for `version`.
    pub cipher: String,
    /// Server name the client asked for (`PP2_TYPE_AUTHORITY`).
    pub sni: Option<String>,
    /// Negotiated ALPN protocol, e.g. `b"h2"` (`PP2_TYPE_ALPN`).
    pub alpn: Option<Vec<u8>>,
    /// Set when the client presented a certificate on this connection.
    pub client_cert: Option<ClientCert>,
}

/// What the upstream learns about a client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientCert {
    /// Whether it verified against the listener's client CA (v2 `verify == 0`).
    pub verified: bool,
    /// The subject's Common Name, when it has one (`PP2_SUBTYPE_SSL_CN`).
    pub subject_cn: Option<String>,
}

/// The result of parsing an inbound header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Which format arrived.
    pub version: Version,
    /// The endpoints it announced.
    pub addrs: Addresses,
    /// v2 TLVs as `(type, value)`, raw and in wire order (for logging); empty for v1 and for
    /// v2 LOCAL. The `PP2_TYPE_SSL` value has been checked to hold well-formed sub-TLVs.
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

/// Why an inbound PROXY header was rejected. Offsets count from the header's first byte.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProxyHeaderError {
    #[error(
        "not a PROXY protocol header: the first bytes match neither the v1 text \"PROXY \" \
         nor the v2 binary signature"
    )]
    BadSignature,
    #[error("PROXY v2 header has protocol version {0} in its 13th byte; only 2 is defined")]
    BadVersion(u8),
    #[error("PROXY v2 header has command {0:#x}; only LOCAL (0x0) and PROXY (0x1) are defined")]
    BadCommand(u8),
    #[error(
        "PROXY v2 header has address family/protocol byte {0:#04x}; the spec defines only \
         0x00, 0x11, 0x12, 0x21, 0x22, 0x31 and 0x32"
    )]
    UnsupportedFamily(u8),
    #[error("PROXY v2 address block is {got} bytes but family byte {family:#04x} needs {needed}")]
    AddressBlockTooShort {
        family: u8,
        needed: usize,
        got: usize,
    },
    #[error("PROXY v1 line has no CRLF within its first {V1_MAX_LINE_BYTES} bytes")]
    V1LineTooLong,
    #[error("PROXY v1 line has a lone CR or LF at byte {at}; the line must end with CRLF")]
    V1NotTerminated { at: usize },
    #[error("PROXY v1 line has a bad {field}: {value:?}")]
    V1BadField { field: &'static str, value: String },
    #[error("PROXY v2 header announces {total} bytes, over the {MAX_HEADER_BYTES}-byte limit")]
    HeaderTooLong { total: usize },
    #[error(
        "PROXY v2 TLV of type {kind:#04x} at byte {offset} needs {needed} bytes but only \
         {left} are left in the header"
    )]
    TlvOverrun {
        kind: u8,
        offset: usize,
        needed: usize,
        left: usize,
    },
    #[error(
        "PROXY v2 SSL TLV at byte {offset} is {len} bytes, shorter than its 5-byte \
         client flags + verify prefix"
    )]
    SslTlvTooShort { offset: usize, len: usize },
    #[error(
        "PROXY v2 SSL sub-TLV of type {kind:#04x} at byte {offset} needs {needed} bytes but \
         only {left} are left in its SSL TLV"
    )]
    SubTlvOverrun {
        kind: u8,
        offset: usize,
        needed: usize,
        left: usize,
    },
    #[error("PROXY v2 TLV of type {kind:#04x} should be UTF-8 text but is not")]
    TlvNotUtf8 { kind: u8 },
}

/// Appends a header to `out`.
///
/// v1 ignores `tls` and writes `PROXY UNKNOWN\r\n` for Unix or unknown addresses. v2 writes
/// the PROXY command with AF_INET/AF_INET6 STREAM, AF_UNIX STREAM or (for
/// [`Addresses::Unknown`]) AF_UNSPEC, then, with `tls`, the ALPN, AUTHORITY and SSL TLVs.
pub fn encode(version: Version, addrs: &Addresses, tls: Option<&TlsFacts>, out: &mut Vec<u8>) {
    match version {
        Version::V1 => encode_v1(addrs, out),
        Version::V2 => encode_v2(addrs, tls, out),
    }
}

/// Parses a header at the start of `buf`.
///
/// Returns `Ok(Some((header, consumed)))` once a whole header is there (bytes after it are
/// not consumed), `Ok(None)` while `buf` is a valid beginning that needs more bytes (never
/// more than [`MAX_HEADER_BYTES`] in all), and `Err` as soon as the bytes cannot become a
/// valid header.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyHeaderError> {
    let v2_seen = buf.len().min(V2_SIGNATURE.len());
    if buf[..v2_seen] == V2_SIGNATURE[..v2_seen] {
        return parse_v2(buf);
    }
    let v1_seen = buf.len().min(V1_PREFIX.len());
    if buf[..v1_seen] == V1_PREFIX[..v1_seen] {
        return parse_v1(buf);
    }
    Err(ProxyHeaderError::BadSignature)
}

/// Reads an inbound PROXY protocol header (v1 or v2) and keeps whatever followed it in `io`
/// for the next reader (the TLS library, or HTTP). Untrusted input: the parser bounds it to
/// `MAX_HEADER_BYTES`; callers bound it in time.
pub async fn read_header<IO: AsyncRead + Unpin>(
    io: &mut ReadAhead<IO>,
) -> Result<Header, ReadHeaderError> {
    let mut buf = Vec::with_capacity(PROXY_HEADER_READ_BYTES);
    let mut chunk = [0u8; PROXY_HEADER_READ_BYTES];
    loop {
        let n = io.read(&mut chunk).await.map_err(ReadHeaderError::Read)?;
        if n == 0 {
            return Err(ReadHeaderError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((header, used)) = parse(&buf)? {
            io.unread(&buf[used..]);
            return Ok(header);
        }
    }
}

/// Why [`read_header`] got no header: the socket failed, the client left first, or what it
/// sent is not a header.
#[derive(Debug, Error)]
pub enum ReadHeaderError {
    #[error("reading the PROXY header: {0}")]
    Read(std::io::Error),
    #[error("connection closed inside the PROXY header")]
    Closed,
    #[error("bad PROXY header: {0}")]
    Bad(#[from] ProxyHeaderError),
}

impl TlsFacts {
    /// Whether [`encode`] carries every field: each string within its `MAX_*_BYTES` cap.
    /// A field over its cap is left out of the header rather than cut.
    pub fn fits_caps(&self) -> bool {
        let cn_len = self
            .client_cert
            .as_ref()
            .and_then(|cert| cert.subject_cn.as_ref())
            .map_or(0, String::len);
        self.version.len() <= MAX_TLS_NAME_BYTES
            && self.cipher.len() <= MAX_TLS_NAME_BYTES
            && self.sni.as_ref().map_or(0, String::len) <= MAX_AUTHORITY_BYTES
            && self.alpn.as_ref().map_or(0, Vec::len) <= MAX_ALPN_BYTES
            && cn_len <= MAX_CN_BYTES
    }
}

impl Header {
    /// The value of the first top-level TLV of type `kind` (a `PP2_TYPE_*` constant).
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, value)| value.as_slice())
    }

    /// Decodes the ALPN, AUTHORITY and SSL TLVs back into [`TlsFacts`].
    ///
    /// `Ok(None)` when there is no SSL TLV or its `PP2_CLIENT_SSL` flag is clear (the client
    /// did not use TLS). A missing version or cipher sub-TLV decodes as an empty string. A
    /// client certificate is reported when either certificate flag is set; it counts as
    /// verified when `verify` is 0.
    pub fn tls_facts(&self) -> Result<Option<TlsFacts>, ProxyHeaderError> {
        let Some(ssl) = self.tlv(PP2_TYPE_SSL) else {
            return Ok(None);
        };
        // The fields are public, so a hand-built Header gets the same checks as a parsed one;
        // offsets are then relative to the SSL value.
        let (client, verify, subs) = split_ssl_tlv(ssl, 0)?;
        if client & PP2_CLIENT_SSL == 0 {
            return Ok(None);
        }
        let mut facts = TlsFacts::default();
        let mut subject_cn = None;
        for RawTlv { kind, value, .. } in subs {
            match kind {
                PP2_SUBTYPE_SSL_VERSION => facts.version = utf8(kind, value)?,
                PP2_SUBTYPE_SSL_CIPHER => facts.cipher = utf8(kind, value)?,
                PP2_SUBTYPE_SSL_CN => subject_cn = Some(utf8(kind, value)?),
                _ => {}
            }
        }
        facts.sni = self
            .tlv(PP2_TYPE_AUTHORITY)
            .map(|value| utf8(PP2_TYPE_AUTHORITY, value))
            .transpose()?;
        facts.alpn = self.tlv(PP2_TYPE_ALPN).map(<[u8]>::to_vec);
        if client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS) != 0 {
            facts.client_cert = Some(ClientCert {
                verified: verify == VERIFY_OK,
                subject_cn,
            });
        }
        Ok(Some(facts))
    }
}

/// Both endpoints in one IP family, as the protocol needs them.
enum InetPair {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

fn inet_pair(src: &SocketAddr, dst: &SocketAddr) -> InetPair {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => InetPair::V4(s, d),
        (s, d) => InetPair::V6(to_v6(s), to_v6(d)),
    }
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn encode_v1(addrs: &Addresses, out: &mut Vec<u8>) {
    let Addresses::Inet { src, dst } = addrs else {
        out.extend_from_slice(b"PROXY UNKNOWN\r\n");
        return;
    };
    // Display gives the spec's forms: dotted quads without leading zeros, and compressed
    // IPv6 (mapped addresses as `::ffff:a.b.c.d`, as HAProxy's inet_ntop writes them).
    let line = match inet_pair(src, dst) {
        InetPair::V4(s, d) => format!("PROXY TCP4 {s} {d} {} {}\r\n", src.port(), dst.port()),
        InetPair::V6(s, d) => format!("PROXY TCP6 {s} {d} {} {}\r\n", src.port(), dst.port()),
    };
    out.extend_from_slice(line.as_bytes());
}

fn encode_v2(addrs: &Addresses, tls: Option<&TlsFacts>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_VERSION << 4 | V2_CMD_PROXY);
    let family_at = out.len();
    out.extend_from_slice(&[FAM_UNSPEC, 0, 0]);

    let family = match addrs {
        Addresses::Inet { src, dst } => match inet_pair(src, dst) {
            InetPair::V4(s, d) => {
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                FAM_TCP4
            }
            InetPair::V6(s, d) => {
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                FAM_TCP6
            }
        },
        Addresses::Unix { src, dst }
            if src.len() <= UNIX_PATH_BYTES && dst.len() <= UNIX_PATH_BYTES =>
        {
            for path in [src, dst] {
                out.extend_from_slice(path);
                out.resize(out.len() + UNIX_PATH_BYTES - path.len(), 0);
            }
            FAM_UNIX_STREAM
        }
        Addresses::Unix { .. } | Addresses::Unknown => FAM_UNSPEC,
    };
    if let Addresses::Inet { src, dst } = addrs {
        out.extend_from_slice(&src.port().to_be_bytes());
        out.extend_from_slice(&dst.port().to_be_bytes());
    }
    if let Some(tls) = tls {
        encode_tls_tlvs(tls, out);
    }

    let len = be_len(out.len() - start - V2_HEADER_BYTES);
    out[family_at] = family;
    out[family_at + 1..family_at + 3].copy_from_slice(&len);
}

/// Writes ALPN, AUTHORITY and SSL (client flags, verify, VERSION, CN, CIPHER) in HAProxy's
/// order. Values over their cap are left out (see the module docs).
fn encode_tls_tlvs(tls: &TlsFacts, out: &mut Vec<u8>) {
    if let Some(alpn) = tls.alpn.as_deref().filter(|a| a.len() <= MAX_ALPN_BYTES) {
        put_tlv(out, PP2_TYPE_ALPN, alpn);
    }
    if let Some(sni) = tls
        .sni
        .as_deref()
        .filter(|s| s.len() <= MAX_AUTHORITY_BYTES)
    {
        put_tlv(out, PP2_TYPE_AUTHORITY, sni.as_bytes());
    }

    let ssl_at = begin_tlv(out, PP2_TYPE_SSL);
    let (client, verify) = match &tls.client_cert {
        None => (PP2_CLIENT_SSL, VERIFY_NOT_VERIFIED),
        Some(cert) => (
            PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS,
            if cert.verified {
                VERIFY_OK
            } else {
                VERIFY_NOT_VERIFIED
            },
        ),
    };
    out.push(client);
    out.extend_from_slice(&verify.to_be_bytes());
    if !tls.version.is_empty() && tls.version.len() <= MAX_TLS_NAME_BYTES {
        put_tlv(out, PP2_SUBTYPE_SSL_VERSION, tls.version.as_bytes());
    }
    let cn = tls
        .client_cert
        .as_ref()
        .and_then(|cert| cert.subject_cn.as_deref());
    if let Some(cn) = cn.filter(|cn| cn.len() <= MAX_CN_BYTES) {
        put_tlv(out, PP2_SUBTYPE_SSL_CN, cn.as_bytes());
    }
    if !tls.cipher.is_empty() && tls.cipher.len() <= MAX_TLS_NAME_BYTES {
        put_tlv(out, PP2_SUBTYPE_SSL_CIPHER, tls.cipher.as_bytes());
    }
    finish_tlv(out, ssl_at);
}

fn put_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let at = begin_tlv(out, kind);
    out.extend_from_slice(value);
    finish_tlv(out, at);
}

/// Writes a TLV's type and a placeholder length; returns where the TLV starts.
fn begin_tlv(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[kind, 0, 0]);
    at
}

/// Fills in the length of the TLV started at `at` from what was written since.
fn finish_tlv(out: &mut [u8], at: usize) {
    let len = be_len(out.len() - at - TLV_HEADER_BYTES);
    out[at + 1..at + TLV_HEADER_BYTES].copy_from_slice(&len);
}

/// A v2 length field. Every value we write is capped, so the largest header is
/// `WORST_CASE_V2_BYTES`, checked at compile time to fit in 16 bits.
fn be_len(len: usize) -> [u8; 2] {
    u16::try_from(len)
        .expect("capped TLV values keep every v2 length under WORST_CASE_V2_BYTES < 64 KiB")
        .to_be_bytes()
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyHeaderError> {
    // Reject a bad version, command or family as soon as its byte arrives.
    let mut command = V2_CMD_PROXY;
    if let Some(&ver_cmd) = buf.get(12) {
        let version = ver_cmd >> 4;
        if version != V2_VERSION {
            return Err(ProxyHeaderError::BadVersion(version));
        }
        command = ver_cmd & 0x0f;
        if command != V2_CMD_LOCAL && command != V2_CMD_PROXY {
            return Err(ProxyHeaderError::BadCommand(command));
        }
    }
    let family = buf.get(13).copied().unwrap_or(FAM_UNSPEC);
    // LOCAL: "the receiver must ... discard the protocol block including the family".
    let address_bytes = if command == V2_CMD_LOCAL {
        0
    } else {
        match family {
            FAM_UNSPEC => 0,
            FAM_TCP4 | FAM_UDP4 => V2_INET4_ADDR_BYTES,
            FAM_TCP6 | FAM_UDP6 => V2_INET6_ADDR_BYTES,
            FAM_UNIX_STREAM | FAM_UNIX_DGRAM => V2_UNIX_ADDR_BYTES,
            other => return Err(ProxyHeaderError::UnsupportedFamily(other)),
        }
    };
    let Some(&[len_hi, len_lo]) = buf.get(14..V2_HEADER_BYTES) else {
        return Ok(None);
    };
    let total = V2_HEADER_BYTES + usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if total > MAX_HEADER_BYTES {
        return Err(ProxyHeaderError::HeaderTooLong { total });
    }
    let Some(block) = buf.get(V2_HEADER_BYTES..total) else {
        return Ok(None);
    };

    let header = if command == V2_CMD_LOCAL {
        Header {
            version: Version::V2,
            addrs: Addresses::Unknown,
            tlvs: Vec::new(),
        }
    } else {
        let Some((addr_block, tlv_block)) = block.split_at_checked(address_bytes) else {
            return Err(ProxyHeaderError::AddressBlockTooShort {
                family,
                needed: address_bytes,
                got: block.len(),
            });
        };
        Header {
            version: Version::V2,
            addrs: v2_addresses(family, addr_block),
            tlvs: parse_tlvs(tlv_block, V2_HEADER_BYTES + address_bytes)?,
        }
    };
    Ok(Some((header, total)))
}

/// Decodes an address block already cut to the family's exact length.
fn v2_addresses(family: u8, block: &[u8]) -> Addresses {
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    match family {
        FAM_TCP4 => {
            let ip =
                |at: usize| Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]);
            Addresses::Inet {
                src: SocketAddr::new(ip(0).into(), port(8)),
                dst: SocketAddr::new(ip(4).into(), port(10)),
            }
        }
        FAM_TCP6 => {
            let ip = |at: usize| {
                let mut octets = [0; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            Addresses::Inet {
                src: SocketAddr::new(ip(0).into(), port(32)),
                dst: SocketAddr::new(ip(16).into(), port(34)),
            }
        }
        FAM_UNIX_STREAM => {
            let path = |field: &[u8]| {
                let end = field.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                field[..end].to_vec()
            };
            let (src, dst) = block.split_at(UNIX_PATH_BYTES);
            Addresses::Unix {
                src: path(src),
                dst: path(dst),
            }
        }
        // AF_UNSPEC and the DGRAM families: "fall back to the UNSPEC mode".
        _ => Addresses::Unknown,
    }
}

/// Splits the TLV area (which starts at header byte `base`) and checks the SSL TLV inside.
fn parse_tlvs(bytes: &[u8], base: usize) -> Result<Vec<(u8, Vec<u8>)>, ProxyHeaderError> {
    let tlvs = split_tlvs(bytes, base).map_err(|o| ProxyHeaderError::TlvOverrun {
        kind: o.kind,
        offset: o.offset,
        needed: o.needed,
        left: o.left,
    })?;
    let mut out = Vec::with_capacity(tlvs.len());
    for RawTlv {
        kind,
        value,
        offset,
    } in tlvs
    {
        if kind == PP2_TYPE_SSL {
            split_ssl_tlv(value, offset)?;
        }
        out.push((kind, value.to_vec()));
    }
    Ok(out)
}

/// Splits an SSL TLV value (starting at header byte `base`) into client flags, verify and
/// its sub-TLVs, each of which must fit inside it.
fn split_ssl_tlv(value: &[u8], base: usize) -> Result<SslParts<'_>, ProxyHeaderError> {
    let Some((&[client, v0, v1, v2, v3], subs)) = value.split_first_chunk::<SSL_TLV_FIXED_BYTES>()
    else {
        return Err(ProxyHeaderError::SslTlvTooShort {
            offset: base.saturating_sub(TLV_HEADER_BYTES),
            len: value.len(),
        });
    };
    let verify = u32::from_be_bytes([v0, v1, v2, v3]);
    let subs = split_tlvs(subs, base + SSL_TLV_FIXED_BYTES).map_err(|o| {
        ProxyHeaderError::SubTlvOverrun {
            kind: o.kind,
            offset: o.offset,
            needed: o.needed,
            left: o.left,
        }
    })?;
    Ok((client, verify, subs))
}

/// Client flags, verify, and the sub-TLVs of an SSL TLV.
type SslParts<'a> = (u8, u32, Vec<RawTlv<'a>>);

/// One TLV borrowed from the header, with where its value starts (for error offsets).
struct RawTlv<'a> {
    kind: u8,
    value: &'a [u8],
    offset: usize,
}

/// A TLV that does not fit in the bytes left for it.
struct Overrun {
    kind: u8,
    offset: usize,
    needed: usize,
    left: usize,
}

/// Splits a run of TLVs that starts at header byte `base`; the run must end exactly at a TLV
/// boundary.
fn split_tlvs(bytes: &[u8], base: usize) -> Result<Vec<RawTlv<'_>>, Overrun> {
    let mut tlvs = Vec::new();
    let mut rest = bytes;
    let mut offset = base;
    while let Some(&kind) = rest.first() {
        let overrun = |needed| Overrun {
            kind,
            offset,
            needed,
            left: rest.len(),
        };
        let Some(&[_, len_hi, len_lo]) = rest.get(..TLV_HEADER_BYTES) else {
            return Err(overrun(TLV_HEADER_BYTES));
        };
        let needed = TLV_HEADER_BYTES + usize::from(u16::from_be_bytes([len_hi, len_lo]));
        let Some((tlv, after)) = rest.split_at_checked(needed) else {
            return Err(overrun(needed));
        };
        tlvs.push(RawTlv {
            kind,
            value: &tlv[TLV_HEADER_BYTES..],
            offset: offset + TLV_HEADER_BYTES,
        });
        rest = after;
        offset += needed;
    }
    Ok(tlvs)
}

fn utf8(kind: u8, value: &[u8]) -> Result<String, ProxyHeaderError> {
    String::from_utf8(value.to_vec()).map_err(|_| ProxyHeaderError::TlvNotUtf8 { kind })
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyHeaderError> {
    let window = &buf[..buf.len().min(V1_MAX_LINE_BYTES)];
    let Some(cr_at) = find_crlf(window)? else {
        if buf.len() >= V1_MAX_LINE_BYTES {
            return Err(ProxyHeaderError::V1LineTooLong);
        }
        return Ok(None);
    };
    // parse() only sends us here when the bytes seen so far match "PROXY ", and a CR inside
    // those six bytes would not have matched, so the line holds the whole prefix.
    let fields = &buf[V1_PREFIX.len()..cr_at];
    let header = Header {
        version: Version::V1,
        addrs: parse_v1_fields(fields)?,
        tlvs: Vec::new(),
    };
    Ok(Some((header, cr_at + 2)))
}

/// Finds the CR of the line's CRLF; a CR or LF anywhere else is an error ("the receiver must
/// not tolerate a single CR or LF character to end the line").
fn find_crlf(window: &[u8]) -> Result<Option<usize>, ProxyHeaderError> {
    for (at, &byte) in window.iter().enumerate() {
        match byte {
            b'\n' => return Err(ProxyHeaderError::V1NotTerminated { at }),
            b'\r' => {
                return match window.get(at + 1) {
                    Some(b'\n') => Ok(Some(at)),
                    Some(_) => Err(ProxyHeaderError::V1NotTerminated { at }),
                    None => Ok(None),
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Parses what follows "PROXY " up to the CRLF.
fn parse_v1_fields(fields: &[u8]) -> Result<Addresses, ProxyHeaderError> {
    // "For UNKNOWN, ... the receiver must ignore anything presented before the CRLF".
    if fields == b"UNKNOWN" || fields.starts_with(b"UNKNOWN ") {
        return Ok(Addresses::Unknown);
    }
    let bad = |field: &'static str, value: &[u8]| ProxyHeaderError::V1BadField {
        field,
        value: String::from_utf8_lossy(value).into_owned(),
    };
    // Each field is checked as it is taken, so the error names the first one that is wrong.
    let mut parts = fields.split(|&b| b == b' ');
    let mut next = |field: &'static str| parts.next().ok_or_else(|| bad(field, b""));
    let protocol = next("protocol")?;
    let v6 = match protocol {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(bad("protocol", protocol)),
    };
    let ip = |field: &'static str, text: &[u8]| {
        let text_str = std::str::from_utf8(text).map_err(|_| bad(field, text))?;
        let parsed = if v6 {
            text_str.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            // std rejects leading zeros in IPv4 octets, as the spec asks.
            text_str.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        parsed.map_err(|_| bad(field, text))
    };
    let port = |field: &'static str, text: &[u8]| v1_port(text).ok_or_else(|| bad(field, text));
    let src = ip("source address", next("source address")?)?;
    let dst = ip("destination address", next("destination address")?)?;
    let src_port = port("source port", next("source port")?)?;
    let dst_port = port("destination port", next("destination port")?)?;
    if let Some(extra) = parts.next() {
        return Err(bad("trailing field", extra));
    }
    Ok(Addresses::Inet {
        src: SocketAddr::new(src, src_port),
        dst: SocketAddr::new(dst, dst_port),
    })
}

/// A decimal port in 0..=65535 without leading zeros ("to avoid any possible confusion with
/// octal numbers") or a sign.
fn v1_port(text: &[u8]) -> Option<u16> {
    let plain_digits = text.iter().all(u8::is_ascii_digit);
    let leading_zero = text.len() > 1 && text.first() == Some(&b'0');
    if text.is_empty() || text.len() > 5 || !plain_digits || leading_zero {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// The most bytes [`parse`] ever needs before it answers, and so the most a peer can make the
/// connection buffer before the TLS handshake. v1 lines are at most 107 bytes; a v2 header is
/// 16 + its length field, which could say 64 KiB, so we cap the total: the largest header we
/// write ourselves is 1149 bytes (AF_UNIX plus every TLS TLV at its cap,
/// `WORST_CASE_V2_BYTES`), and 2 KiB leaves room for the TLVs other senders add (AWS's VPC
/// endpoint id, CRC32C, a 128-byte UNIQUE_ID, NETNS). HAProxy bounds the same thing by its
/// buffer size.
pub const MAX_HEADER_BYTES: usize = 2048;
/// Read size in [`read_header`]: a v1 line is at most 107 bytes and v2 headers with a few
/// TLVs fit too; longer ones take a few reads, up to the parser's limit.
const PROXY_HEADER_READ_BYTES: usize = 256;

/// Unix socket path field of a v2 address block (`sizeof(sun_path)` on Linux).
pub const UNIX_PATH_BYTES: usize = 108;
/// Longest ALPN value we send: one ALPN protocol name is at most 255 bytes (RFC 7301).
pub const MAX_ALPN_BYTES: usize = 255;
/// Longest AUTHORITY (SNI) value we send: a DNS name is at most 253 bytes, SNI's own length
/// byte allows 255.
pub const MAX_AUTHORITY_BYTES: usize = 255;
/// Longest TLS version or cipher name we send; the longest IANA suite name is 45 bytes.
pub const MAX_TLS_NAME_BYTES: usize = 64;
/// Longest client certificate CN we send: X.520's upper bound of 64 characters, at up to four
/// UTF-8 bytes each.
pub const MAX_CN_BYTES: usize = 256;

/// v2 TLV types and SSL sub-TLV types from the spec's registry (section 2.2).
pub const PP2_TYPE_ALPN: u8 = 0x01;
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
pub const PP2_TYPE_CRC32C: u8 = 0x03;
pub const PP2_TYPE_NOOP: u8 = 0x04;
pub const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
pub const PP2_TYPE_SSL: u8 = 0x20;
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
pub const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
pub const PP2_SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
pub const PP2_SUBTYPE_SSL_KEY_ALG: u8 = 0x25;
pub const PP2_TYPE_NETNS: u8 = 0x30;

/// Bits of the SSL TLV's `client` byte (section 2.2.6).
pub const PP2_CLIENT_SSL: u8 = 0x01;
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// SSL TLV `verify`: zero means a client certificate was presented and verified; any other
/// value means it was not (1 is what we send for "no certificate" and "not verified").
const VERIFY_OK: u32 = 0;
const VERIFY_NOT_VERIFIED: u32 = 1;

/// v1: the longest line a receiver must accept, CRLF included ("PROXY UNKNOWN" with two full
/// IPv6 addresses and ports, spec section 2.1).
const V1_MAX_LINE_BYTES: usize = 107;
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// v2: the 12-byte signature, then version/command, family/protocol and a 16-bit length.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V2_HEADER_BYTES: usize = 16;
const V2_VERSION: u8 = 0x2;
const V2_CMD_LOCAL: u8 = 0x0;
const V2_CMD_PROXY: u8 = 0x1;

/// v2 family/protocol bytes: address family in the high nibble, transport in the low one.
const FAM_UNSPEC: u8 = 0x00;
const FAM_TCP4: u8 = 0x11;
const FAM_UDP4: u8 = 0x12;
const FAM_TCP6: u8 = 0x21;
const FAM_UDP6: u8 = 0x22;
const FAM_UNIX_STREAM: u8 = 0x31;
const FAM_UNIX_DGRAM: u8 = 0x32;

/// v2 address block sizes: two addresses, plus two 16-bit ports for IP families.
const V2_INET4_ADDR_BYTES: usize = 2 * 4 + 2 * 2;
const V2_INET6_ADDR_BYTES: usize = 2 * 16 + 2 * 2;
const V2_UNIX_ADDR_BYTES: usize = 2 * UNIX_PATH_BYTES;

/// A TLV's type byte and 16-bit length.
const TLV_HEADER_BYTES: usize = 3;
/// The SSL TLV's `client` byte and 32-bit `verify` before its sub-TLVs.
const SSL_TLV_FIXED_BYTES: usize = 5;

/// The largest header [`encode`] can write: AF_UNIX addresses plus every TLS value at its cap.
const WORST_CASE_V2_BYTES: usize = V2_HEADER_BYTES
    + V2_UNIX_ADDR_BYTES
    + (TLV_HEADER_BYTES + MAX_ALPN_BYTES)
    + (TLV_HEADER_BYTES + MAX_AUTHORITY_BYTES)
    + (TLV_HEADER_BYTES + SSL_TLV_FIXED_BYTES)
    + 2 * (TLV_HEADER_BYTES + MAX_TLS_NAME_BYTES)
    + (TLV_HEADER_BYTES + MAX_CN_BYTES);
// What we send, our own parser accepts; and every length we write fits its 16-bit field.
const _: () = assert!(WORST_CASE_V2_BYTES <= MAX_HEADER_BYTES);
const _: () = assert!(V1_MAX_LINE_BYTES <= MAX_HEADER_BYTES);
const _: () = assert!(MAX_HEADER_BYTES - V2_HEADER_BYTES <= u16::MAX as usize);

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    const SIG: &[u8] = b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A";

    fn inet(src: &str, dst: &str) -> Addresses {
        Addresses::Inet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    fn encoded(version: Version, addrs: &Addresses, tls: Option<&TlsFacts>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(version, addrs, tls, &mut out);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Parses a buffer that must hold exactly one complete header.
    fn parse_whole(buf: &[u8]) -> Header {
        let (header, used) = parse(buf).unwrap().expect("a complete header");
        assert_eq!(used, buf.len());
        header
    }

    fn tls13() -> TlsFacts {
        TlsFacts {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_128_GCM_SHA256".into(),
            sni: Some("example.com".into()),
            alpn: Some(b"h2".to_vec()),
            client_cert: None,
        }
    }

    // ---- exact bytes, v1 ----

    #[test]
    fn v1_ipv4_is_the_spec_example_line() {
        let addrs = inet("192.168.0.1:56324", "192.168.0.11:443");
        let out = encoded(Version::V1, &addrs, Some(&tls13()));
        assert_eq!(out, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        assert_eq!(parse_whole(&out).addrs, addrs);
    }

    #[test]
    fn v1_ipv6_uses_tcp6_and_compressed_addresses() {
        let addrs = inet("[2001:db8::1]:56324", "[2001:db8::2]:443");
        let out = encoded(Version::V1, &addrs, None);
        assert_eq!(out, b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n");
        assert_eq!(parse_whole(&out).addrs, addrs);
    }

    #[test]
    fn v1_unix_and_unknown_clients_write_unknown() {
        let unix = Addresses::Unix {
            src: Vec::new(),
            dst: b"/run/proxy.sock".to_vec(),
        };
        for addrs in [unix, Addresses::Unknown] {
            let out = encoded(Version::V1, &addrs, None);
            assert_eq!(out, b"PROXY UNKNOWN\r\n");
            assert_eq!(parse_whole(&out).addrs, Addresses::Unknown);
        }
    }

    #[test]
    fn v1_mixed_families_are_sent_as_mapped_ipv6() {
        let addrs = inet("10.0.0.1:1000", "[2001:db8::2]:443");
        let out = encoded(Version::V1, &addrs, None);
        assert_eq!(out, b"PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 1000 443\r\n");
        assert_eq!(
            parse_whole(&out).addrs,
            inet("[::ffff:10.0.0.1]:1000", "[2001:db8::2]:443")
        );
    }

    #[test]
    fn encode_appends_to_what_is_already_in_the_buffer() {
        let mut out = b"already here".to_vec();
        encode(Version::V2, &inet("1.2.3.4:1", "5.6.7.8:2"), None, &mut out);
        assert_eq!(&out[..12], b"already here");
        assert_eq!(
            parse_whole(&out[12..]).addrs,
            inet("1.2.3.4:1", "5.6.7.8:2")
        );
    }

    // ---- exact bytes, v2 ----

    #[test]
    fn v2_ipv4_bytes() {
        let addrs = inet("192.168.0.1:56324", "192.168.0.11:443");
        let expected: &[u8] = &[
            // signature
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
            0x21, // version 2, command PROXY
            0x11, // AF_INET, STREAM
            0x00, 0x0C, // 12 address bytes follow
            192, 168, 0, 1, // source
            192, 168, 0, 11, // destination
            0xDC, 0x04, // source port 56324
            0x01, 0xBB, // destination port 443
        ];
        let out = encoded(Version::V2, &addrs, None);
        assert_eq!(out, expected);
        let header = parse_whole(&out);
        assert_eq!(header.version, Version::V2);
        assert_eq!(header.addrs, addrs);
        assert!(header.tlvs.is_empty());
    }

    #[test]
    fn v2_ipv6_bytes() {
        let addrs = inet("[2001:db8::1]:56324", "[2001:db8::2]:443");
        let expected = cat(&[
            SIG,
            &[0x21, 0x21, 0x00, 0x24], // PROXY, AF_INET6 STREAM, 36 bytes
            &[
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            ],
            &[
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
            ],
            &[0xDC, 0x04, 0x01, 0xBB],
        ]);
        let out = encoded(Version::V2, &addrs, None);
        assert_eq!(out, expected);
        assert_eq!(parse_whole(&out).addrs, addrs);
    }

    #[test]
    fn v2_unix_bytes_pad_paths_to_108() {
        let addrs = Addresses::Unix {
            src: b"/tmp/c.sock".to_vec(),
            dst: b"/run/echo.sock".to_vec(),
        };
        let expected = cat(&[
            SIG,
            &[0x21, 0x31, 0x00, 0xD8], // PROXY, AF_UNIX STREAM, 216 bytes
            b"/tmp/c.sock",
            &[0; 108 - 11],
            b"/run/echo.sock",
            &[0; 108 - 14],
        ]);
        let out = encoded(Version::V2, &addrs, None);
        assert_eq!(out, expected);
        assert_eq!(parse_whole(&out).addrs, addrs);
    }

    #[test]
    fn v2_unknown_and_overlong_unix_paths_send_af_unspec() {
        let long = Addresses::Unix {
            src: vec![b'a'; 109],
            dst: b"/run/echo.sock".to_vec(),
        };
        for addrs in [Addresses::Unknown, long] {
            let out = encoded(Version::V2, &addrs, None);
            assert_eq!(out, cat(&[SIG, &[0x21, 0x00, 0x00, 0x00]]));
            assert_eq!(parse_whole(&out).addrs, Addresses::Unknown);
        }
    }

    #[test]
    fn v2_tls_tlvs_bytes() {
        let addrs = inet("192.168.0.1:56324", "192.168.0.11:443");
        let expected = cat(&[
            SIG,
            &[0x21, 0x11, 0x00, 0x4A], // 12 address bytes + 5 + 14 + 43 TLV bytes = 74
            &[192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB],
            &[0x01, 0x00, 0x02],
            b"h2", // ALPN
            &[0x02, 0x00, 0x0B],
            b"example.com",            // AUTHORITY
            &[0x20, 0x00, 0x28],       // SSL, 40 bytes:
            &[0x01],                   //   client: PP2_CLIENT_SSL
            &[0x00, 0x00, 0x00, 0x01], // verify: no verified client certificate
            &[0x21, 0x00, 0x07],
            b"TLSv1.3", //   PP2_SUBTYPE_SSL_VERSION
            &[0x23, 0x00, 0x16],
            b"TLS_AES_128_GCM_SHA256", //   PP2_SUBTYPE_SSL_CIPHER
        ]);
        let out = encoded(Version::V2, &addrs, Some(&tls13()));
        assert_eq!(out, expected);

        let header = parse_whole(&out);
        assert_eq!(header.addrs, addrs);
        assert_eq!(header.tlv(PP2_TYPE_ALPN), Some(&b"h2"[..]));
        assert_eq!(header.tlv(PP2_TYPE_AUTHORITY), Some(&b"example.com"[..]));
        assert_eq!(header.tlv(PP2_TYPE_NETNS), None);
        assert_eq!(header.tls_facts().unwrap(), Some(tls13()));
    }

    #[test]
    fn v2_client_cert_sets_cert_flags_verify_zero_and_cn() {
        let addrs = inet("192.168.0.1:56324", "192.168.0.11:443");
        let tls = TlsFacts {
            sni: None,
            alpn: None,
            client_cert: Some(ClientCert {
                verified: true,
                subject_cn: Some("alice".into()),
            }),
            ..tls13()
        };
        let expected = cat(&[
            SIG,
            &[0x21, 0x11, 0x00, 0x3F], // 12 + 51 = 63
            &[192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB],
            &[0x20, 0x00, 0x30],       // SSL, 48 bytes:
            &[0x07],                   //   SSL | CERT_CONN | CERT_SESS
            &[0x00, 0x00, 0x00, 0x00], // verify: OK
            &[0x21, 0x00, 0x07],
            b"TLSv1.3",
            &[0x22, 0x00, 0x05],
            b"alice", //   PP2_SUBTYPE_SSL_CN
            &[0x23, 0x00, 0x16],
            b"TLS_AES_128_GCM_SHA256",
        ]);
        let out = encoded(Version::V2, &addrs, Some(&tls));
        assert_eq!(out, expected);
        assert_eq!(parse_whole(&out).tls_facts().unwrap(), Some(tls));
    }

    #[test]
    fn v2_unverified_client_cert_has_nonzero_verify() {
        let tls = TlsFacts {
            client_cert: Some(ClientCert {
                verified: false,
                subject_cn: None,
            }),
            ..tls13()
        };
        let out = encoded(Version::V2, &Addresses::Unknown, Some(&tls));
        let header = parse_whole(&out);
        let ssl = header.tlv(PP2_TYPE_SSL).unwrap();
        assert_eq!(
            ssl[0],
            PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
        );
        assert_ne!(ssl[1..5], [0, 0, 0, 0]);
        assert_eq!(header.tls_facts().unwrap(), Some(tls));
    }

    #[test]
    fn largest_header_we_write_fits_the_parse_limit() {
        let tls = TlsFacts {
            version: "v".repeat(MAX_TLS_NAME_BYTES),
            cipher: "c".repeat(MAX_TLS_NAME_BYTES),
            sni: Some("s".repeat(MAX_AUTHORITY_BYTES)),
            alpn: Some(vec![b'a'; MAX_ALPN_BYTES]),
            client_cert: Some(ClientCert {
                verified: true,
                subject_cn: Some("n".repeat(MAX_CN_BYTES)),
            }),
        };
        assert!(tls.fits_caps());
        let addrs = Addresses::Unix {
            src: vec![b'/'; UNIX_PATH_BYTES],
            dst: vec![b'/'; UNIX_PATH_BYTES],
        };
        let out = encoded(Version::V2, &addrs, Some(&tls));
        assert_eq!(out.len(), WORST_CASE_V2_BYTES);
        assert!(out.len() <= MAX_HEADER_BYTES);
        let header = parse_whole(&out);
        assert_eq!(header.addrs, addrs);
        assert_eq!(header.tls_facts().unwrap(), Some(tls));
    }

    #[test]
    fn values_over_their_cap_are_left_out_not_cut() {
        let tls = TlsFacts {
            sni: Some("s".repeat(MAX_AUTHORITY_BYTES + 1)),
            cipher: "c".repeat(70_000),
            ..tls13()
        };
        assert!(!tls.fits_caps());
        let out = encoded(Version::V2, &Addresses::Unknown, Some(&tls));
        let header = parse_whole(&out);
        assert_eq!(header.tlv(PP2_TYPE_AUTHORITY), None);
        let facts = header.tls_facts().unwrap().unwrap();
        assert_eq!(facts.cipher, "");
        assert_eq!(facts.version, "TLSv1.3");
    }

    #[test]
    fn version_and_cipher_not_reported_send_no_tlv() {
        // native-tls reports neither: the SSL TLV goes out without them, not with "".
        let tls = TlsFacts {
            version: String::new(),
            cipher: String::new(),
            ..tls13()
        };
        let without = encoded(Version::V2, &Addresses::Unknown, Some(&tls));
        let with = encoded(Version::V2, &Addresses::Unknown, Some(&tls13()));
        let sub_tlvs = 2 * 3 + "TLSv1.3".len() + tls13().cipher.len();
        assert_eq!(with.len() - without.len(), sub_tlvs);
        let facts = parse_whole(&without).tls_facts().unwrap().unwrap();
        assert_eq!(facts, tls);
    }

    // ---- parsing what others send ----

    #[test]
    fn v1_unknown_ignores_the_rest_of_the_line() {
        let line = b"PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535\r\nGET /";
        let (header, used) = parse(line).unwrap().unwrap();
        assert_eq!(header.addrs, Addresses::Unknown);
        assert_eq!(&line[used..], b"GET /");
    }

    #[test]
    fn v1_accepts_the_longest_line_the_spec_allows() {
        let ip6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY UNKNOWN {ip6} {ip6} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX_LINE_BYTES);
        assert_eq!(parse_whole(line.as_bytes()).addrs, Addresses::Unknown);
        let line = format!("PROXY TCP6 {ip6} {ip6} 65535 65535\r\n");
        assert_eq!(
            parse_whole(line.as_bytes()).addrs,
            inet(&format!("[{ip6}]:65535"), &format!("[{ip6}]:65535"))
        );
    }

    #[test]
    fn v2_local_skips_its_address_block() {
        // A health check that carries addresses anyway: "Receivers MUST always consider this
        // field to skip the appropriate number of bytes".
        let buf = cat(&[SIG, &[0x20, 0x11, 0x00, 0x0C], &[1; 12], b"after"]);
        let (header, used) = parse(&buf).unwrap().unwrap();
        assert_eq!(header.addrs, Addresses::Unknown);
        assert!(header.tlvs.is_empty());
        assert_eq!(&buf[used..], b"after");
    }

    #[test]
    fn v2_dgram_is_unknown_but_keeps_its_tlvs() {
        let buf = cat(&[
            SIG,
            &[0x21, 0x12, 0x00, 0x11],
            &[1; 12],
            &[0x04, 0x00, 0x02, 9, 9],
        ]);
        let header = parse_whole(&buf);
        assert_eq!(header.addrs, Addresses::Unknown);
        assert_eq!(header.tlvs, vec![(PP2_TYPE_NOOP, vec![9, 9])]);
        assert_eq!(header.tls_facts().unwrap(), None);
    }

    #[test]
    fn v2_unix_paths_keep_leading_nuls_of_abstract_sockets() {
        let buf = cat(&[
            SIG,
            &[0x21, 0x31, 0x00, 0xD8],
            b"\0abs",
            &[0; 104],
            &[0; 108],
        ]);
        assert_eq!(
            parse_whole(&buf).addrs,
            Addresses::Unix {
                src: b"\0abs".to_vec(),
                dst: Vec::new()
            }
        );
    }

    #[test]
    fn ssl_tlv_without_the_ssl_flag_means_no_tls() {
        let buf = cat(&[
            SIG,
            &[0x21, 0x00, 0x00, 0x08],
            &[0x20, 0x00, 0x05, 0, 0, 0, 0, 0],
        ]);
        assert_eq!(parse_whole(&buf).tls_facts().unwrap(), None);
    }

    #[test]
    fn non_utf8_authority_is_reported_by_tls_facts() {
        let buf = cat(&[
            SIG,
            &[0x21, 0x00, 0x00, 0x0C],
            &[0x02, 0x00, 0x01, 0xFF],
            &[0x20, 0x00, 0x05, 0x01, 0, 0, 0, 1],
        ]);
        let header = parse_whole(&buf);
        assert_eq!(
            header.tls_facts(),
            Err(ProxyHeaderError::TlvNotUtf8 {
                kind: PP2_TYPE_AUTHORITY
            })
        );
    }

    #[test]
    fn every_strict_prefix_needs_more_and_trailing_bytes_stay() {
        let headers = [
            encoded(
                Version::V1,
                &inet("192.168.0.1:56324", "192.168.0.11:443"),
                None,
            ),
            encoded(Version::V1, &inet("[2001:db8::1]:1", "[::1]:2"), None),
            encoded(Version::V1, &Addresses::Unknown, None),
            encoded(
                Version::V2,
                &inet("192.168.0.1:56324", "192.168.0.11:443"),
                None,
            ),
            encoded(
                Version::V2,
                &inet("[2001:db8::1]:1", "[::1]:2"),
                Some(&tls13()),
            ),
            encoded(
                Version::V2,
                &Addresses::Unix {
                    src: Vec::new(),
                    dst: b"/run/echo.sock".to_vec(),
                },
                Some(&tls13()),
            ),
            encoded(Version::V2, &Addresses::Unknown, None),
        ];
        for header in headers {
            for end in 0..header.len() {
                assert_eq!(
                    parse(&header[..end]),
                    Ok(None),
                    "prefix of {end} bytes of {header:?}"
                );
            }
            let mut with_data = header.clone();
            with_data.extend_from_slice(b"\r\n\r\nPROXY GET / HTTP/1.1\r\n");
            let (_, used) = parse(&with_data).unwrap().unwrap();
            assert_eq!(used, header.len());
        }
    }

    // ---- malformed input ----

    #[test]
    fn malformed_headers_give_the_error_that_names_the_problem() {
        use ProxyHeaderError as E;
        let v1_bad = |field: &'static str, value: &str| E::V1BadField {
            field,
            value: value.into(),
        };
        let cases: Vec<(Vec<u8>, ProxyHeaderError)> = vec![
            (b"GET / HTTP/1.1\r\n".to_vec(), E::BadSignature),
            (b"\x16\x03\x01\x02\x00".to_vec(), E::BadSignature),
            (b"PROXY\r\n".to_vec(), E::BadSignature),
            (cat(&[SIG, &[0x11]]), E::BadVersion(1)),
            (cat(&[SIG, &[0x22]]), E::BadCommand(2)),
            (cat(&[SIG, &[0x21, 0x41]]), E::UnsupportedFamily(0x41)),
            (cat(&[SIG, &[0x21, 0x10]]), E::UnsupportedFamily(0x10)),
            (cat(&[SIG, &[0x21, 0x13]]), E::UnsupportedFamily(0x13)),
            (
                cat(&[SIG, &[0x21, 0x11, 0x00, 0x08], &[0; 8]]),
                E::AddressBlockTooShort {
                    family: 0x11,
                    needed: 12,
                    got: 8,
                },
            ),
            (
                cat(&[SIG, &[0x21, 0x31, 0x00, 0x6C], &[0; 108]]),
                E::AddressBlockTooShort {
                    family: 0x31,
                    needed: 216,
                    got: 108,
                },
            ),
            (
                cat(&[SIG, &[0x21, 0x11, 0xFF, 0xFF]]),
                E::HeaderTooLong { total: 16 + 0xFFFF },
            ),
            (
                // TLV says 5 value bytes, 2 are there.
                cat(&[
                    SIG,
                    &[0x21, 0x00, 0x00, 0x05],
                    &[0x01, 0x00, 0x05, b'h', b'2'],
                ]),
                E::TlvOverrun {
                    kind: 0x01,
                    offset: 16,
                    needed: 8,
                    left: 5,
                },
            ),
            (
                // A lone byte after the last TLV: not even a TLV header.
                cat(&[
                    SIG,
                    &[0x21, 0x00, 0x00, 0x06],
                    &[0x04, 0x00, 0x02, 0, 0],
                    &[0x30],
                ]),
                E::TlvOverrun {
                    kind: 0x30,
                    offset: 21,
                    needed: 3,
                    left: 1,
                },
            ),
            (
                cat(&[SIG, &[0x21, 0x00, 0x00, 0x06], &[0x20, 0x00, 0x03, 1, 0, 0]]),
                E::SslTlvTooShort { offset: 16, len: 3 },
            ),
            (
                // The VERSION sub-TLV claims 9 bytes inside an SSL TLV with 7 left.
                cat(&[
                    SIG,
                    &[0x21, 0x00, 0x00, 0x0F],
                    &[0x20, 0x00, 0x0C, 0x01, 0, 0, 0, 0],
                    &[0x21, 0x00, 0x09, b'T', b'L', b'S', b'v'],
                ]),
                E::SubTlvOverrun {
                    kind: 0x21,
                    offset: 24,
                    needed: 12,
                    left: 7,
                },
            ),
            ([b'P'; V1_MAX_LINE_BYTES].to_vec(), E::BadSignature),
            (
                cat(&[b"PROXY UNKNOWN ", &[b'x'; V1_MAX_LINE_BYTES - 14]]),
                E::V1LineTooLong,
            ),
            (
                cat(&[b"PROXY UNKNOWN ", &[b'x'; V1_MAX_LINE_BYTES - 15], b"\r\n"]),
                E::V1LineTooLong,
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
                E::V1NotTerminated { at: 30 },
            ),
            (
                b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n".to_vec(),
                E::V1NotTerminated { at: 18 },
            ),
            (
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                v1_bad("protocol", "TCP5"),
            ),
            (
                b"PROXY UNKNOWNX\r\n".to_vec(),
                v1_bad("protocol", "UNKNOWNX"),
            ),
            (
                b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                v1_bad("protocol", "tcp4"),
            ),
            (
                b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                v1_bad("source address", "01.2.3.4"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n".to_vec(),
                v1_bad("destination address", "::1"),
            ),
            (
                b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n".to_vec(),
                v1_bad("source address", "1.2.3.4"),
            ),
            (
                b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n".to_vec(),
                v1_bad("destination address", ""),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n".to_vec(),
                v1_bad("source port", "080"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n".to_vec(),
                v1_bad("source port", "+80"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n".to_vec(),
                v1_bad("destination port", "65536"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(),
                v1_bad("destination port", ""),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n".to_vec(),
                v1_bad("trailing field", "3"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n".to_vec(),
                v1_bad("trailing field", ""),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse(&input),
                Err(expected),
                "input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn errors_name_what_was_wrong() {
        let err = parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "PROXY v1 line has a bad source port: \"080\""
        );
        let err = parse(&cat(&[SIG, &[0x21, 0x11, 0xFF, 0xFF]])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PROXY v2 header announces 65551 bytes, over the 2048-byte limit"
        );
        let err = parse(&[b'x'; 3]).unwrap_err();
        assert!(
            err.to_string().starts_with("not a PROXY protocol header"),
            "{err}"
        );
    }

    // ---- properties ----

    fn arb_ip_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
        prop_oneof![
            (any::<u32>(), any::<u32>())
                .prop_map(|(s, d)| (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into())),
            (any::<u128>(), any::<u128>())
                .prop_map(|(s, d)| (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())),
        ]
    }

    /// A `sun_path` as it comes back from a v2 header: at most 108 bytes, no trailing NUL.
    fn arb_unix_path() -> impl Strategy<Value = Vec<u8>> {
        vec(any::<u8>(), 0..=UNIX_PATH_BYTES).prop_map(|mut path| {
            while path.last() == Some(&0) {
                path.pop();
            }
            path
        })
    }

    fn arb_addresses() -> impl Strategy<Value = Addresses> {
        prop_oneof![
            (arb_ip_pair(), any::<u16>(), any::<u16>()).prop_map(|((s, d), sp, dp)| {
                Addresses::Inet {
                    src: SocketAddr::new(s, sp),
                    dst: SocketAddr::new(d, dp),
                }
            }),
            (arb_unix_path(), arb_unix_path()).prop_map(|(src, dst)| Addresses::Unix { src, dst }),
            Just(Addresses::Unknown),
        ]
    }

    /// TLS facts within the caps (`.{0,N}` chars are at most 4 bytes each).
    fn arb_tls() -> impl Strategy<Value = TlsFacts> {
        let cert = proptest::option::of((any::<bool>(), proptest::option::of(".{0,64}")).prop_map(
            |(verified, subject_cn)| ClientCert {
                verified,
                subject_cn,
            },
        ));
        (
            ".{0,16}",
            ".{0,16}",
            proptest::option::of(".{0,63}"),
            proptest::option::of(vec(any::<u8>(), 0..=MAX_ALPN_BYTES)),
            cert,
        )
            .prop_map(|(version, cipher, sni, alpn, client_cert)| TlsFacts {
                version,
                cipher,
                sni,
                alpn,
                client_cert,
            })
    }

    fn arb_version() -> impl Strategy<Value = Version> {
        prop_oneof![Just(Version::V1), Just(Version::V2)]
    }

    /// Checks the promises `parse` makes on any input, and that what it accepts survives an
    /// encode/parse round trip.
    fn check_parse_contract(buf: &[u8]) {
        match parse(buf) {
            Ok(Some((header, used))) => {
                assert!(
                    used <= buf.len() && used <= MAX_HEADER_BYTES,
                    "consumed {used}"
                );
                let tls = header.tls_facts().ok().flatten();
                let out = encoded(header.version, &header.addrs, tls.as_ref());
                let again = parse_whole(&out);
                assert_eq!(again.addrs, header.addrs);
                if let Some(tls) = tls.filter(TlsFacts::fits_caps) {
                    if header.version == Version::V2 {
                        assert_eq!(again.tls_facts().unwrap(), Some(tls));
                    }
                }
            }
            Ok(None) => assert!(
                buf.len() < MAX_HEADER_BYTES,
                "asked for more after {}",
                buf.len()
            ),
            Err(err) => assert!(!err.to_string().is_empty()),
        }
    }

    /// A v2 header with a valid start and a TLV area made of arbitrary TLVs (well-formed more
    /// often than random bytes would be, so the SSL sub-TLV checks get exercised).
    fn arb_v2_with_tlvs() -> impl Strategy<Value = Vec<u8>> {
        let tlv = (
            prop_oneof![Just(0x20_u8), any::<u8>()],
            vec(any::<u8>(), 0..40),
            any::<bool>(),
        )
            .prop_map(|(kind, value, honest)| {
                let len = if honest { value.len() } else { value.len() + 3 };
                cat(&[&[kind], &(len as u16).to_be_bytes(), &value])
            });
        (
            prop::sample::select(vec![0x20_u8, 0x21]),
            prop::sample::select(vec![0x00_u8, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]),
            vec(any::<u8>(), 0..=216),
            vec(tlv, 0..6),
        )
            .prop_map(|(ver_cmd, fam, addr, tlvs)| {
                let payload = cat(&[&addr, &tlvs.concat()]);
                let len = (payload.len() as u16).to_be_bytes();
                cat(&[SIG, &[ver_cmd, fam], &len, &payload])
            })
    }

    proptest! {
        #[test]
        fn round_trip(
            version in arb_version(),
            addrs in arb_addresses(),
            tls in proptest::option::of(arb_tls()),
            trailing in vec(any::<u8>(), 0..32),
        ) {
            let header = encoded(version, &addrs, tls.as_ref());
            prop_assert!(header.len() <= MAX_HEADER_BYTES);
            for end in 0..header.len() {
                prop_assert_eq!(parse(&header[..end]), Ok(None));
            }
            let buf = cat(&[&header, &trailing]);
            let (parsed, used) = parse(&buf).unwrap().unwrap();
            prop_assert_eq!(used, header.len());
            prop_assert_eq!(parsed.version, version);
            match version {
                Version::V1 => {
                    let expected = match addrs {
                        Addresses::Inet { .. } => addrs,
                        Addresses::Unix { .. } | Addresses::Unknown => Addresses::Unknown,
                    };
                    prop_assert_eq!(parsed.addrs, expected);
                    prop_assert!(parsed.tlvs.is_empty());
                }
                Version::V2 => {
                    prop_assert_eq!(&parsed.addrs, &addrs);
                    prop_assert_eq!(parsed.tls_facts().unwrap(), tls);
                }
            }
        }

        #[test]
        fn parse_keeps_its_promises_on_arbitrary_bytes(buf in vec(any::<u8>(), 0..2 * MAX_HEADER_BYTES)) {
            check_parse_contract(&buf);
        }

        #[test]
        fn parse_keeps_its_promises_after_a_v2_signature(rest in vec(any::<u8>(), 0..MAX_HEADER_BYTES + 64)) {
            check_parse_contract(&cat(&[SIG, &rest]));
        }

        #[test]
        fn parse_keeps_its_promises_on_v2_tlvs(buf in arb_v2_with_tlvs()) {
            check_parse_contract(&buf);
        }

        #[test]
        fn parse_keeps_its_promises_after_proxy_text(rest in "[ -~\r\n]{0,120}") {
            check_parse_contract(&cat(&[b"PROXY ", rest.as_bytes()]));
        }
    }
}
