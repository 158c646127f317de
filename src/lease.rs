//! Lease holders: who runs an execution, and whether that runner is still alive.
//!
//! A claim is a state event (create-only, numbered), so exactly one process wins it. The
//! holder then overwrites its own heartbeat key (`lease/<claim seq>`) every `ttl / 3`.
//! A lease has lapsed when its expiry passed, or at once when its holder is a dead process
//! on this very host (same boot), so a crashed local run can be retried immediately.

use std::sync::OnceLock;

use crate::journal::types::{Heartbeat, Holder, LeaseClaim};

/// Default lease time-to-live; renewed every third of it.
pub const DEFAULT_TTL_MS: u64 = 30_000;

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn hostname() -> String {
    if let Some(h) = read_trimmed("/proc/sys/kernel/hostname").filter(|h| !h.is_empty()) {
        return h;
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(s) = std::str::from_utf8(&buf[..end]) {
            if !s.is_empty() {
                return s.to_string();
            }
        }
    }
    "unknown-host".to_string()
}

fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default()
}

/// `(state, start time)` of a live process from /proc, or `None` when it does not exist.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 of the full line is the start time; `rest` begins at field 3.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn process_start(pid: u32) -> u64 {
    proc_stat(pid).map(|(_, s)| s).unwrap_or(0)
}

/// This process as a lease holder. The pid is read each time (it changes across fork).
pub fn this_holder() -> Holder {
    static HOST: OnceLock<(String, String)> = OnceLock::new();
    let (host, boot) = HOST.get_or_init(|| (hostname(), boot_id()));
    let pid = std::process::id();
    Holder {
        host: host.clone(),
        boot_id: boot.clone(),
        pid,
        pid_start: process_start(pid),
    }
}

/// Is `holder` a process that is certainly gone? Only answerable for holders on this host
/// in this boot; elsewhere the lease expiry decides.
pub fn holder_is_dead(holder: &Holder) -> bool {
    let me = this_holder();
    if holder.host != me.host {
        return false;
    }
    if !holder.boot_id.is_empty() && !me.boot_id.is_empty() && holder.boot_id != me.boot_id {
        return true; // the machine rebooted since
    }
    if holder.pid == me.pid && holder.pid_start == me.pid_start {
        return false;
    }
    match proc_stat(holder.pid) {
        None => {
            // No /proc (not Linux): ask the kernel whether the pid exists.
            if std::path::Path::new("/proc/self/stat").exists() {
                return true;
            }
            // SAFETY: kill with signal 0 only checks for existence and permission.
            let rc = unsafe { libc::kill(holder.pid as libc::pid_t, 0) };
            rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        }
        Some((state, start)) => {
            state == 'Z' || state == 'X' || (holder.pid_start != 0 && start != holder.pid_start)
        }
    }
}

pub fn new_token() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return crate::ids::now_us() ^ (u64::from(std::process::id()) << 40);
    }
    u64::from_le_bytes(b) | 1
}

pub fn new_claim(ttl_ms: u64) -> LeaseClaim {
    LeaseClaim {
        holder: this_holder(),
        token: new_token(),
        ttl_ms,
    }
}

/// Whether the claim made at `claimed_at_us` has lapsed at `now_us`, given its latest
/// heartbeat (if any).
pub fn lapsed(
    claim: &LeaseClaim,
    claimed_at_us: u64,
    heartbeat: Option<&Heartbeat>,
    now_us: u64,
) -> bool {
    if holder_is_dead(&claim.holder) {
        return true;
    }
    let expires = heartbeat
        .filter(|h| h.token == claim.token)
        .map(|h| h.expires_at_us)
        .unwrap_or(claimed_at_us.saturating_add(claim.ttl_ms.saturating_mul(1000)));
    now_us > expires
}
