//! The record format: every small object kitaru writes is one framed record.
//!
//! ```text
//! "KTRU" | kind: u8 | format version: u16 LE | payload length: u32 LE | payload | check: 8 bytes
//! ```
//! The payload is bincode 2 (standard config) of the record struct (format version 1),
//! or, in format version 2 (layout 4), the bincode's length as a u32 LE followed by one
//! zstd frame of it (`crate::store::codec`: payloads of 512 bytes and more, when that
//! saves an eighth). `check` is the first 8 bytes of the blake3 hash of everything before
//! it (the bytes as stored), so a torn, truncated or flipped record is an error, never a
//! wrong value. Decoding arbitrary bytes never panics. Golden-bytes tests in tests-rust
//! pin the format; change it only with a new version.

use std::borrow::Cow;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const MAGIC: [u8; 4] = *b"KTRU";
/// The payload is the record's bincode.
pub const FORMAT_VERSION: u16 = 1;
/// The payload is the bincode's length (u32 LE) and a zstd frame of it.
pub const COMPRESSED_VERSION: u16 = 2;
const HEADER_LEN: usize = 11;
const CHECK_LEN: usize = 8;
/// Upper bound on a record's payload; big values go to blobs, never into records.
pub const MAX_PAYLOAD: usize = 64 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("not a kitaru record (bad magic)")]
    BadMagic,
    #[error("record is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("record checksum mismatch (torn or modified)")]
    Checksum,
    #[error("record kind {found} where {expected} was expected")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("record format version {0} is newer than this kitaru understands ({COMPRESSED_VERSION}); upgrade kitaru")]
    UnknownVersion(u16),
    #[error("record payload does not decode: {0}")]
    Payload(String),
    #[error("record payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    State = 1,
    Heartbeat = 2,
    Checkpoint = 3,
    FailedAttempt = 4,
    Meta = 5,
    Divergence = 6,
    Wait = 7,
    Answer = 8,
    Log = 9,
    Seal = 10,
    Cache = 11,
    Memory = 12,
    Graph = 13,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::State,
            2 => Kind::Heartbeat,
            3 => Kind::Checkpoint,
            4 => Kind::FailedAttempt,
            5 => Kind::Meta,
            6 => Kind::Divergence,
            7 => Kind::Wait,
            8 => Kind::Answer,
            9 => Kind::Log,
            10 => Kind::Seal,
            11 => Kind::Cache,
            12 => Kind::Memory,
            13 => Kind::Graph,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::State => "state",
            Kind::Heartbeat => "heartbeat",
            Kind::Checkpoint => "checkpoint",
            Kind::FailedAttempt => "failed_attempt",
            Kind::Meta => "meta",
            Kind::Divergence => "divergence",
            Kind::Wait => "wait",
            Kind::Answer => "answer",
            Kind::Log => "log",
            Kind::Seal => "seal",
            Kind::Cache => "cache",
            Kind::Memory => "memory",
            Kind::Graph => "graph",
        }
    }
}

/// A struct stored as one record of a fixed kind.
pub trait Record: Serialize + DeserializeOwned {
    const KIND: Kind;
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_PAYLOAD>()
}

fn check(bytes: &[u8]) -> [u8; CHECK_LEN] {
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&blake3::hash(bytes).as_bytes()[..CHECK_LEN]);
    out
}

/// The record framed as format version 1 (its payload uncompressed).
pub fn encode<R: Record>(record: &R) -> Result<Vec<u8>, RecordError> {
    encode_with(record, false)
}

