use std::sync::Arc;

use bytes::Bytes;
use kitaru::store::{layout, Store, StoreOptions};
use kitaru::Error;

use crate::{local_store, memory_store, rt};

async fn round_trip(store: &Store) {
    assert!(store
        .put_create("a/b", Bytes::from_static(b"hello"))
        .await
        .unwrap());
    assert_eq!(
        store.get("a/b").await.unwrap().unwrap(),
        Bytes::from_static(b"hello")
    );
    assert_eq!(store.get("a/missing").await.unwrap(), None);
    // create-only: the second put is refused and the first content stays
    assert!(!store
        .put_create("a/b", Bytes::from_static(b"other"))
        .await
        .unwrap());
    assert_eq!(
        store.get("a/b").await.unwrap().unwrap(),
        Bytes::from_static(b"hello")
    );
    store
        .put_create("a/c/d", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        store.list("a").await.unwrap(),
        vec!["a/b".to_string(), "a/c/d".to_string()]
    );
    assert_eq!(store.list_dirs("a").await.unwrap(), vec!["c".to_string()]);
    store.delete("a/b").await.unwrap();
    store.delete("a/b").await.unwrap();
    assert_eq!(store.get("a/b").await.unwrap(), None);
}

#[test]
fn local_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async { round_trip(&*local_store(&dir).await).await });
    // the layout marker is written at the root
    assert!(dir.path().join(layout::LAYOUT_MARKER).exists());
}

#[test]
fn memory_round_trip_and_sharing() {
    rt().block_on(async {
        let a = memory_store("rt-share").await;
        round_trip(&a).await;
        let b = memory_store("rt-share").await;
        assert!(
            b.get("a/c/d").await.unwrap().is_some(),
            "memory:// stores of one name are shared"
        );
    });
}

#[test]
fn blobs_are_content_addressed_and_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let data = Bytes::from(vec![7u8; 300_000]);
        let h1 = store.put_blob(data.clone()).await.unwrap();
        let h2 = store.put_blob(data.clone()).await.unwrap();
        assert_eq!(h1, h2);
        assert_eq!(h1, *blake3::hash(&data).as_bytes());
        let key = layout::blob_key(&h1);
        assert_eq!(store.list("blobs").await.unwrap(), vec![key.clone()]);
        assert_eq!(store.get_blob(&h1, None, None).await.unwrap(), data);
        // A second process (fresh handle, empty cache) also skips the existing blob.
        let other = local_store(&dir).await;
        assert_eq!(other.put_blob(data.clone()).await.unwrap(), h1);
        assert_eq!(other.list("blobs").await.unwrap().len(), 1);
    });
}

#[test]
fn corrupt_blob_is_an_error_naming_execution_checkpoint_and_key() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let hash = store
            .put_blob(Bytes::from_static(b"the real output"))
            .await
            .unwrap();
        let key = layout::blob_key(&hash);
        let path = dir.path().join(&key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let fresh = local_store(&dir).await;
        let err = fresh
            .get_blob(&hash, Some("exec-1"), Some("fetch_2"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("exec-1") && msg.contains("fetch_2") && msg.contains(&key),
            "{msg}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = fresh
            .get_blob(&hash, Some("exec-1"), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    });
}

#[test]
fn create_only_race_has_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    for (name, store) in [
        ("local", rt.block_on(local_store(&dir))),
        ("memory", rt.block_on(memory_store("race"))),
    ] {
        for round in 0..10 {
            let key = format!("race/{round}");
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let store: Arc<Store> = store.clone();
                    let key = key.clone();
                    rt.spawn(async move {
                        store
                            .put_create(&key, Bytes::from(format!("writer {i}")))
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let wins = rt.block_on(async {
                let mut wins = 0;
                for h in handles {
                    wins += h.await.unwrap() as u32;
                }
                wins
            });
            assert_eq!(wins, 1, "{name} round {round}");
        }
    }
}

#[test]
fn bad_locations_are_clear_errors() {
    rt().block_on(async {
        for (loc, needle) in [
            ("", "empty"),
            ("ftp://host/prefix", "ftp://"),
            ("file://relative/path", "absolute"),
            ("memory://bad name", "memory://"),
        ] {
            let err = Store::open(loc, StoreOptions::default()).await.unwrap_err();
            assert!(err.to_string().contains(needle), "{loc}: {err}");
        }
        // a file where the store directory should be
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(
            file.join("store").to_str().unwrap(),
            StoreOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("cannot use"), "{err}");
    });
}

#[test]
fn newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(layout::LAYOUT_MARKER),
        br#"{"format": "kitaru-store", "version": 99}"#,
    )
    .unwrap();
    let err = rt()
        .block_on(Store::open(
            dir.path().to_str().unwrap(),
            StoreOptions {
                fsync: true,
                ..Default::default()
            },
        ))
        .unwrap_err();
    assert!(err.to_string().contains("upgrade kitaru"), "{err}");
}

