//! Handing freed memory back to the OS without stalling the workers.
//!
//! The binary's allocator is mimalloc (main.rs): after a burst of connections it gives the
//! freed memory back, where glibc's malloc keeps its high-water mark. Giving memory back
//! has two costs that land on whoever is serving clients unless placed elsewhere, both
//! measured under the fault suite's slowloris (2,000 connections opened and timed out
//! while good clients keep their load; README "Slowloris latency"):
//! - **Purging** (`madvise(MADV_DONTNEED)` on every freed range at once) ran on the worker
//!   that happened to allocate when mimalloc's 1 s purge delay expired: run slices of up to
//!   10 ms on the worker once a second, in the good clients' p99.
//! - **Transparent huge pages**: mimalloc asks for them on its arenas, so the first touch
//!   of each 2 MiB zeroed the whole of it inside the worker's page fault, and every
//!   64 KiB purge split one. An idle proxy also stood at 21.7 MB instead of 10.3.
//!
//! So [`init`] turns huge pages off for the process, takes purging away from the
//! allocation path, and starts one low-priority thread that purges once a second. The
//! workers only hand their empty pages to the shared arenas ([`release_freed_memory`]), a
//! few tens of microseconds with no system call.

use std::time::{Duration, Instant};

/// How often freed memory is handed back: by each worker to the arenas, and by the
/// releaser thread from the arenas to the OS.
pub const RELEASE_MEMORY_EVERY: Duration = Duration::from_secs(1);

/// Called once by the proxy's `main` (not by the library's users), before any worker starts.
///
/// Errors are returned for the caller to log: each step only moves a cost, and the proxy
/// serves correctly without it.
pub fn init() -> std::io::Result<()> {
    // Off for the whole process (mimalloc's arenas and the TLS libraries' glibc heap):
    // checked at page-fault time, so it also covers the arena mapped before `main`.
    nix::sys::prctl::set_thp_disable(true)?;
    set_purge_delay(PURGE_ONLY_WHEN_ASKED_MS);
    std::thread::Builder::new()
        .name("proxy-release".into())
        .spawn(releaser)?;
    Ok(())
}

/// mimalloc's purge delay while [`init`]'s releaser runs: long enough that no allocation
/// on a worker ever finds a purge due, so only forced collects purge.
const PURGE_ONLY_WHEN_ASKED_MS: i64 = 24 * 3600 * 1000;

/// The releaser thread: at the lowest priority (nice 19), it runs when the CPU has time
/// to spare, and a worker that wakes preempts it. Once a second it purges every range the
/// workers have freed into the arenas.
fn releaser() {
    if let Err(e) = lowest_priority() {
        tracing::warn!("memory releaser: could not lower its priority: {e}");
    }
    loop {
        std::thread::sleep(RELEASE_MEMORY_EVERY);
        purge_freed_ranges();
    }
}

fn lowest_priority() -> std::io::Result<()> {
    // setpriority(PRIO_PROCESS, 0) is per thread on Linux: it lowers this thread only.
    // SAFETY: no pointers; `which` and `who` name the calling thread.
    #[allow(unsafe_code)] // reason: one libc call nix does not wrap
    let rc = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 19) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Hands the memory this thread's allocator has freed to the arenas, from where the
/// releaser thread gives it back to the OS.
///
/// mimalloc keeps a thread's empty pages with that thread until it allocates on its slow
/// path or collects. A worker that goes quiet after a burst (2,000 slowloris connections
/// timing out together) never takes that path again, and kept the burst's ~30 MB resident
/// while idle or serving light load. Each worker calls this every
/// [`RELEASE_MEMORY_EVERY`] (and, in the multi-thread runtime, when it parks and the last
/// call is that old). A normal collect only visits the thread's own non-full pages: tens
/// of microseconds once a second.
pub fn release_freed_memory() {
    LAST_RELEASE.with(|last| last.set(Some(Instant::now())));
    mimalloc_collect(false);
}

/// [`release_freed_memory`] if this thread has not done it for [`RELEASE_MEMORY_EVERY`]:
/// cheap enough (a clock read) for a hook that runs every time a worker parks.
pub fn release_freed_memory_if_due() {
    let due = LAST_RELEASE.with(|last| {
        last.get()
            .is_none_or(|t| t.elapsed() >= RELEASE_MEMORY_EVERY)
    });
    if due {
        release_freed_memory();
    }
}

/// Hands back to the OS the memory a certificate reload freed: the previous certificates
/// and keys, parsed by the TLS libraries in C (OpenSSL, aws-lc: glibc's malloc) and in
/// Rust (mimalloc). Called on the thread that ran the reload, right after it dropped the
/// previous acceptor: without it a reload of 10,000 certificates left the process ~75%
/// above its size before (both sets had been resident at once, and neither allocator gave
/// the freed one back on its own: glibc's keeps its high-water mark, and mimalloc's
/// freeing thread here is the idle control thread, which never collected).
pub fn release_reload_memory() {
    purge_freed_ranges();
    malloc_trim();
}

thread_local! {
    static LAST_RELEASE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// mimalloc's option number for the purge delay (`mi_option_purge_delay` in mimalloc.h):
/// the `libmimalloc-sys` crate does not export it; a test pins it to the option whose
/// default is 1000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[allow(unsafe_code)] // reason: one call into mimalloc's C API
fn set_purge_delay(ms: i64) {
    // SAFETY: mi_option_set takes no pointers; options are atomics read on each use.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as _) }
}

/// Purges every freed range of the shared arenas now, whatever the delay (and collects
/// the pages other threads freed into this thread's heap).
fn purge_freed_ranges() {
    mimalloc_collect(true);
}

#[allow(unsafe_code)] // reason: one call into mimalloc's C API
fn mimalloc_collect(force: bool) {
    // SAFETY: mi_collect takes no pointers and may be called on any thread at any time; when
    // mimalloc is not the global allocator (the library's tests) it collects its own empty
    // heap.
    unsafe { libmimalloc_sys::mi_collect(force) }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // reason: one call into glibc
fn malloc_trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: glibc's malloc_trim takes no pointers and may be called from any thread; it
    // returns free pages of every arena to the OS (madvise), a few ms for a large heap.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)] // reason: reads one mimalloc option
    fn the_purge_delay_option_number_is_mimallocs() {
        // SAFETY: mi_option_get takes no pointers.
        let ms = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // mimalloc's default (unless the environment overrides it).
        let from_env = std::env::var("MIMALLOC_PURGE_DELAY").ok();
        let expected = from_env.and_then(|v| v.parse().ok()).unwrap_or(1000);
        assert_eq!(
            ms, expected,
            "option {MI_OPTION_PURGE_DELAY} is not the purge delay"
        );
    }
}