/// The record framed; with `compress` (a store of layout 4), a payload that zstd shrinks
/// by an eighth or more is stored compressed (format version 2).
pub fn encode_with<R: Record>(record: &R, compress: bool) -> Result<Vec<u8>, RecordError> {
    let raw = bincode::serde::encode_to_vec(record, config())
        .map_err(|e| RecordError::Payload(e.to_string()))?;
    if raw.len() > MAX_PAYLOAD {
        return Err(RecordError::TooLarge(raw.len()));
    }
    let packed = if compress && raw.len() >= crate::store::codec::RECORD_MIN {
        crate::store::codec::compress(&raw).map(|z| {
            let mut p = Vec::with_capacity(4 + z.len());
            p.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            p.extend_from_slice(&z);
            p
        })
    } else {
        None
    };
    let (version, payload) = match packed {
        Some(p) => (COMPRESSED_VERSION, p),
        None => (FORMAT_VERSION, raw),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + CHECK_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(R::KIND as u8);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    let c = check(&out);
    out.extend_from_slice(&c);
    Ok(out)
}

/// Checks the frame and returns the kind and the payload's bincode (decompressed from a
/// format-2 frame).
pub fn unframe(bytes: &[u8]) -> Result<(Kind, u16, Cow<'_, [u8]>), RecordError> {
    let (kind, version, body) = check_frame(bytes)?;
    if version == FORMAT_VERSION {
        return Ok((kind, version, Cow::Borrowed(body)));
    }
    let raw_len = body
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(RecordError::Truncated(bytes.len()))?;
    if raw_len > MAX_PAYLOAD {
        return Err(RecordError::TooLarge(raw_len));
    }
    let raw = crate::store::codec::decompress_exact(&body[4..], raw_len)
        .map_err(RecordError::Payload)?;
    Ok((kind, version, Cow::Owned(raw)))
}

/// Checks the frame (magic, lengths, checksum, kind and format version) without
/// decompressing it: its kind, format version and payload as stored.
pub fn check_frame(bytes: &[u8]) -> Result<(Kind, u16, &[u8]), RecordError> {
    if bytes.len() < 4 || bytes[..4] != MAGIC {
        return Err(if bytes.len() < 4 {
            RecordError::Truncated(bytes.len())
        } else {
            RecordError::BadMagic
        });
    }
    if bytes.len() < HEADER_LEN + CHECK_LEN {
        return Err(RecordError::Truncated(bytes.len()));
    }
    let len = u32::from_le_bytes([bytes[7], bytes[8], bytes[9], bytes[10]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(RecordError::TooLarge(len));
    }
    if bytes.len() != HEADER_LEN + len + CHECK_LEN {
        return Err(RecordError::Truncated(bytes.len()));
    }
    let body_end = HEADER_LEN + len;
    if check(&bytes[..body_end]) != bytes[body_end..] {
        return Err(RecordError::Checksum);
    }
    let version = u16::from_le_bytes([bytes[5], bytes[6]]);
    if version != FORMAT_VERSION && version != COMPRESSED_VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    let kind = Kind::from_u8(bytes[4]).ok_or(RecordError::UnknownKind(bytes[4]))?;
    Ok((kind, version, &bytes[HEADER_LEN..body_end]))
}

/// A segment read frame by frame: the whole frames with the offset where each ends, and
/// where the bytes stop being whole frames (with why), if they do.
pub struct Scan<'a> {
    pub frames: Vec<(&'a [u8], usize)>,
    pub tail: Option<(usize, RecordError)>,
}

/// Splits a segment into frames; stops at the first thing that is not a whole frame.
pub fn scan_segment(bytes: &[u8]) -> Scan<'_> {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        match frame_len(rest) {
            Some(total) if total <= rest.len() => match check_frame(&rest[..total]) {
                Ok(_) => {
                    at += total;
                    frames.push((&bytes[at - total..at], at));
                }
                Err(e) => {
                    return Scan {
                        frames,
                        tail: Some((at, e)),
                    }
                }
            },
            Some(_) | None => {
                return Scan {
                    frames,
                    tail: Some((at, RecordError::Truncated(rest.len()))),
                }
            }
        }
    }
    Scan { frames, tail: None }
}

/// The length of the frame that starts `bytes`, from its header (None: no whole header).
fn frame_len(bytes: &[u8]) -> Option<usize> {
    let len_bytes: [u8; 4] = bytes.get(7..HEADER_LEN)?.try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    (len <= MAX_PAYLOAD).then_some(HEADER_LEN + len + CHECK_LEN)
}

/// Whether `rest`, the bytes after a segment's last whole frame, can be an append that a
/// crash cut short: the start of one frame (a valid header prefix, fewer bytes than it
/// announces) with no whole frame after it, or zeros (a tail a power loss left unwritten).
/// Anything else (a changed length, a flipped byte, a frame followed by more frames) is
/// damage, never a torn tail.
pub fn is_torn_tail(rest: &[u8]) -> bool {
    if rest.iter().all(|b| *b == 0) {
        return true;
    }
    let n = rest.len().min(MAGIC.len());
    if rest[..n] != MAGIC[..n] {
        return false;
    }
    if rest.len() > 4 && Kind::from_u8(rest[4]).is_none() {
        return false;
    }
    if rest.len() >= 7
        && !matches!(
            u16::from_le_bytes([rest[5], rest[6]]),
            FORMAT_VERSION | COMPRESSED_VERSION
        )
    {
        return false;
    }
    if let Some(total) = frame_len(rest) {
        if total <= rest.len() {
            return false; // whole, yet not a valid frame: damaged
        }
    } else if rest.len() >= HEADER_LEN {
        return false; // a length over the limit
    }
    // A whole frame later in the bytes means the cut is inside the segment, not at its end.
    !rest.windows(MAGIC.len()).enumerate().skip(1).any(|(i, w)| {
        w == MAGIC
            && frame_len(&rest[i..])
                .is_some_and(|t| t <= rest.len() - i && check_frame(&rest[i..i + t]).is_ok())
    })
}

pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, RecordError> {
    let (kind, _, payload) = unframe(bytes)?;
    if kind != R::KIND {
        return Err(RecordError::WrongKind {
            expected: R::KIND.name(),
            found: kind.name().to_string(),
        });
    }
    decode_payload(&payload)
}

