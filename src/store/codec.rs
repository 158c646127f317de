//! zstd compression of what a store holds (layout version 4): record payloads and blobs.
//!
//! Compression is decided by measurement on the bytes themselves: a payload below
//! [`RECORD_MIN`] bytes is never compressed (a 100-byte checkpoint output costs nothing
//! extra), and compressed bytes are kept only when they save at least an eighth, so
//! incompressible data (images, archives, random bytes) is stored raw after one trial.
//! Levels were chosen with `make bench-rust` (benches/README.md, "Compression").
//!
//! Decompression is bounded before it starts: a record names its raw length (at most
//! the record payload limit), a blob's zstd frame must name its content size, at most
//! [`MAX_BLOB_RAW`]; anything else is damage, never an allocation the bytes dictate.

use std::cell::RefCell;

/// Record payloads shorter than this stay raw.
pub const RECORD_MIN: usize = 512;
/// Blobs shorter than this stay raw (a blob is at least 16 KiB unless it is a chunk).
pub const BLOB_MIN: usize = 512;
/// zstd level of record payloads and blobs (see the module doc).
pub const LEVEL: i32 = 3;
/// The largest blob that is compressed whole (larger values are stored raw on local
/// disks, written at disk speed, and cut into chunks of at most 256 KiB on object stores,
/// each compressed on its own).
pub const MAX_BLOB_RAW: usize = 256 * 1024;
/// The 4 bytes every zstd frame starts with.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

thread_local! {
    // A compression context is a few hundred KiB to set up; one per thread is reused.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

/// `raw` as one zstd frame (with its content size), when that saves at least an eighth
/// of it; None for bytes that do not compress (or if zstd fails: raw is always valid).
pub fn compress(raw: &[u8]) -> Option<Vec<u8>> {
    let out = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        slot.as_mut()?.compress(raw).ok()
    })?;
    (out.len() <= raw.len() - raw.len() / 8).then_some(out)
}

/// The bytes of a zstd frame of exactly `raw_len` bytes of content.
pub fn decompress_exact(frame: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let out = zstd::bulk::decompress(frame, raw_len).map_err(|e| format!("zstd: {e}"))?;
    if out.len() != raw_len {
        return Err(format!(
            "zstd content is {} bytes where {raw_len} were announced",
            out.len()
        ));
    }
    Ok(out)
}

/// The content of a stored blob that is a zstd frame (its first bytes are
/// [`ZSTD_MAGIC`]), or why it is not one this release wrote.
pub fn decompress_blob(frame: &[u8]) -> Result<Vec<u8>, String> {
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .map_err(|_| "not a zstd frame".to_string())?
        .ok_or_else(|| "a zstd frame without its content size".to_string())?;
    if size > MAX_BLOB_RAW as u64 {
        return Err(format!(
            "a zstd frame announcing {size} bytes (at most {MAX_BLOB_RAW} are written)"
        ));
    }
    decompress_exact(frame, size as usize)
}

/// Whether `bytes` may be a compressed blob (read as one only when they do not hash to
/// the blob's name as they are).
pub fn is_zstd(bytes: &[u8]) -> bool {
    bytes.starts_with(&ZSTD_MAGIC)
}
