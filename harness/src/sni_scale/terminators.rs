//! Each terminator of the scenario set up to serve a list of certificates chosen by SNI,
//! in front of the same Unix-socket echo-server as in the sweep: its config file (written
//! into the run folder's `configs/`), its command line, and how it reloads.
//!
//! - ours: `[[tls.sni]]` entries in a config file; SIGHUP reloads (the log says when);
//! - HAProxy (OpenSSL and AWS-LC): a `crt-list` on the bind line, master-worker mode
//!   (`-W`); SIGUSR2 to the master reloads, the master logs `Loading success`;
//! - hitch: a `pem-file` line per certificate; SIGHUP starts new workers;
//! - nginx: a stream-module `server` block per name (`server_name`, nginx 1.25.5 and
//!   later); SIGHUP to the master starts new workers.
//!
//! In every list the default certificate (for a name nobody asks for) comes first, then
//! the names in list order.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sys::signal::Signal;

use super::certs::{Named, SniCerts};
use crate::bins::Bins;
use crate::cpus::CpuList;
use crate::peers::{self, Peer};
use crate::plan::{ConfigName, Variant};
use crate::stack::recipe::{self, Ready, Recipe, Role, Server};

/// What a terminator's recipe is made from.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub bins: &'a Bins,
    pub certs: &'a SniCerts,
    /// The names it serves: the first 1 of the list, or all of them.
    pub names: &'a [Named],
    pub server_cpus: &'a CpuList,
    pub runtime_dir: &'a Path,
    /// The run folder's `configs/`.
    pub config_dir: &'a Path,
    /// `logs/sni-<label>-<count>`: log and config file names start with it.
    pub log_stem: &'a Path,
    /// Distinguishes the sockets and scratch folders of successive starts.
    pub index: usize,
    pub peers: &'a [Peer],
    /// The harness runs as root (nginx and hitch must then be told to stay root).
    pub root: bool,
}

/// How a terminator is told to reload its certificates, and how it says it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    /// Sent to the process the harness started (the master, for the peers).
    pub signal: Signal,
    /// A line its logs (stdout or stderr) gain once the new certificates are in use.
    pub done: &'static str,
}

impl Reload {
    pub fn of(config: ConfigName) -> Reload {
        match config {
            ConfigName::Haproxy | ConfigName::HaproxyAwslc => Reload {
                signal: Signal::SIGUSR2,
                done: "Loading success",
            },
            ConfigName::Hitch => Reload {
                signal: Signal::SIGHUP,
                done: "Starting new child processes",
            },
            ConfigName::Nginx => Reload {
                signal: Signal::SIGHUP,
                done: "start worker processes",
            },
            _ => Reload {
                signal: Signal::SIGHUP,
                done: "certificates and TLS settings reloaded",
            },
        }
    }
}

/// The recipe that starts `variant` serving `setup.names`.
pub fn recipe(variant: &Variant, setup: &Setup<'_>) -> anyhow::Result<Recipe> {
    let default = &setup.certs.default;
    let port = match variant.config {
        ConfigName::ProxyRustls | ConfigName::ProxyOpenssl => 0,
        _ => crate::stack::free_port()?,
    };
    let inputs = recipe::Inputs {
        bins: setup.bins,
        cert: &default.paths,
        server_cpus: setup.server_cpus,
        runtime_dir: setup.runtime_dir,
        log_stem: setup.log_stem,
        index: setup.index,
        combined_pem: &default.combined,
        peers: setup.peers,
        config_dir: setup.config_dir,
        peer_port: port,
        max_connections: MAX_CONNECTIONS,
        root: setup.root,
    };
    let socket = recipe::socket_path(&inputs);
    let echo = recipe::echo(&inputs, "unix", socket.clone().into_os_string(), Vec::new());
    let scratch = setup
        .runtime_dir
        .join(format!("{}-{}", setup.index, variant.config));
    let texts = config_texts(variant, setup, port, &socket, &scratch)?;
    let mut files = Vec::new();
    for (suffix, text) in texts {
        files.push((config_path(setup, &suffix), text));
    }
    let conf = files
        .first()
        .map(|(path, _)| path.clone())
        .context("internal error: a terminator without a config file")?;
    let terminator = match variant.config {
        ConfigName::ProxyRustls | ConfigName::ProxyOpenssl => Server {
            role: Role::Terminator,
            spec: recipe::spec("proxy", &setup.bins.proxy, vec![conf.into()], &inputs),
            ready: Ready::Line,
        },
        peer => peer_server(peer, setup, &inputs, &conf, &scratch, port)?,
    };
    Ok(Recipe {
        servers: vec![echo, terminator],
        scheme: "https",
        socket: Some(socket),
        files,
        scratch: Some(scratch),
    })
}

