//! Compression (store layout 4): records and blobs shrink when they compress, stay raw when
//! they do not, read back exactly, and damage is an error, never a wrong value.

use bytes::Bytes;
use kitaru::journal::record::{self, ByteBuf, RecordError};
use kitaru::journal::types::*;
use kitaru::store::{codec, layout};

use crate::records::sample_checkpoint;
use crate::{local_store, memory_store, noise, rt};

fn with_output(data: Vec<u8>) -> CheckpointRecord {
    let mut cp = sample_checkpoint();
    cp.output.body = Body::Inline(ByteBuf(data));
    cp
}

fn json_like(n: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0u64;
    while out.len() < n {
        let line = format!(
            r#"{{"role":"user","content":"question {i}: what does the agent do next?","id":{i}}},"#
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

fn version_of(frame: &[u8]) -> u16 {
    u16::from_le_bytes([frame[5], frame[6]])
}

#[test]
fn a_compressible_record_is_stored_compressed_and_reads_back() {
    let cp = with_output(json_like(12_000));
    let raw = record::encode(&cp).unwrap();
    let packed = record::encode_with(&cp, true).unwrap();
    assert_eq!(version_of(&raw), record::FORMAT_VERSION);
    assert_eq!(version_of(&packed), record::COMPRESSED_VERSION);
    assert!(packed.len() * 3 < raw.len(), "{} vs {}", packed.len(), raw.len());
    assert_eq!(record::decode::<CheckpointRecord>(&packed).unwrap(), cp);
    // a dump shows the record and the format it was stored in
    let dumped = record::to_json(&packed).unwrap();
    assert_eq!(dumped["format_version"], 2);
    assert_eq!(dumped["record"]["call_id"], "fetch_2");
    // a segment of compressed and raw records scans as whole frames
    let seg = [packed.clone(), raw.clone(), packed.clone()].concat();
    let scan = record::scan_segment(&seg);
    assert_eq!(scan.frames.len(), 3);
    assert!(scan.tail.is_none());
    // a crash-cut append of a compressed record is a torn tail, not damage
    let cut = &packed[..packed.len() / 2];
    assert!(record::is_torn_tail(cut));
}

#[test]
fn small_and_incompressible_records_stay_raw() {
    let small = sample_checkpoint(); // a payload under codec::RECORD_MIN
    assert_eq!(
        version_of(&record::encode_with(&small, true).unwrap()),
        record::FORMAT_VERSION
    );
    let random = with_output(noise(8_000, 7));
    let bytes = record::encode_with(&random, true).unwrap();
    assert_eq!(version_of(&bytes), record::FORMAT_VERSION);
    assert_eq!(bytes, record::encode(&random).unwrap());
}

#[test]
fn damaged_compressed_records_are_errors() {
    let packed = record::encode_with(&with_output(json_like(12_000)), true).unwrap();
    // a flipped byte anywhere: the checksum of the stored bytes refuses it
    for at in [12, packed.len() / 2, packed.len() - 9] {
        let mut bad = packed.clone();
        bad[at] ^= 0x20;
        assert_eq!(
            record::decode::<CheckpointRecord>(&bad).unwrap_err(),
            RecordError::Checksum
        );
    }
    // a well-formed frame whose announced raw length lies (or exceeds the limit)
    for raw_len in [5u32, 11_999, u32::MAX] {
        let body = &packed[11..packed.len() - 8];
        let mut payload = raw_len.to_le_bytes().to_vec();
        payload.extend_from_slice(&body[4..]);
        let frame = reframe(&payload);
        let err = record::decode::<CheckpointRecord>(&frame).unwrap_err();
        assert!(
            matches!(err, RecordError::Payload(_) | RecordError::TooLarge(_)),
            "{err:?}"
        );
    }
    // zstd garbage behind a good checksum
    let frame = reframe(&[&100u32.to_le_bytes()[..], &noise(64, 7)].concat());
    assert!(matches!(
        record::decode::<CheckpointRecord>(&frame).unwrap_err(),
        RecordError::Payload(_)
    ));
}

/// A format-2 checkpoint frame around `payload`, with a valid checksum.
fn reframe(payload: &[u8]) -> Vec<u8> {
    let mut out = b"KTRU".to_vec();
    out.push(3);
    out.extend_from_slice(&record::COMPRESSED_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let check = blake3::hash(&out);
    out.extend_from_slice(&check.as_bytes()[..8]);
    out
}

#[test]
fn blobs_are_compressed_on_both_kinds_of_store_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for store in [local_store(&dir).await, memory_store("codec-blobs").await] {
            assert_eq!(store.layout_version(), layout::LAYOUT_VERSION);
            assert!(store.compresses());
            let text = Bytes::from(json_like(100_000));
            let hash = store.put_blob(text.clone()).await.unwrap();
            assert_eq!(hash, *blake3::hash(&text).as_bytes(), "named by the content");
            let stored = store.get(&layout::blob_key(&hash)).await.unwrap().unwrap();
            assert!(codec::is_zstd(&stored) && stored.len() * 3 < text.len());
            assert_eq!(store.get_blob(&hash, None, None).await.unwrap(), text);
            // incompressible content is kept as it is
            let random = Bytes::from(noise(100_000, 7));
            let hash = store.put_blob(random.clone()).await.unwrap();
            let stored = store.get(&layout::blob_key(&hash)).await.unwrap().unwrap();
            assert_eq!(stored, random);
            assert_eq!(store.get_blob(&hash, None, None).await.unwrap(), random);
        }
        // a chunked value on an object store: every chunk compressed, the value rebuilt
        let store = memory_store("codec-chunks").await;
        let big = Bytes::from(json_like(3 << 20));
        let hash = store.put_blob(big.clone()).await.unwrap();
        let fresh = memory_store("codec-chunks").await;
        assert_eq!(fresh.get_blob(&hash, None, None).await.unwrap(), big);
        let (_, bytes) = store.usage("blobs").await.unwrap();
        assert!(bytes * 4 < big.len() as u64, "{bytes} bytes stored for 3 MiB");
    });
}

#[test]
fn a_damaged_compressed_blob_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let hash = store.put_blob(Bytes::from(json_like(50_000))).await.unwrap();
        let path = dir.path().join(layout::blob_key(&hash));
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let fresh = local_store(&dir).await;
        let err = fresh.get_blob(&hash, Some("e"), None).await.unwrap_err();
        assert!(matches!(err, kitaru::Error::Corrupt { .. }), "{err:?}");
    });
}

#[test]
fn a_layout_3_store_is_raised_to_4_when_opened_and_old_records_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(layout::LAYOUT_MARKER),
        layout::marker_bytes(layout::INDEXED_VERSION),
    )
    .unwrap();
    // what the layout-3 release wrote: a raw blob and a raw record
    let text = json_like(40_000);
    let hash = *blake3::hash(&text).as_bytes();
    let key = layout::blob_key(&hash);
    std::fs::create_dir_all(dir.path().join(&key).parent().unwrap()).unwrap();
    std::fs::write(dir.path().join(&key), &text).unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        assert_eq!(store.layout_version(), layout::LAYOUT_VERSION);
        let marker = std::fs::read(dir.path().join(layout::LAYOUT_MARKER)).unwrap();
        assert_eq!(layout::parse_layout_marker(&marker), Some(layout::LAYOUT_VERSION));
        assert_eq!(store.get_blob(&hash, None, None).await.unwrap(), text);
    });
}
