//! The execution index (src/index.rs): listings by time, flow and status agree with a
//! read of every execution, cost what is asked, and an older store is indexed once.

use std::sync::Arc;

use bytes::Bytes;
use kitaru::execution::{self, RawValue, Runner};
use kitaru::index::{self, Tree};
use kitaru::journal::types::Failure;
use kitaru::store::{layout, Store};
use kitaru::view::{self, ListFilter};

use crate::{local_store, memory_store, rt, start_info};

fn raw(s: &str) -> RawValue {
    RawValue {
        serializer: "str".into(),
        bytes: Bytes::from(s.to_string()),
    }
}

/// 30 executions of two flows, in every state; returns their ids, oldest first.
async fn fill(store: &Arc<Store>) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..30 {
        let mut s = start_info();
        s.flow_name = if i % 3 == 0 { "triage" } else { "agent" }.into();
        let r = Runner::start(store.clone(), s, 30_000).await.unwrap();
        let id = r.exec_id().to_string();
        match i % 5 {
            0 => r.complete(raw("ok")).await.unwrap(),
            1 => r
                .fail(Failure {
                    origin: "user_code".into(),
                    message: "no".into(),
                    exception_type: None,
                    traceback: None,
                })
                .await
                .unwrap(),
            2 => r.suspend("wait".into()).await.unwrap(),
            3 => execution::cancel(store, &id, "by test").await.unwrap(),
            _ => std::mem::forget(r), // still running (its lease is good for 30 s)
        }
        ids.push(id);
    }
    ids
}

/// What a listing must return: every execution read, newest first, filtered.
async fn every(store: &Store, ids: &[String], f: &ListFilter) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids.iter().rev() {
        let v = view::inspect(store, id, false).await.unwrap();
        if f.flow.as_ref().is_some_and(|x| *x != v.flow_name)
            || f.status.as_ref().is_some_and(|x| x != v.status)
        {
            continue;
        }
        out.push(v.exec_id);
        if f.limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    out
}

fn filters() -> Vec<ListFilter> {
    let mut out = vec![ListFilter::default()];
    for status in [
        None,
        Some("running"),
        Some("waiting"),
        Some("completed"),
        Some("failed"),
        Some("cancelled"),
    ] {
        for flow in [None, Some("triage"), Some("agent"), Some("nobody")] {
            for limit in [None, Some(1), Some(4)] {
                out.push(ListFilter {
                    flow: flow.map(str::to_string),
                    status: status.map(str::to_string),
                    limit,
                    ..Default::default()
                });
            }
        }
    }
    out
}

async fn listed(store: &Store, f: &ListFilter) -> Vec<String> {
    let got = view::list(store, f).await.unwrap();
    got.into_iter().map(|v| v.exec_id).collect()
}

async fn agrees(store: &Arc<Store>) {
    let ids = fill(store).await;
    for f in filters() {
        assert_eq!(
            listed(store, &f).await,
            every(store, &ids, &f).await,
            "{f:?}"
        );
    }
}

#[test]
fn listings_agree_with_reading_every_execution_local() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async { agrees(&local_store(&dir).await).await });
}

#[test]
fn listings_agree_with_reading_every_execution_object_store() {
    rt().block_on(async { agrees(&memory_store("index-agree").await).await });
}

#[test]
fn keys_round_trip_and_sort_newest_first() {
    let ids: Vec<String> = (0..50).map(|_| kitaru::ids::new_exec_id()).collect();
    let mut keys: Vec<String> = ids
        .iter()
        .map(|id| index::entry_key(Tree::All, id).unwrap())
        .collect();
    for (k, id) in keys.iter().zip(&ids) {
        assert_eq!(index::id_of_key(k).as_deref(), Some(id.as_str()));
    }
    keys.sort();
    let back: Vec<String> = keys.iter().filter_map(|k| index::id_of_key(k)).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(back, newest_first);
    assert!(index::entry_key(Tree::All, "not-a-uuid").is_none());
}

#[test]
fn a_state_change_moves_the_status_entry() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let r = Runner::start(store.clone(), start_info(), 30_000)
            .await
            .unwrap();
        let id = r.exec_id().to_string();
        let running = index::entry_key(Tree::Status("running"), &id).unwrap();
        let done = index::entry_key(Tree::Status("completed"), &id).unwrap();
        assert!(dir.path().join(&running).is_file());
        r.complete(raw("x")).await.unwrap();
        assert!(!dir.path().join(&running).exists());
        assert!(dir.path().join(&done).is_file());
        // entries are empty files: no data block per execution
        assert_eq!(std::fs::metadata(dir.path().join(&done)).unwrap().len(), 0);
    });
}

#[test]
fn a_short_listing_reads_only_what_it_shows() {
    rt().block_on(async {
        let store = memory_store("index-cost").await;
        // more than one listing page (1,000 keys) of executions
        for _ in 0..1_100 {
            let r = Runner::start(store.clone(), start_info(), 30_000)
                .await
                .unwrap();
            r.complete(raw("x")).await.unwrap();
        }
        store.request_counts().reset();
        let got = view::list(
            &store,
            &ListFilter {
                limit: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(got.len(), 5);
        let counts: std::collections::HashMap<_, _> =
            store.request_counts().snapshot().into_iter().collect();
        // one listing of the index, then one listing of each execution shown; no read
        // of the other 1,095 and no second page
        assert_eq!(counts["list"], 1 + 5, "{counts:?}");
        assert!(counts["get"] <= 5 * 4, "{counts:?}");
    });
}

#[test]
fn an_older_store_is_indexed_once_and_then_refused_by_older_releases() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = local_store(&dir).await;
        let ids = fill(&store).await;
        drop(store);
        // What a layout-2 release leaves: no index, marker version 2.
        std::fs::remove_dir_all(dir.path().join("index")).unwrap();
        std::fs::write(
            dir.path().join(layout::LAYOUT_MARKER),
            layout::marker_bytes(layout::FENCED_VERSION),
        )
        .unwrap();
        let store = local_store(&dir).await;
        assert_eq!(store.layout_version(), layout::FENCED_VERSION);
        for f in filters() {
            assert_eq!(
                listed(&store, &f).await,
                every(&store, &ids, &f).await,
                "{f:?}"
            );
        }
        assert_eq!(store.layout_version(), layout::LAYOUT_VERSION);
        let marker = std::fs::read(dir.path().join(layout::LAYOUT_MARKER)).unwrap();
        assert_eq!(
            layout::parse_layout_marker(&marker),
            Some(layout::LAYOUT_VERSION)
        );
        // A second pass finds nothing missing.
        let again = index::reindex(&store, None).await.unwrap();
        assert_eq!((again.executions, again.missing), (30, 0));
    });
}

#[test]
fn reindex_repairs_missing_and_stale_entries() {
    rt().block_on(async {
        let store = memory_store("index-repair").await;
        let ids = fill(&store).await;
        // lose one execution's time entry, leave a stale status entry on another
        store
            .delete(&index::entry_key(Tree::All, &ids[0]).unwrap())
            .await
            .unwrap();
        store
            .put_marker(&index::entry_key(Tree::Status("running"), &ids[5]).unwrap())
            .await
            .unwrap();
        let done = index::reindex(&store, None).await.unwrap();
        assert_eq!((done.executions, done.missing), (30, 1));
        let all = ListFilter::default();
        assert_eq!(listed(&store, &all).await, every(&store, &ids, &all).await);
        let stale = store
            .get(&index::entry_key(Tree::Status("running"), &ids[5]).unwrap())
            .await
            .unwrap();
        assert!(stale.is_none());
    });
}
