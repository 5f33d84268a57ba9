//! Headless Chromium (Debian's) loading a page and its assets through the proxy from nginx
//! (the host's, a real web server on a Unix socket): a stylesheet, a script, an image, a
//! JSON document and a binary file fetched by the script, which checks each one and writes
//! `ALL-LOADED n/n` into the page. Chromium trusts the test CA the honest way, from an NSS
//! database in its `$HOME` (what `certutil` writes and Chromium on Linux reads), so its own
//! certificate check runs; nothing is ignored.
//!
//! Why nginx and not `python3 -m http.server`: nginx keeps connections alive and answers
//! HTTP/1.1 the way sites do, so several requests share each TLS connection through the
//! proxy; Python's server speaks HTTP/1.0 and closes after every response. The proxy offers
//! ALPN `http/1.1` only here: nginx on a plain socket speaks HTTP/1.1 (HTTP/2 through the
//! proxy is curl's and h2load's part, against the echo-server).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proxy::tls::Backend;
use rstest::rstest;
use rstest_reuse::apply;

use crate::every_backend;
use crate::stack::{self, cell, Pki, HOST};

/// The assets the page's script checks (the script itself is one: without it no verdict).
const ASSETS: usize = 5;
/// The binary file the script fetches and checksums: several TLS records and TCP windows.
const BLOB_BYTES: usize = 300_000;
/// How long nginx may take to accept on its socket.
const NGINX_START: Duration = Duration::from_secs(10);

#[apply(every_backend)]
fn chromium_loads_a_page_and_its_assets(backend: Backend) {
    let (Some(chromium), Some(certutil), Some(nginx)) = (
        stack::program("chromium", "chromium"),
        stack::program("certutil", "libnss3-tools"),
        stack::program("nginx", "nginx-light"),
    ) else {
        return;
    };
    println!(
        "real-clients | {}",
        stack::version_line(&chromium, &["--version"])
    );
    println!("real-clients | {}", stack::version_line(&nginx, &["-v"]));
    let pki = Pki::new();
    let root = pki.path().join("www");
    write_site(&root);
    let web = Nginx::start(&nginx, pki.path(), &root);
    let proxy = pki.proxy(backend, &web.spec, &["--alpn", "http/1.1"]);
    let home = pki.path().join("home");
    trust_ca(&certutil, &home, &pki.ca.path);

    let out = stack::run(
        Command::new(&chromium)
            .env("HOME", &home)
            .args(["--headless", "--disable-gpu", "--no-first-run"])
            // As root (CI, containers) Chromium runs only without its sandbox.
            .arg("--no-sandbox")
            .arg(format!(
                "--user-data-dir={}",
                pki.path().join("profile").display()
            ))
            // SNI and the certificate check see HOST; the connection goes to the proxy.
            .arg(format!(
                "--host-resolver-rules=MAP {HOST}:443 127.0.0.1:{}",
                proxy.addr.port()
            ))
            // Virtual time stands still while requests are pending, so the dump waits for
            // the script's fetches; the budget bounds a page that never settles.
            .arg("--virtual-time-budget=30000")
            .arg("--dump-dom")
            .arg(format!("https://{HOST}/index.html")),
        b"",
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let what = format!(
        "{backend}: dom: {dom}\nchromium: {}\nproxy: {}\nnginx: {}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log(),
        web.log()
    );
    let want = format!("ALL-LOADED {ASSETS}/{ASSETS}");
    assert!(dom.contains(&want), "{what}");
    cell(
        "chromium",
        backend,
        "page + CSS, JS, SVG image, JSON, 300 kB fetch (HTTP/1.1)",
        &want,
    );
}

/// Creates an NSS database in `home/.pki/nssdb` that trusts `ca` for TLS servers.
fn trust_ca(certutil: &Path, home: &Path, ca: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("creating the NSS database folder");
    let db = format!("sql:{}", db.display());
    for args in [
        vec!["-N", "-d", &db, "--empty-password"],
        vec![
            "-A",
            "-d",
            &db,
            "-n",
            "tls-off test CA",
            "-t",
            "C,,",
            "-i",
            stack::utf8(ca),
        ],
    ] {
        let out = stack::run(Command::new(certutil).args(&args), b"");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            stack::text(&out)
        );
    }
}

