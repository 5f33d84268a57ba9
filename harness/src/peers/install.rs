//! `harness peers install`: the current peer set, made once, with no change to the host's
//! packages beyond `debootstrap` itself.
//!
//! Steps, each recorded by a marker in `stages/` when it succeeds and skipped on a later
//! run while its marker matches: the root filesystem (debootstrap), the peers' packages in
//! it, AWS-LC from the cargo registry's `aws-lc-sys` source, HAProxy from Debian's source
//! tarball built on that AWS-LC, and the wrappers. A step that runs makes every later step
//! run again, and `peers.json` is removed first and written last: an install cut off at any
//! point is never taken for a finished one. Each command's output goes to `logs/STEP.log`;
//! a failure names the step, the command and the log's last lines.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use super::current::{self, Manifest, PeerDir, PROGRAMS, SUITE};
use super::source;
use crate::certs::write_atomically;

/// Debian's package registry.
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// The peers' packages, plus what building AWS-LC and HAProxy needs (kept, so a rebuild
/// needs no download).
const PACKAGES: &str = "haproxy nginx-light libnginx-mod-stream hitch stunnel4 openssl \
                        ca-certificates build-essential cmake dpkg-dev";

/// The install's state, shared by its steps.
struct Install<'a> {
    dir: &'a PeerDir,
    mirror: &'a str,
    jobs: usize,
    /// The `aws-lc-sys` release whose AWS-LC source is built (Cargo.lock's).
    aws_lc_sys: String,
}

/// One step: its name, the key its marker must hold to count as done, and its work.
struct Step {
    name: &'static str,
    key: String,
    run: fn(&Install) -> anyhow::Result<()>,
}

/// Installs the current peer set into `dir`; says "already installed" when it is.
pub fn install(dir: &PeerDir, mirror: &str) -> anyhow::Result<()> {
    let install = Install {
        dir,
        mirror,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        aws_lc_sys: source::aws_lc_sys_version()?,
    };
    let steps = install.steps();
    if dir.manifest().is_some()
        && steps
            .iter()
            .all(|s| install.marker(s) == Some(s.key.clone()))
    {
        println!("peers: already installed in {}", dir.path.display());
        if !super::check::print(dir)? {
            bail!(
                "the installed peers fail their check (above): run `harness peers remove`, \
                 then install again"
            );
        }
        return Ok(());
    }
    if !crate::stack::running_as_root() {
        bail!(
            "peers install needs root (debootstrap and chroot); run it as root or with sudo \
             (the peers it installs then run as any user)"
        );
    }
    fs::create_dir_all(dir.logs())
        .and_then(|()| fs::create_dir_all(dir.stages()))
        .with_context(|| format!("creating {}", dir.path.display()))?;
    remove_if_present(&dir.manifest_path())?;
    println!(
        "peers: installing Debian {SUITE}'s HAProxy, nginx, hitch and stunnel, and HAProxy on \
         the AWS-LC of aws-lc-sys {}, into {} (about 1 GB, 5-10 minutes)",
        install.aws_lc_sys,
        dir.path.display()
    );
    let started = Instant::now();
    let mut redo = false;
    for (i, step) in steps.iter().enumerate() {
        let label = format!("[{}/{}] {}", i + 1, steps.len(), step.name);
        if !redo && install.marker(step).as_deref() == Some(step.key.as_str()) {
            println!("peers: {label}: done before");
            continue;
        }
        redo = true;
        remove_if_present(&install.marker_path(step))?;
        println!("peers: {label} ...");
        let t = Instant::now();
        (step.run)(&install).with_context(|| format!("peers install: step `{}`", step.name))?;
        fs::write(install.marker_path(step), &step.key)
            .with_context(|| format!("writing {}", install.marker_path(step).display()))?;
        println!("peers: {label}: done in {:.0?}", t.elapsed());
    }
    let manifest = install.verify()?;
    write_manifest(dir, &manifest)?;
    println!(
        "peers: installed in {} ({:.0?}); runs now use them by default (--peers current)",
        dir.path.display(),
        started.elapsed()
    );
    super::check::print(dir).map(|_| ())
}

