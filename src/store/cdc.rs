//! Content-defined chunking of large blobs on object stores.
//!
//! A large value is cut where a rolling hash of the last 64 bytes hits a pattern, so an
//! insertion or an append moves only the cut points next to it: two values that share
//! most of their bytes share most of their chunks. Each chunk is an ordinary blob (named
//! by its blake3 hash); the value's own blob key holds a small manifest listing them.
//! Readers tell a manifest from plain content by the hash: plain content hashes to its
//! name, a manifest does not (and starts with [`MAGIC`]); the reassembled value must hash
//! to the name, so reads stay verified end to end.
//!
//! The cut rule is a gear hash with normalized chunking (after FastCDC, Xia et al.,
//! USENIX ATC 2016): below the average size a stricter mask, above it a looser one, which
//! narrows the spread of chunk sizes around the average.

use std::ops::Range;

/// No cut before this many bytes of a chunk.
pub const MIN_CHUNK: usize = 16 * 1024;
/// The chunk size the cut rule aims at.
pub const AVG_CHUNK: usize = 64 * 1024;
/// A chunk is cut here at the latest.
pub const MAX_CHUNK: usize = 256 * 1024;

/// Before the average size, 18 hash bits must be zero (2 more than log2(AVG_CHUNK)); after
/// it, 14. The high bits are used: in a gear hash they depend on the last 64 bytes.
const MASK_STRICT: u64 = !0u64 << (64 - 18);
const MASK_LOOSE: u64 = !0u64 << (64 - 14);

/// A manifest starts with these bytes.
pub const MAGIC: &[u8; 8] = b"KTRUCDC1";

/// 256 pseudo-random 64-bit values (splitmix64 from a fixed seed): part of the format, the
/// same in every build, or equal content would be cut differently.
const GEAR: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut state: u64 = 0x6b69_7461_7275_2e63; // "kitaru.c"
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
};

/// Length of the first chunk of `data`.
fn cut(data: &[u8]) -> usize {
    if data.len() <= MIN_CHUNK {
        return data.len();
    }
    let end = data.len().min(MAX_CHUNK);
    let normal = end.min(AVG_CHUNK);
    let mut hash: u64 = 0;
    for (i, &b) in data.iter().enumerate().take(normal).skip(MIN_CHUNK) {
        hash = (hash << 1).wrapping_add(GEAR[b as usize]);
        if hash & MASK_STRICT == 0 {
            return i + 1;
        }
    }
    for (i, &b) in data.iter().enumerate().take(end).skip(normal) {
        hash = (hash << 1).wrapping_add(GEAR[b as usize]);
        if hash & MASK_LOOSE == 0 {
            return i + 1;
        }
    }
    end
}

/// The chunks of `data`, in order, covering all of it.
pub fn split(data: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(data.len() / AVG_CHUNK + 1);
    let mut start = 0;
    while start < data.len() {
        let len = cut(&data[start..]);
        out.push(start..start + len);
        start += len;
    }
    out
}

/// The chunks of one value: (blake3 hash, length) in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub size: u64,
    pub chunks: Vec<([u8; 32], u32)>,
}

impl Manifest {
    /// `MAGIC | size u64 LE | count u32 LE | count × (hash 32 bytes | length u32 LE)`
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.chunks.len() * 36);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (hash, len) in &self.chunks {
            out.extend_from_slice(hash);
            out.extend_from_slice(&len.to_le_bytes());
        }
        out
    }

    /// `None` unless `bytes` is a well-formed manifest whose lengths add up to its size.
    pub fn decode(bytes: &[u8]) -> Option<Manifest> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let size = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let count = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
        let body = rest.get(12..)?;
        if body.len() != count.checked_mul(36)? {
            return None;
        }
        let chunks: Vec<([u8; 32], u32)> = body
            .chunks_exact(36)
            .map(|e| {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&e[..32]);
                (hash, u32::from_le_bytes([e[32], e[33], e[34], e[35]]))
            })
            .collect();
        // Every length is bounded by the chunker's own limit, so the size a manifest
        // announces (and a reader allocates) is bounded by the manifest's length.
        if chunks
            .iter()
            .any(|(_, l)| *l == 0 || *l as usize > MAX_CHUNK)
        {
            return None;
        }
        let total: u64 = chunks.iter().map(|(_, l)| u64::from(*l)).sum();
        (total == size).then_some(Manifest { size, chunks })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_input_within_bounds() {
        for n in [
            0,
            1,
            MIN_CHUNK,
            MIN_CHUNK + 1,
            3 * MAX_CHUNK + 17,
            4_000_000,
        ] {
            let data = noise(n, n as u64 + 7);
            let chunks = split(&data);
            assert_eq!(chunks.iter().map(|r| r.len()).sum::<usize>(), n);
            for (i, r) in chunks.iter().enumerate() {
                assert!(r.len() <= MAX_CHUNK);
                if i + 1 < chunks.len() {
                    assert!(r.len() > MIN_CHUNK, "chunk {i} of {n}: {}", r.len());
                }
            }
        }
        let data = noise(8_000_000, 3);
        let chunks = split(&data);
        let avg = data.len() / chunks.len();
        assert!(
            (AVG_CHUNK / 2..AVG_CHUNK * 2).contains(&avg),
            "average {avg}"
        );
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let base = noise(3_000_000, 11);
        let mut edited = base[..1_000_000].to_vec();
        edited.extend_from_slice(b"a few inserted bytes");
        edited.extend_from_slice(&base[1_000_000..]);
        let hashes = |d: &[u8]| -> std::collections::HashSet<[u8; 32]> {
            split(d)
                .into_iter()
                .map(|r| *blake3::hash(&d[r]).as_bytes())
                .collect()
        };
        let (a, b) = (hashes(&base), hashes(&edited));
        let new = b.difference(&a).count();
        assert!(new <= 3, "{new} of {} chunks changed", b.len());
        // appending to a value reuses all but its last chunk or two
        let mut grown = base.clone();
        grown.extend_from_slice(&noise(50_000, 5));
        assert!(hashes(&grown).difference(&a).count() <= 2);
    }

    #[test]
    fn the_cut_rule_is_stable() {
        // The gear table and masks are part of the format: the same bytes must always be
        // cut at the same places, or content stored earlier stops deduplicating.
        let data = noise(1_000_000, 42);
        let lens: Vec<usize> = split(&data).iter().map(|r| r.len()).collect();
        assert_eq!(lens, GOLDEN_LENS.to_vec());
    }

    const GOLDEN_LENS: [usize; 13] = [
        88712, 71106, 33750, 41598, 120459, 83784, 80670, 91493, 69841, 81555, 72451, 137502, 27079,
    ];

    #[test]
    fn manifests_round_trip_and_reject_garbage() {
        let m = Manifest {
            size: 70_000,
            chunks: vec![([1; 32], 65_000), ([2; 32], 5_000)],
        };
        assert_eq!(Manifest::decode(&m.encode()), Some(m.clone()));
        let mut bad = m.encode();
        bad[8] ^= 1; // size no longer matches the chunks
        assert_eq!(Manifest::decode(&bad), None);
        assert_eq!(Manifest::decode(b"KTRUCDC1"), None);
        assert_eq!(Manifest::decode(b"plain content"), None);
    }
}
