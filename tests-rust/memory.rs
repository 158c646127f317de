//! `kitaru::memory`: versions under racing writers, names that must not collide, tombstones.

use bytes::Bytes;
use kitaru::execution::RawValue;
use kitaru::memory::{self, Address, Writer};

use crate::{local_store, memory_store, rt};

fn raw(s: &str) -> Option<RawValue> {
    Some(RawValue {
        serializer: "str".into(),
        bytes: Bytes::from(s.to_string()),
    })
}

#[test]
fn racing_writers_each_get_a_version() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for store in [memory_store("mem-race").await, local_store(&dir).await] {
            let addr = Address::new("namespace", "race", "key").unwrap();
            let tasks: Vec<_> = (0..8)
                .map(|t| {
                    let (store, addr) = (store.clone(), addr.clone());
                    tokio::spawn(async move {
                        for i in 0..5 {
                            let v = raw(&format!("{t}-{i}"));
                            memory::write(&store, &addr, v, "str", &Writer::default())
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let history = memory::history(&store, &addr).await.unwrap();
            let versions: Vec<u64> = history.iter().map(|e| e.version).collect();
            assert_eq!(versions, (1..=40).rev().collect::<Vec<_>>());
            let (latest, value) = memory::get(&store, &addr, None).await.unwrap().unwrap();
            assert_eq!(latest.version, 40);
            assert!(value.is_some());
        }
    });
}

#[test]
fn keys_that_look_alike_stay_apart_and_tombstones_hide_values() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(&dir).await;
        let names = ["a", "a/b", "a.b", ".", "..", "a/./b"];
        for (i, name) in names.iter().enumerate() {
            let addr = Address::new("namespace", "s", name).unwrap();
            memory::write(
                &store,
                &addr,
                raw(&i.to_string()),
                "str",
                &Writer::default(),
            )
            .await
            .unwrap();
        }
        let listed = memory::list(&store, "namespace", "s").await.unwrap();
        let mut keys: Vec<&str> = listed.iter().map(|e| e.key.as_str()).collect();
        keys.sort_unstable();
        let mut want = names.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
        // nothing escaped the store's memory directory
        assert!(dir.path().join("memory").is_dir());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2); // memory + marker
        let addr = Address::new("namespace", "s", "a").unwrap();
        memory::write(&store, &addr, None, "str", &Writer::default())
            .await
            .unwrap();
        let (entry, value) = memory::get(&store, &addr, None).await.unwrap().unwrap();
        assert!(entry.is_deleted && value.is_none() && entry.version == 2);
        assert_eq!(
            memory::list(&store, "namespace", "s").await.unwrap().len(),
            5
        );
        assert_eq!(memory::purge(&store, &addr, 1).await.unwrap(), 1);
        assert!(Address::new("namespace", "s", "a:b").is_err());
        assert!(Address::new("global", "s", "a").is_err());
    });
}