impl Install<'_> {
    fn steps(&self) -> Vec<Step> {
        let v = &self.aws_lc_sys;
        vec![
            Step {
                name: "root filesystem",
                key: format!("debootstrap --variant=minbase {SUITE} {}", self.mirror),
                run: |i| i.rootfs(),
            },
            Step {
                name: "packages",
                key: format!("apt-get install {PACKAGES}"),
                run: |i| i.packages(),
            },
            Step {
                name: "aws-lc",
                key: format!("aws-lc of aws-lc-sys {v}, static"),
                run: |i| i.build_aws_lc(),
            },
            Step {
                name: "haproxy-awslc",
                key: format!("haproxy (Debian {SUITE} source) USE_OPENSSL_AWSLC=1, aws-lc-sys {v}"),
                run: |i| i.build_haproxy(),
            },
            Step {
                name: "wrappers",
                key: format!("wrappers {}", PROGRAMS.map(|p| p.0).join(" ")),
                run: |i| i.wrappers(),
            },
        ]
    }

    fn marker_path(&self, step: &Step) -> PathBuf {
        self.dir.stages().join(step.name.replace(' ', "-"))
    }

    fn marker(&self, step: &Step) -> Option<String> {
        fs::read_to_string(self.marker_path(step)).ok()
    }

    /// debootstrap into `rootfs.tmp`, then rename: a cut-off debootstrap never sits at
    /// `rootfs`.
    fn rootfs(&self) -> anyhow::Result<()> {
        let debootstrap = host_debootstrap(self)?;
        let (root, tmp) = (self.dir.rootfs(), self.dir.path.join("rootfs.tmp"));
        remove_dir_if_present(&tmp)?;
        remove_dir_if_present(&root)?;
        let mut cmd = Command::new(debootstrap);
        cmd.args(["--variant=minbase", SUITE])
            .arg(&tmp)
            .arg(self.mirror);
        self.run("root filesystem", &mut cmd)?;
        // No package's postinst may start a daemon inside it (HAProxy and nginx would take
        // port 80 on the host, which shares the network).
        write_executable(&tmp.join("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n")?;
        let sources = format!("deb-src {} {SUITE} main\n", self.mirror);
        fs::write(
            tmp.join(format!("etc/apt/sources.list.d/{SUITE}-src.list")),
            sources,
        )?;
        fs::rename(&tmp, &root).context("renaming rootfs.tmp to rootfs")
    }

    fn packages(&self) -> anyhow::Result<()> {
        // A dpkg run cut off by an earlier install leaves packages half-configured.
        self.in_root("packages", "dpkg --configure -a")?;
        self.in_root("packages", "apt-get update")?;
        let install = format!("apt-get install -y --no-install-recommends {PACKAGES}");
        self.in_root("packages", &install)?;
        self.in_root("packages", "apt-get clean")
    }

    /// AWS-LC as static libraries in `/opt/aws-lc`, built inside the root filesystem with
    /// its compiler; the registry's copy is not written to.
    fn build_aws_lc(&self) -> anyhow::Result<()> {
        let root = self.dir.rootfs();
        let (src, build) = (
            root.join("usr/src/aws-lc"),
            root.join("usr/src/aws-lc-build"),
        );
        for dir in [&src, &build, &root.join("opt/aws-lc")] {
            remove_dir_if_present(dir)?;
        }
        let aws_lc = source::aws_lc(&self.aws_lc_sys)?;
        println!(
            "peers:   AWS-LC {} from {}",
            aws_lc.version,
            aws_lc.path.display()
        );
        let mut copy = Command::new("cp");
        copy.arg("-a").arg(&aws_lc.path).arg(&src);
        self.run("aws-lc", &mut copy)?;
        self.in_root(
            "aws-lc",
            "cmake -S /usr/src/aws-lc -B /usr/src/aws-lc-build -DCMAKE_BUILD_TYPE=Release \
             -DCMAKE_INSTALL_PREFIX=/opt/aws-lc -DBUILD_TESTING=OFF -DBUILD_TOOL=OFF \
             -DDISABLE_GO=ON -DBUILD_SHARED_LIBS=OFF",
        )?;
        let jobs = self.jobs;
        self.in_root(
            "aws-lc",
            &format!("cmake --build /usr/src/aws-lc-build -j{jobs}"),
        )?;
        self.in_root("aws-lc", "cmake --install /usr/src/aws-lc-build")?;
        remove_dir_if_present(&src)?;
        remove_dir_if_present(&build)
    }

    /// HAProxy, the release Debian ships, built on AWS-LC as HAProxy's own images are.
    fn build_haproxy(&self) -> anyhow::Result<()> {
        let root = self.dir.rootfs();
        let work = root.join("usr/src/haproxy");
        remove_dir_if_present(&work)?;
        remove_dir_if_present(&root.join("opt/haproxy-awslc"))?;
        fs::create_dir_all(&work)?;
        let tree = source::haproxy(self, &work)?;
        let make = format!(
            "make -C /usr/src/haproxy/{tree} -j{} TARGET=linux-glibc USE_OPENSSL_AWSLC=1 \
             SSL_INC=/opt/aws-lc/include SSL_LIB=/opt/aws-lc/lib",
            self.jobs
        );
        self.in_root("haproxy-awslc", &make)?;
        self.in_root(
            "haproxy-awslc",
            &format!(
                "install -D -m 755 -s /usr/src/haproxy/{tree}/haproxy \
                 /opt/haproxy-awslc/sbin/haproxy"
            ),
        )?;
        remove_dir_if_present(&work)
    }

    fn wrappers(&self) -> anyhow::Result<()> {
        let (triplet, loader) = current::multiarch()?;
        let bin = self.dir.bin();
        remove_dir_if_present(&bin)?;
        fs::create_dir_all(bin.join(".ld"))?;
        for (name, path) in PROGRAMS {
            let target = format!("../../rootfs/usr/lib/{triplet}/{loader}");
            symlink(&target, bin.join(".ld").join(name))
                .with_context(|| format!("linking bin/.ld/{name}"))?;
            write_executable(&bin.join(name), &current::wrapper(name, path, triplet))?;
        }
        Ok(())
    }

    /// Every wrapper runs and names its version, and HAProxy's build runs on AWS-LC.
    fn verify(&self) -> anyhow::Result<Manifest> {
        let mut versions = Vec::new();
        for (name, _) in PROGRAMS {
            let line = super::check::version_line(self.dir, name)
                .with_context(|| format!("peers install: checking bin/{name}"))?;
            versions.push((name.to_owned(), line));
        }
        let aws_lc = super::check::runs_on_aws_lc(self.dir)?;
        Ok(Manifest {
            suite: SUITE.to_owned(),
            installed: crate::meta::rfc3339(std::time::SystemTime::now()),
            aws_lc,
            haproxy_awslc_source: "Debian's orig tarball: upstream source, without Debian's \
                                   patches"
                .to_owned(),
            versions,
        })
    }

    /// Runs `script` inside the root filesystem with a clean environment.
    fn in_root(&self, step: &str, script: &str) -> anyhow::Result<()> {
        let mut cmd = Command::new("chroot");
        cmd.arg(self.dir.rootfs())
            .args(["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            .args([
                "HOME=/root",
                "LC_ALL=C.UTF-8",
                "DEBIAN_FRONTEND=noninteractive",
            ])
            .args(["sh", "-c", script]);
        self.run(step, &mut cmd)
    }

    /// Runs `cmd` with its output in `logs/STEP.log`; a failure names the command and
    /// quotes the log's last lines.
    fn run(&self, step: &str, cmd: &mut Command) -> anyhow::Result<()> {
        let log_path = self
            .dir
            .logs()
            .join(format!("{}.log", step.replace(' ', "-")));
        let shown = describe(cmd);
        // Inside the root filesystem only the script is news; a failure shows it all.
        match cmd.get_args().last() {
            Some(script) if cmd.get_program() == "chroot" => {
                println!("peers:   rootfs$ {}", script.to_string_lossy());
            }
            _ => println!("peers:   $ {shown}"),
        }
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        writeln!(log, "$ {shown}")?;
        let status = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("starting `{shown}`"))?;
        if status.success() {
            return Ok(());
        }
        bail!(
            "`{shown}` failed ({status}); its last lines (all of them in {}):\n{}",
            log_path.display(),
            tail(&log_path, 15)
        )
    }
}

