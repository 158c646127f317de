//! The record format: round trips, JSON dumps, and decoding of damaged or arbitrary bytes.

use kitaru::journal::record::{self, ByteBuf, Digest, Kind, RecordError};
use kitaru::journal::types::*;

pub fn sample_checkpoint() -> CheckpointRecord {
    CheckpointRecord {
        call_id: "fetch_2".into(),
        name: "fetch".into(),
        explicit_id: false,
        checkpoint_type: Some("tool_call".into()),
        input_digest: Some(Digest([0xab; 32])),
        output: Value {
            serializer: "json".into(),
            body: Body::Inline(ByteBuf(br#"{"ok":true}"#.to_vec())),
        },
        attempts: vec![
            Attempt {
                number: 1,
                claim_seq: 0,
                started_us: 1_700_000_000_000_000,
                ended_us: 1_700_000_000_100_000,
                failure: Some(Failure {
                    origin: "user_code".into(),
                    message: "timeout".into(),
                    exception_type: Some("TimeoutError".into()),
                    traceback: None,
                }),
            },
            Attempt {
                number: 2,
                claim_seq: 0,
                started_us: 1_700_000_000_200_000,
                ended_us: 1_700_000_000_300_000,
                failure: None,
            },
        ],
        metadata_json: Some(r#"{"tokens":5}"#.into()),
    }
}

/// A tiny deterministic PRNG (xorshift) so the property tests need no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn every_kind_round_trips() {
    let cp = sample_checkpoint();
    let bytes = record::encode(&cp).unwrap();
    assert_eq!(record::decode::<CheckpointRecord>(&bytes).unwrap(), cp);
    let hb = Heartbeat {
        claim_seq: 3,
        token: 9,
        renewed_at_us: 1,
        expires_at_us: 2,
    };
    assert_eq!(
        record::decode::<Heartbeat>(&record::encode(&hb).unwrap()).unwrap(),
        hb
    );
    let blob = Value {
        serializer: "bytes".into(),
        body: Body::Blob {
            hash: Digest([1; 32]),
            size: 1 << 30,
        },
    };
    let st = StateRecord {
        seq: 2,
        at_us: 5,
        event: Event::Completed {
            token: 3,
            result: blob,
        },
    };
    assert_eq!(
        record::decode::<StateRecord>(&record::encode(&st).unwrap()).unwrap(),
        st
    );
    // decoding as the wrong kind is refused
    let err = record::decode::<StateRecord>(&bytes).unwrap_err();
    assert!(matches!(err, RecordError::WrongKind { .. }), "{err:?}");
}

#[test]
fn any_record_dumps_as_json() {
    let bytes = record::encode(&sample_checkpoint()).unwrap();
    let v = record::to_json(&bytes).unwrap();
    assert_eq!(v["kind"], "checkpoint");
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["record"]["call_id"], "fetch_2");
    assert_eq!(v["record"]["input_digest"], "ab".repeat(32));
    assert_eq!(v["record"]["output"]["body"]["Inline"], r#"{"ok":true}"#);
    assert_eq!(v["record"]["attempts"][0]["failure"]["message"], "timeout");
}

#[test]
fn every_truncation_and_bit_flip_is_an_error() {
    let bytes = record::encode(&sample_checkpoint()).unwrap();
    for len in 0..bytes.len() {
        assert!(
            record::decode::<CheckpointRecord>(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(
                record::decode::<CheckpointRecord>(&b).is_err(),
                "flip byte {i} bit {bit}"
            );
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(record::decode::<CheckpointRecord>(&longer).is_err());
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let valid = record::encode(&sample_checkpoint()).unwrap();
    for round in 0..20_000 {
        let len = (rng.next() % 200) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if round % 2 == 0 && data.len() >= 11 {
            // A valid frame header with a correct checksum over garbage: reaches bincode.
            data[..4].copy_from_slice(&record::MAGIC);
            data[4] = (rng.next() % 7) as u8;
            data[5..7].copy_from_slice(&record::FORMAT_VERSION.to_le_bytes());
            let payload_len = data.len() - 11;
            data[7..11].copy_from_slice(&(payload_len as u32).to_le_bytes());
            let check = blake3::hash(&data);
            data.extend_from_slice(&check.as_bytes()[..8]);
        }
        let _ = record::decode::<CheckpointRecord>(&data);
        let _ = record::decode::<StateRecord>(&data);
        let _ = record::to_json(&data);
    }
    // Mutations of a valid record with a recomputed checksum decode or fail, never panic.
    for _ in 0..20_000 {
        let mut data = valid[..valid.len() - 8].to_vec();
        let i = 11 + (rng.next() as usize % (data.len() - 11));
        data[i] = rng.next() as u8;
        let check = blake3::hash(&data);
        data.extend_from_slice(&check.as_bytes()[..8]);
        let _ = record::decode::<CheckpointRecord>(&data);
    }
}

#[test]
fn huge_declared_lengths_are_refused_without_allocating() {
    let mut data = Vec::new();
    data.extend_from_slice(&record::MAGIC);
    data.push(Kind::Checkpoint as u8);
    data.extend_from_slice(&record::FORMAT_VERSION.to_le_bytes());
    data.extend_from_slice(&u32::MAX.to_le_bytes());
    data.extend_from_slice(&[0u8; 16]);
    assert!(matches!(
        record::decode::<CheckpointRecord>(&data),
        Err(RecordError::TooLarge(_))
    ));
}

#[test]
fn newer_format_versions_are_refused_with_a_hint() {
    let mut bytes = record::encode(&sample_checkpoint()).unwrap();
    bytes[5] = 3; // versions 1 (raw) and 2 (compressed) are this release's
    let body_end = bytes.len() - 8;
    let check = blake3::hash(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&check.as_bytes()[..8]);
    let err = record::decode::<CheckpointRecord>(&bytes).unwrap_err();
    assert_eq!(err, RecordError::UnknownVersion(3));
    assert!(err.to_string().contains("upgrade kitaru"));
}
