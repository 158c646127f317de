//! Identifiers: time-ordered execution ids and validation of names that become keys.

use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::error::Error;

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

static LAST_MS: Mutex<(u64, u16)> = Mutex::new((0, 0));

/// A new UUIDv7 string. Ids made later sort after ids made earlier: the 48-bit
/// millisecond timestamp leads, and a per-process counter in the `rand_a` bits
/// keeps ids made in the same millisecond in order.
pub fn new_exec_id() -> String {
    let mut ms = now_us() / 1000;
    let counter = {
        let mut last = LAST_MS.lock();
        if ms <= last.0 {
            ms = last.0;
            if last.1 >= 0x0fff {
                ms += 1;
                *last = (ms, 0);
            } else {
                last.1 += 1;
            }
        } else {
            *last = (ms, 0);
        }
        last.1
    };
    let mut rand = [0u8; 8];
    // getrandom only fails on exotic platforms; fall back to the clock so an id is still unique enough.
    if getrandom::fill(&mut rand).is_err() {
        rand = (now_us() ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | ((counter >> 8) as u8 & 0x0f);
    b[7] = counter as u8;
    b[8..].copy_from_slice(&rand);
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(u128::from_be_bytes(b))
}

/// A 128-bit value as a UUID string (`8-4-4-4-12` lowercase hex digits).
pub fn uuid_text(value: u128) -> String {
    let h = format!("{value:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Checks that `exec_id` is a canonical lower-case UUID string (what `new_exec_id` makes).
pub fn validate_exec_id(exec_id: &str) -> Result<(), Error> {
    let ok = exec_id.len() == 36
        && exec_id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "execution id",
            value: exec_id.chars().take(80).collect(),
            rule: "a UUID like 0190f5c2-7b1e-7c3a-9a4e-1f2d3c4b5a69 (see `kitaru executions list`)",
        })
    }
}

/// Checks a checkpoint call id (`fetch`, `fetch_2`, or an explicit `id=`): it becomes
/// part of a store key, so only `[A-Za-z0-9_.-]`, 1–128 characters, not `.` or `..`.
pub fn validate_call_id(call_id: &str) -> Result<(), Error> {
    let ok = !call_id.is_empty()
        && call_id.len() <= 128
        && call_id != "."
        && call_id != ".."
        && call_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "checkpoint id",
            value: call_id.chars().take(80).collect(),
            rule: "1-128 characters from A-Z a-z 0-9 _ . - (not '.' or '..')",
        })
    }
}