impl source::Runner for Install<'_> {
    fn in_root(&self, step: &str, script: &str) -> anyhow::Result<()> {
        Install::in_root(self, step, script)
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.rootfs()
    }
}

/// The host's debootstrap; where it is missing, `apt-get install debootstrap` first.
fn host_debootstrap(install: &Install<'_>) -> anyhow::Result<PathBuf> {
    let find = || {
        ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"]
            .map(PathBuf::from)
            .into_iter()
            .find(|p| p.is_file())
    };
    if let Some(path) = find() {
        return Ok(path);
    }
    println!("peers:   debootstrap is missing: installing it on the host (apt-get)");
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y", "--no-install-recommends", "debootstrap"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    install.run("root filesystem", &mut cmd)?;
    find().context("apt-get installed debootstrap, but it is not in /usr/sbin")
}

/// `peers remove`: deletes the folder. Refuses when something is mounted inside it (a
/// recursive delete would go through the mount into the host's files).
pub fn remove(dir: &PeerDir) -> anyhow::Result<()> {
    if !dir.path.exists() {
        println!("peers: nothing to remove at {}", dir.path.display());
        return Ok(());
    }
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let inside: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| Path::new(m).starts_with(&dir.path))
        .collect();
    if !inside.is_empty() {
        bail!(
            "not removing {}: {} mounted inside it; unmount first",
            dir.path.display(),
            inside.join(", ")
        );
    }
    fs::remove_dir_all(&dir.path).with_context(|| format!("removing {}", dir.path.display()))?;
    println!("peers: removed {}", dir.path.display());
    Ok(())
}

