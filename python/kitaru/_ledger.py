"""The cost ledger of an execution: its LLM budget, what its runs spent, and what reusing
stored calls saved.

Written as execution metadata records, at once when money is spent: ``kitaru_llm``
(``<claim seq>.<n>`` -> model, tokens, latency, cost), ``kitaru_llm_saved`` (per run) and
``kitaru_budget_usd`` (a budget given to ``.run()`` or ``retry --budget-usd``). `Ledger` is
the writing side, a part of `FlowRun`; `take` is the reading side (`kitaru.client`).
"""

from __future__ import annotations

from .errors import FailureOrigin, KitaruBudgetExceededError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from ._kitaru import Runner

SPEND = "kitaru_llm"
SAVED = "kitaru_llm_saved"
BUDGET = "kitaru_budget_usd"
# Written once a replay took over its source's results (its plan is in the start record's
# options, "replay"; a retry seeds again without this mark).
REPLAY_SEEDED = "kitaru_replay_seeded"


def take(
    metadata: dict[str, Any], options: dict[str, Any] | None
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], float | None]:
    """Takes the ledger's keys out of an execution's `metadata`: (spend entries by key,
    saved per run, budget), the budget falling back to the flow's declared one in `options`."""
    entries = metadata.pop(SPEND, None) or {}
    saved = metadata.pop(SAVED, None) or {}
    budget = metadata.pop(BUDGET, None)
    if budget is None and options:
        budget = options.get("budget_usd")
    return entries, saved, budget


def claim_of(key: str) -> int:
    """The claim (state event number) of the run that wrote spend entry `key`."""
    return int(key.split(".", 1)[0])


class Ledger:
    """The ledger of one run, mixed into `FlowRun` (which provides the attributes below)."""

    if TYPE_CHECKING:
        runner: Runner
        exec_id: str
        flow_name: str
        _lock: Any

        def log(self, values: dict[str, Any]) -> None: ...

    def init_ledger(self) -> None:
        """Budget, spend (of every run so far, read when first needed), and what this run
        got from stored calls instead of paying again."""
        self.budget_usd: float | None = None
        self._spent: float | None = None
        self._earlier: list[dict[str, Any]] | None = None
        self._had_llm: bool | None = None
        self._spend_n = 0
        self.saved_usd = 0.0
        self.saved_calls = 0
        self._saved_ids: set[str] = set()
        self._saved_written = (0, 0.0)
        # Set once the budget stopped the flow: user code that catches the error cannot
        # finish a checkpoint or the flow after it.
        self.budget_error: KitaruBudgetExceededError | None = None

    def _earlier_metadata(self) -> list[dict[str, Any]]:
        """kitaru's own execution metadata of earlier runs (ledger, budget), read once."""
        if self._earlier is None:
            import json

            raws = self.runner.execution_metadata()
            self._earlier = [json.loads(raw) for raw in raws if "kitaru_" in raw]
        return self._earlier

    def set_budget(self, declared: float | None, override: float | None) -> None:
        """The budget of this run: `override` (recorded, so later runs keep it), else the
        last override recorded by an earlier run, else the flow's declared budget."""
        if override is not None:
            self.budget_usd = override
            self.log({BUDGET: override})
            return
        recorded = [m[BUDGET] for m in self._earlier_metadata() if BUDGET in m]
        self.budget_usd = recorded[-1] if recorded else declared

    @property
    def spent_usd(self) -> float:
        """Dollars spent on LLM calls by every run of this execution so far."""
        if self._spent is None:
            total = 0.0
            for meta in self._earlier_metadata():
                for entry in (meta.get(SPEND) or {}).values():
                    total += entry.get("cost_usd") or 0.0
            with self._lock:
                if self._spent is None:
                    self._spent = total
        return self._spent

    def spend_steps(
        self, call: str, checkpoint: str | None, info: dict[str, Any]
    ) -> Generator[tuple[str, tuple[str]], Any, None]:
        """Write a call that reached a provider to the execution's ledger, at once (a step
        of `kitaru._steps`)."""
        with self._lock:
            self._spend_n += 1
            key = f"{self.runner.claim_seq:08}.{self._spend_n:06}"
        earlier = self.spent_usd
        with self._lock:
            base = earlier if self._spent is None else self._spent
            self._spent = base + (info.get("cost_usd") or 0.0)
        entry = {"call": call, **({"checkpoint": checkpoint} if checkpoint else {}), **info}
        yield "log_metadata", (_json({SPEND: {key: entry}}),)
        if self.budget_usd is not None and info.get("cost_usd") is None:
            from .errors import warn_user

            warn_user(
                f"kitaru.llm() call {call!r} to {info.get('resolved_model')} has no known price, so "
                f"the budget of flow {self.flow_name!r} cannot count it; register the alias with "
                "--input-price/--output-price (USD per million tokens).",
                RuntimeWarning,
            )

    def check_budget(self) -> None:
        """Stop the flow when its LLM spend went over its budget."""
        if self.budget_error is not None:
            raise self.budget_error
        if self.budget_usd is None or self.spent_usd <= self.budget_usd:
            return
        self.flush_ledger()
        self.budget_error = KitaruBudgetExceededError(
            f"Execution {self.exec_id} of flow {self.flow_name!r} spent ${self.spent_usd:.4f} on "
            f"LLM calls, over its budget of ${self.budget_usd:.4f}. Retry it with a larger budget: "
            f"`kitaru executions retry {self.exec_id} --budget-usd <dollars>` (finished "
            "checkpoints and llm() calls of the flow body are reused, not paid for again).",
            exec_id=self.exec_id,
            status="failed",
            failure_origin=FailureOrigin.BUDGET,
        )
        raise self.budget_error

    def note_reused(self, call_id: str, cached_metadata: str | None = None) -> None:
        """A stored checkpoint output was reused: count the LLM calls made inside it.
        `cached_metadata`: the call came from another execution through the
        cross-execution cache, with this metadata (that execution paid for its calls)."""
        if cached_metadata is not None:
            raw: str | None = cached_metadata
        else:
            if self._had_llm is None:
                # Every model call is in the ledger before its checkpoint is recorded: with
                # no ledger entry, no stored call holds one (and resume skips the lookups).
                self._had_llm = any(SPEND in m for m in self._earlier_metadata())
            if not self._had_llm:
                return
            raw = self.runner.call_metadata(call_id)
        if raw is None or '"llm_calls"' not in raw or call_id in self._saved_ids:
            return
        self._saved_ids.add(call_id)
        import json

        calls = json.loads(raw).get("llm_calls") or {}
        if not isinstance(calls, dict):
            return
        with self._lock:
            for info in calls.values():
                self.saved_calls += 1
                self.saved_usd += (info.get("cost_usd") or 0.0) if isinstance(info, dict) else 0.0

    def ledger_steps(self) -> Generator[tuple[str, tuple[str]], Any, None]:
        """Record what this run saved by reusing stored LLM calls (once per change)."""
        with self._lock:
            now = (self.saved_calls, round(self.saved_usd, 10))
            if now == self._saved_written or not self.saved_calls:
                return
            self._saved_written = now
        saved = {f"{self.runner.claim_seq:08}": {"calls": now[0], "cost_usd": now[1]}}
        yield "log_metadata", (_json({SAVED: saved}),)

    def flush_ledger(self) -> None:
        """`ledger_steps`, blocking."""
        from ._steps import run_sync

        run_sync(self.ledger_steps(), self.runner)


def _json(values: dict[str, Any]) -> str:
    import json

    return json.dumps(values, default=repr)
