import kitaru
from kitaru import errors


def test_hierarchy_matches_kitaru_04() -> None:
    assert issubclass(kitaru.KitaruError, Exception)
    assert issubclass(kitaru.KitaruUsageError, kitaru.KitaruError)
    assert issubclass(kitaru.KitaruUsageError, ValueError)
    for cls in (kitaru.KitaruContextError, kitaru.KitaruStateError, kitaru.KitaruRuntimeError):
        assert issubclass(cls, kitaru.KitaruError) and issubclass(cls, RuntimeError)
    assert issubclass(kitaru.KitaruExecutionError, kitaru.KitaruRuntimeError)
    assert issubclass(kitaru.KitaruUserCodeError, kitaru.KitaruExecutionError)
    assert issubclass(kitaru.KitaruDivergenceError, kitaru.KitaruExecutionError)
    assert issubclass(kitaru.KitaruBackendError, kitaru.KitaruRuntimeError)
    assert issubclass(kitaru.KitaruLogRetrievalError, kitaru.KitaruBackendError)
    assert issubclass(kitaru.KitaruWaitValidationError, kitaru.KitaruUsageError)
    assert issubclass(kitaru.KitaruFeatureNotAvailableError, NotImplementedError)
    assert issubclass(errors.KitaruTimeoutError, TimeoutError)
    assert issubclass(errors.KitaruExecutionNotFoundError, LookupError)
    assert issubclass(errors.KitaruExecutionNotFoundError, kitaru.KitaruUsageError)
    assert {o.value for o in kitaru.FailureOrigin} >= {
        "user_code",
        "runtime",
        "backend",
        "divergence",
        "unknown",
    }


def test_execution_error_carries_context() -> None:
    e = kitaru.KitaruExecutionError(
        "boom", exec_id="x", status="failed", failure_origin=kitaru.FailureOrigin.USER_CODE
    )
    assert (e.exec_id, e.status, e.failure_origin) == ("x", "failed", "user_code")


def test_recovery_command_only_for_failed() -> None:
    assert errors.build_recovery_command("abc", "failed") == "kitaru executions retry abc"
    for status in ("completed", "running", "cancelled", "waiting"):
        assert errors.build_recovery_command("abc", status) is None
    assert "kitaru executions retry abc" in (errors.format_recovery_hint("abc", "failed") or "")


def test_public_names() -> None:
    for name in kitaru.__all__:
        assert getattr(kitaru, name) is not None
    assert sorted(kitaru.__all__) == kitaru.__all__


def test_a_cancel_is_a_state_error_named_for_it() -> None:
    assert issubclass(errors.KitaruCancelledError, kitaru.KitaruStateError)
    assert "KitaruCancelledError" in errors.__all__
    assert kitaru.KitaruCancelledError is errors.KitaruCancelledError
    # Code written for the attribute older releases set still reads it.
    assert errors.KitaruCancelledError("execution x was cancelled while it ran").cancelled
    assert not kitaru.KitaruStateError("still running").cancelled
    assert not errors.KitaruLeaseError("taken over").cancelled


CAUGHT: list[BaseException] = []


@kitaru.flow
def _cancelled_while_it_runs() -> int:
    exec_id = kitaru.current_execution_id()
    assert exec_id is not None
    kitaru.KitaruClient().executions.cancel(exec_id)
    run = kitaru._context.current_flow.get()
    assert run is not None
    try:
        run.runner.check_lease()  # what every checkpoint boundary asks the core
    except kitaru.KitaruStateError as exc:
        CAUGHT.append(exc)
    return 1  # recording the result meets the cancel too


def test_the_core_raises_a_cancel_as_kitaru_cancelled_error() -> None:
    CAUGHT.clear()
    handle = _cancelled_while_it_runs.run()  # a cancel ends the run quietly, wherever seen
    assert handle.status == "cancelled"
    assert len(CAUGHT) == 1 and type(CAUGHT[0]) is errors.KitaruCancelledError
    assert "was cancelled while it ran" in str(CAUGHT[0]) and CAUGHT[0].cancelled