#[test]
fn execution_ids_sort_by_creation() {
    let ids: Vec<String> = (0..5000).map(|_| kitaru::ids::new_exec_id()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    for id in &ids[..10] {
        kitaru::ids::validate_exec_id(id).unwrap();
        assert_eq!(&id[14..15], "7", "UUID version 7: {id}");
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    for bad in [
        "",
        "../etc",
        "01a208fd-7878-7000-9638-46283c8fde6",
        "01A208FD-7878-7000-9638-46283C8FDE6D",
    ] {
        assert!(kitaru::ids::validate_exec_id(bad).is_err(), "{bad}");
    }
    for bad in ["", ".", "..", "a/b", "a\0b", "x y", &"a".repeat(129)] {
        assert!(kitaru::ids::validate_call_id(bad).is_err(), "{bad:?}");
    }
    kitaru::ids::validate_call_id("fetch_2").unwrap();
}

/// A backend that ignores the create-only condition (like S3 gateways that drop
/// `If-None-Match`): every put overwrites.
#[derive(Debug)]
struct IgnoresConditions(object_store::memory::InMemory);

impl std::fmt::Display for IgnoresConditions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IgnoresConditions")
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for IgnoresConditions {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        _opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.0
            .put_opts(location, payload, object_store::PutOptions::default())
            .await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.0.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

#[test]
fn a_backend_that_ignores_create_only_puts_is_refused() {
    rt().block_on(async {
        let err = Store::from_object_store(
            std::sync::Arc::new(IgnoresConditions(object_store::memory::InMemory::new())),
            "s3://gateway/prefix",
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("s3://gateway/prefix"), "{err}");
        assert!(err.contains("conditional writes"), "{err}");
        // an honest backend passes the same check
        Store::from_object_store(
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            "memory://honest",
        )
        .await
        .unwrap();
    });
}

#[test]
fn request_counts_follow_the_calls() {
    rt().block_on(async {
        let store = Store::open("memory://counted", StoreOptions::default())
            .await
            .unwrap();
        store.request_counts().reset();
        assert!(store.put_create("a/1", &b"x"[..]).await.unwrap());
        assert!(!store.put_create("a/1", &b"y"[..]).await.unwrap());
        assert!(store.get("a/1").await.unwrap().is_some());
        assert_eq!(store.list("a").await.unwrap(), vec!["a/1".to_string()]);
        store.delete("a/1").await.unwrap();
        let counts: std::collections::BTreeMap<_, _> =
            store.request_counts().snapshot().into_iter().collect();
        assert_eq!(
            counts,
            [
                ("delete", 1),
                ("get", 1),
                ("head", 0),
                ("list", 1),
                ("put", 2)
            ]
            .into()
        );
    });
}

#[test]
fn large_values_on_object_stores_are_chunked_and_deduplicated() {
    rt().block_on(async {
        let store = Store::open("memory://cdc", StoreOptions::default())
            .await
            .unwrap();
        // 2 MB of incompressible-looking text, then the same with 30 KB appended
        let mut x: u64 = 99;
        let mut base: Vec<u8> = (0..2_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + (x % 26) as u8
            })
            .collect();
        let first = store.put_blob(Bytes::from(base.clone())).await.unwrap();
        let (_, after_first) = stored_bytes(&store).await;
        base.extend(std::iter::repeat_n(b'z', 30_000));
        // a different process (no memory of known chunks) stores the grown value
        let other = Store::open("memory://cdc", StoreOptions::default())
            .await
            .unwrap();
        let second = other.put_blob(Bytes::from(base.clone())).await.unwrap();
        let (_, after_second) = stored_bytes(&store).await;
        let added = after_second - after_first;
        assert!(added < 400_000, "the grown value added {added} bytes");
        // both read back whole and verified
        assert_eq!(store.get_blob(&second, None, None).await.unwrap(), base);
        assert_eq!(
            other.get_blob(&first, None, None).await.unwrap().len(),
            2_000_000
        );
        // a damaged chunk is a corruption error, not a wrong value
        let manifest = store
            .get(&layout::blob_key(&second))
            .await
            .unwrap()
            .unwrap();
        let m = kitaru::store::cdc::Manifest::decode(&manifest).unwrap();
        let chunk_key = layout::blob_key(&m.chunks[1].0);
        store.delete(&chunk_key).await.unwrap();
        assert!(store.put_create(&chunk_key, &b"garbage"[..]).await.unwrap());
        let fresh = Store::open("memory://cdc", StoreOptions::default())
            .await
            .unwrap();
        let err = fresh
            .get_blob(&second, Some("e1"), Some("cp"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("chunk"), "{err}");
    });
}

async fn stored_bytes(store: &Store) -> (u64, u64) {
    store.usage("").await.unwrap()
}

#[test]
fn verify_accepts_chunked_values() {
    rt().block_on(async {
        let store = Store::open("memory://cdc-verify", StoreOptions::default())
            .await
            .unwrap();
        let value: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        store.put_blob(Bytes::from(value)).await.unwrap();
        let report = kitaru::verify::verify(&store).await.unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert!(
            report.blobs > 1,
            "a manifest and its chunks: {}",
            report.blobs
        );
    });
}

#[test]
fn verify_counts_its_work_on_a_progress() {
    rt().block_on(async {
        let store = Store::open("memory://verify-progress", StoreOptions::default())
            .await
            .unwrap();
        for i in 0..5u8 {
            store.put_blob(Bytes::from(vec![i; 100])).await.unwrap();
        }
        let progress = kitaru::progress::Progress::default();
        let report = kitaru::verify::verify_with(&store, Some(&progress))
            .await
            .unwrap();
        assert_eq!(report.blobs, 5);
        // the last phase is the index's, done; the blobs were counted in theirs
        let (phase, done, total, number) = progress.read();
        assert_eq!((phase, done, total, number), ("index", 0, 0, 7));
        let counted = kitaru::progress::Progress::default();
        counted.phase("blobs", 5);
        kitaru::progress::tick(Some(&counted), 5);
        assert_eq!(counted.read(), ("blobs", 5, 5, 1));
    });
}

#[test]
fn usage_counts_only_the_store_root() {
    rt().block_on(async {
        let a = Store::open("memory://usage", StoreOptions::default())
            .await
            .unwrap();
        assert!(a.put_create("x/1", &b"12345"[..]).await.unwrap());
        assert!(a.put_create("x/2", &b"123"[..]).await.unwrap());
        let marker = layout::layout_marker_bytes().len() as u64;
        assert_eq!(a.usage("").await.unwrap(), (3, 8 + marker));
        assert_eq!(a.usage("x").await.unwrap(), (2, 8));
        let dir = tempfile::tempdir().unwrap();
        let local = Store::open(dir.path().to_str().unwrap(), StoreOptions::default())
            .await
            .unwrap();
        assert!(local.put_create("x/1", &b"12345"[..]).await.unwrap());
        assert_eq!(local.usage("").await.unwrap(), (2, 5 + marker));
    });
}

#[test]
fn a_key_names_the_checkpoint_call_it_belongs_to() {
    let exec = "exec-1";
    for (key, call) in [
        (layout::checkpoint_key(exec, "fetch_2", 0), Some("fetch_2")),
        (layout::checkpoint_key(exec, "fetch_2", 3), Some("fetch_2")),
        (
            layout::failed_attempt_key(exec, "fetch_2", 1),
            Some("fetch_2"),
        ),
        (layout::state_key(exec, 0), None),
        (layout::segment_key(exec, 0), None),
        ("cp/fetch_2".to_string(), None),
    ] {
        assert_eq!(layout::call_of_key(&key), call, "{key}");
    }
    // A damaged checkpoint record is reported with its call.
    rt().block_on(async {
        let store = memory_store("call-of-key").await;
        let r = kitaru::execution::Runner::start(store.clone(), crate::start_info(), 30_000)
            .await
            .unwrap();
        let key = layout::checkpoint_key(r.exec_id(), "fetch_2", 0);
        store.put_overwrite(&key, &b"junk"[..]).await.unwrap();
        let err = kitaru::journal::Journal::load(&store, r.exec_id(), kitaru::journal::Scope::Full)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { checkpoint: Some(c), .. } if c == "fetch_2"),
            "{err:?}"
        );
    });
}
