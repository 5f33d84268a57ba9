//! Listening sockets: TCP, or a Unix socket whose file is ours to manage.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

pub use proxy::sys::AcceptBackoff;

/// A bound listener of either kind.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

/// An accepted connection.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Binds a TCP address (`127.0.0.1:0` picks a free port).
    pub async fn bind_tcp(addr: &str) -> io::Result<Self> {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
        Ok(Listener::Tcp(l))
    }

    /// Binds a Unix socket at `path`. A stale socket file (nobody listening) is replaced;
    /// a live socket, a regular file or a directory at the path is an error and is left
    /// exactly as it was. `mode` sets the socket file's permissions.
    pub fn bind_unix(path: &Path, mode: Option<u32>) -> io::Result<Self> {
        let ctx = |e: io::Error, what: &str| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{}: another server is listening there", path.display()),
                    ));
                }
                std::fs::remove_file(path).map_err(|e| ctx(e, "removing stale socket"))?;
            }
            Ok(meta) => {
                let kind = if meta.is_dir() {
                    "a directory"
                } else {
                    "not a socket"
                };
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is {kind}; refusing to replace it",
                        path.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx(e, "inspecting")),
        }
        let listener = UnixListener::bind(path).map_err(|e| ctx(e, "binding"))?;
        if let Some(mode) = mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| ctx(e, "setting mode of"))?;
        }
        let ino = std::fs::metadata(path)
            .map_err(|e| ctx(e, "inspecting"))?
            .ino();
        Ok(Listener::Unix(
            listener,
            SocketFile {
                path: path.to_owned(),
                ino,
            },
        ))
    }

    /// What to print on the readiness line: `127.0.0.1:PORT` or `unix:PATH`.
    pub fn local_addr(&self) -> io::Result<String> {
        match self {
            Listener::Tcp(l) => Ok(l.local_addr()?.to_string()),
            Listener::Unix(_, f) => Ok(format!("unix:{}", f.path.display())),
        }
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Small responses must not wait for Nagle's algorithm.
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l, _) => Ok(Stream::Unix(l.accept().await?.0)),
        }
    }
}

/// The socket file we created; removed when the listener is dropped, but only if the path
/// still holds our socket (another server may have replaced it since).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
