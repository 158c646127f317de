//! `executions list` on a big store: the execution index against the listing of every
//! execution it replaced. `make bench-list` (or `cargo bench --bench list`); results in
//! benches/README.md.
//!
//! Fills one local store with real executions (started, then completed, 1 in 100 failed,
//! over 10 flows) in steps up to `KITARU_BENCH_LIST_MAX` (default 1,000,000), and at each
//! step times `list --limit 20`, `--status failed --limit 20` and `--flow f3 --limit 20`
//! through the index, and `list --limit 20` the old way (every execution id listed
//! first). A `memory://` store (object_store's in-memory backend, listed like S3: in key
//! order, 1,000 keys a page) of 20,000 executions gives the request counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kitaru::execution::{RawValue, Runner};
use kitaru::journal::types::*;
use kitaru::store::{Store, StoreOptions};
use kitaru::view::{self, ListFilter};

fn start_info(flow: usize) -> StartInfo {
    StartInfo {
        flow_name: format!("f{flow}"),
        entry: EntryPoint {
            module: "m".into(),
            qualname: "f".into(),
            script: None,
            cwd: "/".into(),
        },
        args: Value {
            serializer: "json".into(),
            body: Body::Inline(kitaru::journal::record::ByteBuf(b"{}".to_vec())),
        },
        kitaru_version: "bench".into(),
        options_json: "{}".into(),
    }
}

async fn fill(store: &Arc<Store>, from: usize, to: usize) {
    futures::stream::iter(from..to)
        .map(|i| {
            let store = store.clone();
            async move {
                let r = Runner::start(store, start_info(i % 10), 30_000)
                    .await
                    .unwrap();
                if i % 100 == 7 {
                    r.fail(Failure {
                        origin: "user_code".into(),
                        message: "bench".into(),
                        exception_type: None,
                        traceback: None,
                    })
                    .await
                    .unwrap();
                } else {
                    r.complete(RawValue {
                        serializer: "str".into(),
                        bytes: Bytes::from_static(b"ok"),
                    })
                    .await
                    .unwrap();
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

fn filter(flow: Option<&str>, status: Option<&str>) -> ListFilter {
    ListFilter {
        flow: flow.map(str::to_string),
        status: status.map(str::to_string),
        limit: Some(20),
        ..Default::default()
    }
}

/// Median wall time of `runs` listings (each must return 20).
async fn median(store: &Store, f: &ListFilter, runs: usize, old_way: bool) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let got = if old_way {
            view::list_every(store, f, None).await.unwrap()
        } else {
            view::list(store, f).await.unwrap()
        };
        times.push(t.elapsed());
        assert_eq!(got.len(), 20);
    }
    times.sort();
    times[runs / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    let max: usize = std::env::var("KITARU_BENCH_LIST_MAX")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // request counts on an object store
        let mem = Store::open("memory://bench-list", StoreOptions::default())
            .await
            .unwrap();
        fill(&mem, 0, 20_000).await;
        println!("memory:// store, 20,000 executions: requests of `list --limit 20`");
        for (name, old_way) in [("index", false), ("every id listed", true)] {
            mem.request_counts().reset();
            median(&mem, &filter(None, None), 1, old_way).await;
            println!("  {name:<16} {:?}", mem.request_counts().snapshot());
        }
        mem.request_counts().reset();
        median(&mem, &filter(None, Some("failed")), 1, false).await;
        println!(
            "  index --status failed {:?}",
            mem.request_counts().snapshot()
        );
        mem.request_counts().reset();
        median(&mem, &filter(None, Some("failed")), 1, true).await;
        println!(
            "  old --status failed   {:?}",
            mem.request_counts().snapshot()
        );
        drop(mem);

        let base = std::env::var("KITARU_BENCH_DIR").unwrap_or_else(|_| "target".into());
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::tempdir_in(&base).unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), StoreOptions::default())
            .await
            .unwrap();
        println!(
            "\nlocal store ({}): median ms of `list --limit 20`",
            dir.path().display()
        );
        println!(
            "{:>10} {:>9} {:>9} {:>9} {:>12} {:>10}",
            "executions", "plain", "failed", "flow f3", "old (plain)", "fill s"
        );
        let mut have = 0;
        for step in [10_000, 100_000, 1_000_000, 10_000_000] {
            let step = step.min(max);
            if step <= have {
                break;
            }
            let t = Instant::now();
            fill(&store, have, step).await;
            let filled = t.elapsed();
            have = step;
            let plain = median(&store, &filter(None, None), 21, false).await;
            let failed = median(&store, &filter(None, Some("failed")), 21, false).await;
            let flow = median(&store, &filter(Some("f3"), None), 21, false).await;
            let old = median(&store, &filter(None, None), 3, true).await;
            println!(
                "{have:>10} {:>9} {:>9} {:>9} {:>12} {:>10.0}",
                ms(plain),
                ms(failed),
                ms(flow),
                ms(old),
                filled.as_secs_f64()
            );
        }
    });
}