/// The page, its assets and the script that checks them, in `root`.
fn write_site(root: &Path) {
    std::fs::create_dir_all(root).expect("creating the web root");
    let blob = crate::common::upstream::pattern(BLOB_BYTES, 29);
    let write = |name: &str, body: &[u8]| {
        std::fs::write(root.join(name), body).expect("writing the web root");
    };
    write("index.html", INDEX.as_bytes());
    write("style.css", b"#probe { width: 123px; height: 4px; }\n");
    write(
        "pixel.svg",
        br#"<svg xmlns="http://www.w3.org/2000/svg" width="7" height="5"><rect width="7" height="5" fill="teal"/></svg>"#,
    );
    write(
        "data.json",
        format!(
            "{{\"blob\": \"blob.bin\", \"size\": {}, \"fnv1a\": {}}}\n",
            blob.len(),
            fnv1a(&blob)
        )
        .as_bytes(),
    );
    write("blob.bin", &blob);
    write("app.js", APP_JS.as_bytes());
}

/// 32-bit FNV-1a: a checksum the page's script computes the same way in a few lines.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h: u32, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

const INDEX: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>tls-off real clients</title>
<link rel="stylesheet" href="style.css">
<script src="app.js" defer></script>
</head><body>
<div id="probe"></div>
<img id="pixel" src="pixel.svg" alt="">
<p id="result">NOT-RUN</p>
</body></html>
"#;

/// Waits for the page's load event (stylesheet and image are in by then), fetches the JSON
/// and the binary it names, and writes one verdict: ALL-LOADED n/n, or which ones failed.
const APP_JS: &str = r#"
async function fetched() {
  const meta = await (await fetch("data.json")).json();
  const bytes = new Uint8Array(await (await fetch(meta.blob)).arrayBuffer());
  let h = 0x811c9dc5;
  for (const b of bytes) { h = Math.imul(h ^ b, 0x01000193) >>> 0; }
  return { json: meta.size > 0, blob: bytes.length === meta.size && h === meta.fnv1a };
}
window.addEventListener("load", async () => {
  const img = document.getElementById("pixel");
  const checks = {
    script: true,
    css: getComputedStyle(document.getElementById("probe")).width === "123px",
    image: img.complete && img.naturalWidth === 7 && img.naturalHeight === 5,
  };
  try { Object.assign(checks, await fetched()); }
  catch (e) { checks.error = String(e); }
  const names = ["script", "css", "image", "json", "blob"];
  const ok = names.filter((n) => checks[n] === true);
  document.getElementById("result").textContent = ok.length === names.length
    ? `ALL-LOADED ${ok.length}/${names.length}`
    : `MISSING ${names.filter((n) => checks[n] !== true).join(",")} ${checks.error || ""}`;
});
"#;

/// nginx serving `root` on a Unix socket, in its own prefix folder; killed on drop.
struct Nginx {
    child: Child,
    /// The proxy's `--upstream` value for it.
    spec: String,
    log: PathBuf,
}

impl Nginx {
    fn start(nginx: &Path, dir: &Path, root: &Path) -> Nginx {
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(&prefix).expect("creating nginx's folder");
        let socket = prefix.join("web.sock");
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(&prefix, &socket, root)).expect("writing nginx.conf");
        let log = prefix.join("error.log");
        let child = Command::new(nginx)
            .arg("-e")
            .arg(&log)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("nginx.err")).expect("nginx's stderr"))
            .spawn()
            .expect("starting nginx");
        let mut web = Nginx {
            child,
            spec: format!("unix:{}", socket.display()),
            log,
        };
        web.wait_ready(&socket);
        web
    }

    /// nginx prints nothing when it is ready: it is once its socket accepts.
    fn wait_ready(&mut self, socket: &Path) {
        let end = Instant::now() + NGINX_START;
        while UnixStream::connect(socket).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}): {}", self.log());
            }
            assert!(Instant::now() < end, "nginx never listened: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One process (no master, no workers to find), everything under `prefix`, MIME types
/// inline (no /etc/nginx needed). As root it must stay root to read the test's folder.
fn nginx_conf(prefix: &Path, socket: &Path, root: &Path) -> String {
    // The folder this process just made belongs to its effective user.
    let root_user = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(prefix).expect("reading nginx's folder"),
    ) == 0;
    let user = if root_user { "user root;\n" } else { "" };
    let (p, socket, root) = (prefix.display(), socket.display(), root.display());
    format!(
        "# nginx serving the real-client test's site, written by proxy/tests/real_clients.\n\
         {user}daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {p}/body;\n\
         \x20   proxy_temp_path {p}/proxy;\n\
         \x20   fastcgi_temp_path {p}/fastcgi;\n\
         \x20   uwsgi_temp_path {p}/uwsgi;\n\
         \x20   scgi_temp_path {p}/scgi;\n\
         \x20   types {{\n\
         \x20       text/html html;\n\
         \x20       text/css css;\n\
         \x20       text/javascript js;\n\
         \x20       image/svg+xml svg;\n\
         \x20       application/json json;\n\
         \x20       application/octet-stream bin;\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen unix:{socket};\n\
         \x20       root {root};\n\
         \x20   }}\n\
         }}\n"
    )
}
