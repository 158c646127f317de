"""Damaged blobs: new work never depends on bytes nobody checked, and re-running the
producing call repairs a damaged value."""

from __future__ import annotations

import os
from pathlib import Path

import kitaru
import pytest
from conftest import cli_json, run_cli
from kitaru import KitaruClient, _config, checkpoint, flow

SIZES = {
    "small": 256 * 160,
    "large": 256 * 2400,
}  # a plain blob, and one past the 256 KiB threshold
CALLS: list[int] = []
PLAN: dict[str, object] = {}


@checkpoint
def produce(size: int) -> bytes:
    CALLS.append(size)
    return bytes(range(256)) * (size // 256)


@flow
def producer(size: int) -> int:
    out = produce(size)
    if PLAN.get("crash"):
        raise RuntimeError("crash after the checkpoint")
    return len(out)


def _blobs(store: Path) -> list[Path]:
    return [p for p in (store / "blobs").rglob("*") if p.is_file() and "staging" not in p.parts]


def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(autouse=True)
def _clean() -> None:
    CALLS.clear()
    PLAN.clear()


@pytest.mark.parametrize("size", sorted(SIZES))
def test_a_new_checkpoint_does_not_trust_a_damaged_blob_with_its_hash(
    size: str, isolated_store: Path
) -> None:
    n = SIZES[size]
    first = producer.run(n)
    assert first.wait() == n
    (blob,) = _blobs(isolated_store)
    _damage(blob)
    assert run_cli("store", "verify").returncode == 1
    # Another process (a fresh store handle: a process trusts only blobs it wrote or
    # checked itself) produces the same bytes: the write finds the blob, checks it and
    # replaces the damaged copy instead of recording against it.
    _config._stores.clear()
    # The first run left a cache entry for the call naming that blob: the damage is found
    # there first, said, and the call runs live instead.
    with pytest.warns(RuntimeWarning, match="its cache entry is not used.*does not match"):
        second = producer.run(n)
    assert second.wait() == n
    assert cli_json("store", "verify")["item"]["findings"] == []
    for handle in (first, second):
        out = KitaruClient().executions.get(handle.exec_id)
        assert out.status == "completed"
    store = kitaru._kitaru.Store(os.environ["KITARU_STORE"])
    out = store.checkpoint_output(first.exec_id, "produce")
    assert out is not None and out[1] == bytes(range(256)) * (n // 256)


def test_a_retry_reruns_a_call_whose_stored_output_is_damaged(isolated_store: Path) -> None:
    n = SIZES["small"]
    PLAN.update(crash=True)
    handle = producer.run(n)
    assert handle.status == "failed"
    (blob,) = _blobs(isolated_store)
    _damage(blob)
    PLAN.update(crash=False)
    with pytest.warns(RuntimeWarning, match="damaged, so the call runs again") as caught:
        KitaruClient().executions.retry(handle.exec_id)
    assert [w.filename for w in caught] == [__file__]  # the user's call, not kitaru
    assert handle.wait() == n
    assert CALLS == [n, n]  # ran again once; its new output repaired the blob
    report = kitaru._kitaru.Store(os.environ["KITARU_STORE"]).verify()
    assert report["findings"] == [], report