fn decode_payload<R: DeserializeOwned>(payload: &[u8]) -> Result<R, RecordError> {
    let (record, used): (R, usize) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| RecordError::Payload(e.to_string()))?;
    if used != payload.len() {
        return Err(RecordError::Payload(format!(
            "{} trailing bytes",
            payload.len() - used
        )));
    }
    Ok(record)
}

/// Any record as JSON: `{"kind": ..., "format_version": ..., "record": {...}}`.
pub fn to_json(bytes: &[u8]) -> Result<serde_json::Value, RecordError> {
    use super::types::*;
    let (kind, version, payload) = unframe(bytes)?;
    let payload = &payload[..];
    fn j<R: Serialize + DeserializeOwned>(p: &[u8]) -> Result<serde_json::Value, RecordError> {
        let r: R = decode_payload(p)?;
        serde_json::to_value(&r).map_err(|e| RecordError::Payload(e.to_string()))
    }
    let record = match kind {
        Kind::State => j::<StateRecord>(payload)?,
        Kind::Heartbeat => j::<Heartbeat>(payload)?,
        Kind::Checkpoint => j::<CheckpointRecord>(payload)?,
        Kind::FailedAttempt => j::<FailedAttemptRecord>(payload)?,
        Kind::Meta => j::<MetaRecord>(payload)?,
        Kind::Divergence => j::<DivergenceRecord>(payload)?,
        Kind::Wait => j::<WaitRecord>(payload)?,
        Kind::Answer => j::<AnswerRecord>(payload)?,
        Kind::Log => j::<LogRecord>(payload)?,
        Kind::Seal => j::<SealRecord>(payload)?,
        Kind::Cache => j::<crate::cache::CacheRecord>(payload)?,
        Kind::Memory => j::<crate::memory::MemoryRecord>(payload)?,
        Kind::Graph => j::<crate::graph::GraphRecord>(payload)?,
    };
    Ok(serde_json::json!({
        "kind": kind.name(),
        "format_version": version,
        "record": record,
    }))
}

/// What stored bytes hold with compression undone, for searches through a store (the
/// tests and audits that check secrets never reach it): a zstd blob's content; a pack's
/// records, each made plain; each whole record frame's payload, decompressed (a record,
/// or a segment of them), then any rest as it is; anything else as it is. Never fails.
pub fn plain(bytes: &[u8]) -> Vec<u8> {
    if crate::store::codec::is_zstd(bytes) {
        if let Ok(content) = crate::store::codec::decompress_blob(bytes) {
            return content;
        }
    }
    if bytes.starts_with(super::pack::MAGIC) {
        if let Ok(records) = super::pack::decode(&bytes::Bytes::copy_from_slice(bytes)) {
            let mut out = Vec::new();
            for (key, value) in records {
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(&plain(&value));
            }
            return out;
        }
    }
    let scan = scan_segment(bytes);
    let mut out = Vec::with_capacity(bytes.len());
    let mut end = 0;
    for (frame, at) in &scan.frames {
        match unframe(frame) {
            Ok((_, _, payload)) => out.extend_from_slice(&payload),
            Err(_) => out.extend_from_slice(frame),
        }
        end = *at;
    }
    out.extend_from_slice(&bytes[end..]);
    out
}

/// A segment (records appended one after another) as JSON: every whole record, and where
/// and why the bytes stop being whole records, if they do.
pub fn segment_to_json(bytes: &[u8]) -> Result<serde_json::Value, RecordError> {
    let scan = scan_segment(bytes);
    let records = scan
        .frames
        .iter()
        .map(|(frame, _)| to_json(frame))
        .collect::<Result<Vec<_>, _>>()?;
    let tail = scan.tail.map(|(at, e)| {
        serde_json::json!({"at": at, "bytes": bytes.len() - at, "error": e.to_string(),
                           "torn_append": is_torn_tail(&bytes[at..])})
    });
    Ok(serde_json::json!({"kind": "segment", "records": records, "tail": tail}))
}

/// Bytes that encode compactly in records and show as text (or hex) in JSON dumps.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ByteBuf(pub Vec<u8>);

impl std::fmt::Debug for ByteBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByteBuf({} bytes)", self.0.len())
    }
}

impl Serialize for ByteBuf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            match std::str::from_utf8(&self.0) {
                Ok(text) => s.serialize_str(text),
                Err(_) => s.serialize_str(&format!("hex:{}", crate::store::layout::hex(&self.0))),
            }
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.as_bytes().to_vec()))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A blake3 digest: 32 raw bytes in records, lower-case hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", crate::store::layout::hex(&self.0))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&crate::store::layout::hex(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let buf = ByteBuf::deserialize(d)?;
        if let Ok(arr) = <[u8; 32]>::try_from(buf.0.as_slice()) {
            return Ok(Digest(arr));
        }
        std::str::from_utf8(&buf.0)
            .ok()
            .and_then(crate::store::layout::parse_hex32)
            .map(Digest)
            .ok_or_else(|| de::Error::custom("a digest must be 32 bytes"))
    }
}
