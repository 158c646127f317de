//! Golden bytes: the on-disk record format must not change without a new format version.

use kitaru::journal::record;
use kitaru::journal::types::*;

use crate::records::sample_checkpoint;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sample_state() -> StateRecord {
    StateRecord {
        seq: 1,
        at_us: 1_700_000_000_000_000,
        event: Event::Retried {
            lease: LeaseClaim {
                holder: Holder {
                    host: "h1".into(),
                    boot_id: "b".into(),
                    pid: 42,
                    pid_start: 7,
                },
                token: 0x0102_0304_0506_0708,
                ttl_ms: 30_000,
            },
        },
    }
}

const GOLDEN_CHECKPOINT: &str = "4b545255030100a80000000766657463685f32056665746368000109746f6f6c5f63616c6c0120abababababababababababababababababababababababababababababababab046a736f6e000b7b226f6b223a747275657d020100fd00401e18240a0600fda0c61f18240a06000109757365725f636f64650774696d656f7574010c54696d656f75744572726f72000200fd404d2118240a0600fde0d32218240a060000010c7b22746f6b656e73223a357ddeb58dfa0bb907c0";
const GOLDEN_STATE: &str = "4b5452550101001e00000001fd00401e18240a06000502683101622a07fd0807060504030201fb30758eeaa7a16308017c";

#[test]
fn checkpoint_record_bytes_are_stable() {
    let bytes = record::encode(&sample_checkpoint()).unwrap();
    assert_eq!(
        hex(&bytes),
        GOLDEN_CHECKPOINT,
        "the checkpoint record format changed"
    );
}

#[test]
fn state_record_bytes_are_stable() {
    let bytes = record::encode(&sample_state()).unwrap();
    assert_eq!(hex(&bytes), GOLDEN_STATE, "the state record format changed");
}