/// A peer started through `env PATH=<its folder>:$PATH`, so that a master that re-executes
/// itself by name on reload (HAProxy's does) finds the same program, not the host's.
fn peer_server(
    peer: ConfigName,
    setup: &Setup<'_>,
    inputs: &recipe::Inputs<'_>,
    conf: &Path,
    scratch: &Path,
    port: u16,
) -> anyhow::Result<Server> {
    let found = setup
        .peers
        .iter()
        .find(|p| p.config == peer)
        .with_context(|| format!("{peer} is not installed"))?;
    let mut path = found
        .program
        .parent()
        .map(|d| d.as_os_str().to_owned())
        .unwrap_or_default();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let mut assignment = OsString::from("PATH=");
    assignment.push(path);
    let mut args: Vec<OsString> = vec![assignment, found.program.clone().into_os_string()];
    match peer {
        ConfigName::Haproxy | ConfigName::HaproxyAwslc => {
            args.extend(["-W".into(), "-f".into(), conf.as_os_str().to_owned()]);
        }
        other => args.extend(peers::args(other, conf, scratch)),
    }
    Ok(Server {
        role: Role::Terminator,
        spec: crate::procs::Spec {
            wait_ready: false,
            ..recipe::spec(peer.name(), Path::new(ENV), args, inputs)
        },
        ready: Ready::Port(port),
    })
}

/// `configs/<stem><suffix>`: `sni-proxy-rustls-aws-lc-10000.toml`.
fn config_path(setup: &Setup<'_>, suffix: &str) -> PathBuf {
    let stem = setup
        .log_stem
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    setup.config_dir.join(format!("{stem}{suffix}"))
}

/// The terminator's files as (file name suffix, text), its main config first.
fn config_texts(
    variant: &Variant,
    setup: &Setup<'_>,
    port: u16,
    socket: &Path,
    scratch: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let threads = setup.server_cpus.len();
    Ok(match variant.config {
        ConfigName::ProxyRustls | ConfigName::ProxyOpenssl => {
            let backend = variant.backend_name();
            vec![(".toml".into(), proxy_toml(setup, backend, threads, socket))]
        }
        ConfigName::Haproxy | ConfigName::HaproxyAwslc => {
            let list = config_path(setup, "-crt-list.txt");
            vec![
                (
                    ".cfg".into(),
                    haproxy_cfg(setup, threads, port, socket, &list),
                ),
                ("-crt-list.txt".into(), haproxy_crt_list(setup)),
            ]
        }
        ConfigName::Hitch => vec![(".conf".into(), hitch_conf(setup, threads, port, socket))],
        ConfigName::Nginx => {
            let found = setup.peers.iter().find(|p| p.config == ConfigName::Nginx);
            let module = found.map_or_else(
                || PathBuf::from(peers::NGINX_STREAM_MODULE),
                Peer::stream_module,
            );
            let text = nginx_conf(setup, threads, port, socket, scratch, &module);
            vec![(".conf".into(), text)]
        }
        other => anyhow::bail!("scenario sni-scale does not run {other}"),
    })
}

fn proxy_toml(setup: &Setup<'_>, backend: &str, threads: usize, socket: &Path) -> String {
    let default = &setup.certs.default.paths;
    let mut s = format!(
        "# Our proxy with {n} SNI certificates, written by the harness.\n\
         threads = {threads}\n\
         max_connections = {MAX_CONNECTIONS}\n\n\
         [tls]\n\
         backend = \"{backend}\"\n\
         cert = {cert}\n\
         key = {key}\n",
        n = setup.names.len(),
        cert = toml_str(&default.cert),
        key = toml_str(&default.key),
    );
    for named in setup.names {
        let _ = write!(
            s,
            "\n[[tls.sni]]\nname = \"{}\"\ncert = {}\nkey = {}\n",
            named.name,
            toml_str(&named.files.paths.cert),
            toml_str(&named.files.paths.key)
        );
    }
    let mut upstream = String::from("unix:");
    upstream.push_str(&socket.to_string_lossy());
    let _ = write!(
        s,
        "\n[[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = {}\n",
        toml_str(Path::new(&upstream))
    );
    s
}