fn write_manifest(dir: &PeerDir, manifest: &Manifest) -> anyhow::Result<()> {
    write_atomically(
        &dir.manifest_path(),
        &serde_json::to_vec_pretty(manifest)?,
        0o644,
    )
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    write_atomically(path, text.as_bytes(), 0o755)
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn remove_dir_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// `program arg 'an arg'`, as a person would type it.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of a file, indented.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_names_itself_and_quotes_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let peers = PeerDir {
            path: dir.path().to_owned(),
        };
        fs::create_dir_all(peers.logs()).unwrap();
        let install = Install {
            dir: &peers,
            mirror: MIRROR,
            jobs: 1,
            aws_lc_sys: "0".into(),
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "for i in $(seq 1 30); do echo line $i; done; exit 3"]);
        let err = format!("{:#}", install.run("packages", &mut cmd).unwrap_err());
        assert!(err.contains("`sh -c 'for i in"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(
            err.contains("line 30") && !err.contains("line 15\n"),
            "{err}"
        );
        assert!(err.contains("logs/packages.log"), "{err}");
        install.run("packages", &mut Command::new("true")).unwrap();
    }

    #[test]
    fn remove_deletes_the_folder_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let peers = PeerDir {
            path: dir.path().join("peers"),
        };
        remove(&peers).unwrap();
        fs::create_dir_all(peers.bin()).unwrap();
        fs::write(peers.manifest_path(), "{}").unwrap();
        remove(&peers).unwrap();
        assert!(!peers.path.exists() && dir.path().exists());
    }
}