fn haproxy_cfg(setup: &Setup<'_>, threads: usize, port: u16, socket: &Path, list: &Path) -> String {
    format!(
        "# HAProxy (master-worker) with {n} SNI certificates in a crt-list, written by the \
         harness.\n\
         global\n\
         \x20   nbthread {threads}\n\
         \x20   maxconn {MAX_CONNECTIONS}\n\
         \x20   ssl-default-bind-options ssl-min-ver TLSv1.2\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   maxconn {MAX_CONNECTIONS}\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 30s\n\
         \x20   timeout server 30s\n\
         frontend tls\n\
         \x20   bind 127.0.0.1:{port} ssl crt {default} crt-list {list}\n\
         \x20   default_backend echo\n\
         backend echo\n\
         \x20   server echo {socket}\n",
        n = setup.names.len(),
        default = setup.certs.default.combined.display(),
        list = list.display(),
        socket = socket.display(),
    )
}

/// One line per name: the combined PEM file and the SNI filter it answers.
fn haproxy_crt_list(setup: &Setup<'_>) -> String {
    let mut s = String::new();
    for named in setup.names {
        let _ = writeln!(s, "{} {}", named.files.combined.display(), named.name);
    }
    s
}

fn hitch_conf(setup: &Setup<'_>, threads: usize, port: u16, socket: &Path) -> String {
    let user = if setup.root { "user = \"root\"\n" } else { "" };
    let mut s = format!(
        "# hitch with {n} SNI certificates, written by the harness. Its log is on (no quiet):\n\
         # a reload says when its new workers start.\n\
         frontend = \"[127.0.0.1]:{port}\"\n\
         backend = \"{socket}\"\n\
         workers = {threads}\n\
         daemon = off\n\
         {user}tls-protos = TLSv1.2 TLSv1.3\n\
         pem-file = \"{default}\"\n",
        n = setup.names.len(),
        socket = socket.display(),
        default = setup.certs.default.combined.display(),
    );
    for named in setup.names {
        let _ = writeln!(s, "pem-file = \"{}\"", named.files.combined.display());
    }
    s
}

fn nginx_conf(
    setup: &Setup<'_>,
    threads: usize,
    port: u16,
    socket: &Path,
    scratch: &Path,
    module: &Path,
) -> String {
    let user = if setup.root { "user root;\n" } else { "" };
    let default = &setup.certs.default.paths;
    let server = |name: Option<&str>, cert: &Path, key: &Path| {
        format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port} ssl;\n{name}\
             \x20       ssl_certificate {cert};\n\
             \x20       ssl_certificate_key {key};\n\
             \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
             \x20       proxy_pass unix:{socket};\n\
             \x20   }}\n",
            name = name.map_or_else(String::new, |n| format!("        server_name {n};\n")),
            cert = cert.display(),
            key = key.display(),
            socket = socket.display(),
        )
    };
    let mut s = format!(
        "# nginx (stream module) with a server block per SNI name ({n}), written by the \
         harness.\n\
         load_module {module};\n\
         {user}worker_processes {threads};\n\
         worker_rlimit_nofile 65536;\n\
         daemon off;\n\
         master_process on;\n\
         pid {scratch}/nginx.pid;\n\
         # notice: a reload's `start worker processes` line says when it is done.\n\
         error_log stderr notice;\n\
         events {{ worker_connections {conns}; }}\n\
         stream {{\n\
         \x20   server_names_hash_max_size {hash};\n\
         \x20   server_names_hash_bucket_size 64;\n",
        n = setup.names.len(),
        module = module.display(),
        scratch = scratch.display(),
        conns = MAX_CONNECTIONS * 2,
        // nginx sizes its exact-name hash up to this many buckets; twice the names fits.
        hash = (setup.names.len() * 2).max(512),
    );
    s.push_str(&server(None, &default.cert, &default.key));
    for named in setup.names {
        let paths = &named.files.paths;
        s.push_str(&server(Some(&named.name), &paths.cert, &paths.key));
    }
    s.push_str("}\n");
    s
}

/// A TOML basic string holding `path`.
fn toml_str(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Runs a peer with its folder first on `PATH`.
const ENV: &str = "/usr/bin/env";
/// Connections a terminator must hold: the load's, with room.
const MAX_CONNECTIONS: u64 = 4096;
