"""Stacks: the `kitaru stack` commands and API, the stacks file, and which store a run uses
(KITARU_STORE > configure > .run/@flow stack= > pyproject.toml > active stack > default)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kitaru
import pytest
from conftest import cli_json, run_cli, write_script
from kitaru import KitaruClient, KitaruUsageError, _config, checkpoint, flow, stacks


@checkpoint
def double(x: int) -> int:
    return 2 * x


@flow(stack="deco")
def pinned(x: int) -> int:
    return double(x)


@flow
def plain(x: int) -> int:
    return double(x)


@flow
async def aplain(x: int) -> int:
    return double(x)


@pytest.fixture
def no_env_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No KITARU_STORE, and a working directory with no pyproject.toml above it."""
    monkeypatch.delenv("KITARU_STORE")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    kitaru.configure(stack=None)
    yield tmp_path
    kitaru.configure(stack=None)


def config_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


def exec_ids(location: Path | str) -> set[str]:
    """The executions in the store at `location`."""
    return {v["exec_id"] for v in _config.get_store(str(location)).list()}


def where(exec_id: str, stores: dict[str, Path]) -> list[str]:
    """The names of the stores that hold `exec_id` (exactly one, when all is well)."""
    return [name for name, path in stores.items() if exec_id in exec_ids(path)]


# --- the CLI --------------------------------------------------------------------------


def test_cli_create_list_show_use_delete(no_env_store: Path) -> None:
    tmp = no_env_store
    default_store = str(config_dir(tmp) / "store")
    listing = cli_json("stack", "list")
    assert listing["command"] == "stack.list" and listing["count"] == 1
    assert listing["items"] == [
        {
            "id": "default",
            "name": "default",
            "location": default_store,
            "options": {},
            "is_active": True,
            "is_default": True,
            "labels": {},
            "runner": None,
        }
    ]

    created = cli_json("stack", "create", "prod", "--artifact-store", "prod-store")["item"]
    assert created["name"] == "prod" and created["is_active"] is True
    assert created["location"] == str(tmp / "work" / "prod-store")  # made absolute
    assert created["previous_active_stack"] == "default"

    s3 = cli_json(
        "stack", "create", "remote",
        "--artifact-store", "s3://agents-bucket/kitaru",
        "--region", "eu-west-1",
        "--endpoint", "http://127.0.0.1:9000",
        "--allow-http",
        "--option", "virtual_hosted_style_request=false",
        "--no-activate",
    )["item"]  # fmt: skip
    assert s3["location"] == "s3://agents-bucket/kitaru" and s3["is_active"] is False
    assert s3["options"] == {
        "region": "eu-west-1",
        "endpoint": "http://127.0.0.1:9000",
        "allow_http": "true",
        "virtual_hosted_style_request": "false",
    }
    assert s3["previous_active_stack"] == "prod"

    listing = cli_json("stack", "list")
    assert [(i["name"], i["is_active"]) for i in listing["items"]] == [
        ("default", False),
        ("prod", True),
        ("remote", False),
    ]
    text = run_cli("stack", "list", check=True).stdout
    assert "ACTIVE" in text and "s3://agents-bucket/kitaru" in text and "region=eu-west-1" in text

    shown = cli_json("stack", "show", "remote")
    assert shown["command"] == "stack.show" and shown["item"]["options"]["region"] == "eu-west-1"
    current = cli_json("stack", "current")["item"]
    assert current["name"] == "prod"
    assert current["in_effect"] == {
        "stack": "prod",
        "store": created["location"],
        "source": "kitaru stack use",
    }

    used = cli_json("stack", "use", "remote")
    assert used["command"] == "stack.use" and used["item"]["is_active"] is True
    assert "Active stack is now default" in run_cli("stack", "use", "default", check=True).stdout

    deleted = cli_json("stack", "delete", "remote")
    assert deleted["command"] == "stack.delete"
    assert deleted["item"]["deleted_stack"] == "remote"
    assert deleted["item"]["new_active_stack"] == "default"
    assert [i.name for i in kitaru.list_stacks()] == ["default", "prod"]


def test_cli_errors_name_the_problem(no_env_store: Path) -> None:
    cases: list[tuple[list[str], list[str]]] = [
        (["stack", "create", "bad name"], ["Invalid stack name 'bad name'"]),
        (["stack", "create", "default"], ["built-in local stack"]),
        (["stack", "use", "nope"], ["Unknown stack 'nope'", "Known stacks: default"]),
        (["stack", "show", "nope"], ["Unknown stack 'nope'"]),
        (["stack", "delete", "default"], ["cannot be deleted"]),
        (
            ["stack", "create", "s", "--artifact-store", "s3://b/p", "--option", "region"],
            ["--option takes KEY=VALUE"],
        ),
        (
            ["stack", "create", "s", "--artifact-store", "s3://b", "--option", "aws_secret_access_key=x"],
            ["'aws_secret_access_key' looks like a credential", "AWS_SECRET_ACCESS_KEY"],
        ),
        (["stack", "create", "s", "--region", "eu-west-1"], ["apply to object stores"]),
        (["--stack", "prod", "stack", "list"], ["--stack chooses the store of other commands"]),
    ]  # fmt: skip
    for args, needles in cases:
        proc = run_cli(*args)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("Error: "), proc.stderr
        for needle in needles:
            assert needle in proc.stderr, (args, proc.stderr)
    proc = run_cli("stack", "use", "nope", "-o", "json")
    err = json.loads(proc.stderr)
    assert err["command"] == "stack.use" and err["error"]["type"] == "KitaruUsageError"
    assert [i.name for i in kitaru.list_stacks()] == ["default"]  # nothing was created


# --- the Python API and its validation ------------------------------------------------


def test_python_api(no_env_store: Path) -> None:
    tmp = no_env_store
    assert kitaru.current_stack().name == "default" and kitaru.current_stack().id == "default"
    info = kitaru.create_stack("prod", artifact_store=str(tmp / "prod"), activate=False)
    assert info == kitaru.StackInfo("prod", str(tmp / "prod"), {}, is_active=False)
    local = kitaru.create_stack("scratch")
    assert local.location == str(config_dir(tmp) / "stores" / "scratch") and local.is_active
    assert kitaru.current_stack().name == "scratch"
    assert kitaru.use_stack("prod").is_active
    assert [(s.name, s.is_active) for s in kitaru.list_stacks()] == [
        ("default", False),
        ("prod", True),
        ("scratch", False),
    ]
    assert kitaru.delete_stack("scratch").location == local.location
    with pytest.raises(KitaruUsageError, match=r"'prod' is the active stack.*--force"):
        kitaru.delete_stack("prod")
    kitaru.delete_stack("prod", force=True)
    assert kitaru.current_stack().name == "default"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "non-empty"),
        ({"name": "-x"}, "Invalid stack name '-x'"),
        ({"name": "a" * 64}, "Invalid stack name"),
        ({"name": "default"}, "built-in local stack"),
        ({"name": "s", "artifact_store": "ftp://host/x"}, "Unsupported artifact store 'ftp://"),
        ({"name": "s", "artifact_store": "s3://user:pw@bucket/x"}, "must not carry credentials"),
        ({"name": "s", "artifact_store": "az://c/p?sv=1&sig=abc"}, "must not carry credentials"),
        ({"name": "s", "artifact_store": "memory://x", "region": "r"}, "apply to object stores"),
        ({"name": "s", "artifact_store": "s3://b", "options": {"AWS_SESSION_TOKEN": "t"}}, "'aws_session_token' looks like a credential"),
        ({"name": "s", "artifact_store": "az://c", "options": {"sas_token": "t"}}, "looks like a credential"),
        ({"name": "s", "artifact_store": "az://c", "options": {"azure_storage_account_key": "k"}}, "AZURE_STORAGE_ACCOUNT_KEY"),
        ({"name": "s", "artifact_store": "gs://b", "options": {"google_service_account_key": "{}"}}, "looks like a credential"),
        ({"name": "s", "artifact_store": "s3://b", "options": {"sse_customer_key_base64": "k"}}, "looks like a credential"),
        ({"name": "s", "artifact_store": "s3://b", "options": {"region": ""}}, "non-empty string value"),
        ({"name": "s", "artifact_store": "s3://b", "options": {"bad key": "v"}}, "Invalid stack option"),
        ({"name": "s", "artifact_store": "s3://b", "options": ["region"]}, "dict of strings"),
    ],
)  # fmt: skip
def test_create_stack_validation(no_env_store: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(KitaruUsageError, match=message.replace("?", r"\?")):
        kitaru.create_stack(**kwargs)
    assert [s.name for s in kitaru.list_stacks()] == ["default"]


def test_options_that_point_at_credentials_are_accepted(no_env_store: Path) -> None:
    options = {
        "web_identity_token_file": "/var/run/token",
        "google_service_account": "/etc/gcp.json",
        "role_arn": "arn:aws:iam::1:role/r",
    }
    info = kitaru.create_stack("s", artifact_store="s3://b/p", options=options)
    assert info.options == options and stacks.get_stack("s").options == options


def test_duplicates_and_unknown_names(no_env_store: Path) -> None:
    kitaru.create_stack("prod", artifact_store="memory://prod", activate=False)
    with pytest.raises(KitaruUsageError, match="Stack 'prod' already exists"):
        kitaru.create_stack("prod")
    for call in (kitaru.use_stack, kitaru.delete_stack, stacks.get_stack):
        with pytest.raises(KitaruUsageError, match=r"Unknown stack 'prd'.*default, prod"):
            call("prd")
    with pytest.raises(KitaruUsageError, match="non-empty"):
        kitaru.use_stack("")


def test_stacks_file_is_owner_only_and_replaced_atomically(no_env_store: Path) -> None:
    cfg = config_dir(no_env_store)
    kitaru.create_stack("prod", artifact_store="s3://bucket/kitaru", region="eu-west-1")
    path = cfg / "stacks.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data == {
        "version": 1,
        "active": "prod",
        "stacks": {"prod": {"location": "s3://bucket/kitaru", "options": {"region": "eu-west-1"}}},
    }
    inode = path.stat().st_ino
    kitaru.use_stack("default")
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in cfg.iterdir()) == ["stacks.json", "stacks.lock"]  # no temp left


def test_concurrent_creates_lose_nothing(no_env_store: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kitaru.cli", "stack", "create", f"s{i}", "--no-activate"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert [s.name for s in kitaru.list_stacks()] == ["default", *(f"s{i}" for i in range(6))]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "malformed"),
        ('{"version": 2, "active": "default", "stacks": {}}', '"version": 1'),
        ('{"version": 1, "active": "gone", "stacks": {}}', "'gone' is not defined"),
        ('{"version": 1, "active": "default", "stacks": {"p": {}}}', "stack 'p' needs"),
        (
            '{"version": 1, "active": "default", "stacks": {"p": {"location": "s3://b", '
            '"options": {"aws_secret_access_key": "x"}}}}',
            "looks like a credential",
        ),
    ],
)
def test_malformed_stacks_file_names_the_file(no_env_store: Path, content: str, why: str) -> None:
    path = config_dir(no_env_store) / "stacks.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(KitaruUsageError, match="stacks file") as info:
        kitaru.list_stacks()
    assert str(path) in str(info.value) and why in str(info.value)
    with pytest.raises(KitaruUsageError, match="stacks file"):
        plain.run(1)  # a run that needs the active stack says so too
    proc = run_cli("stack", "list")
    assert proc.returncode == 1 and str(path) in proc.stderr


# --- which store a run uses -----------------------------------------------------------


def test_precedence_matrix(no_env_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = no_env_store
    stores = {name: tmp / f"store-{name}" for name in ("env", "cfg", "run", "deco", "proj", "act")}
    stores["default"] = config_dir(tmp) / "store"
    for name in ("cfg", "run", "deco", "proj", "act"):
        kitaru.create_stack(name, artifact_store=str(stores[name]), activate=False)
    kitaru.use_stack("act")
    project = tmp / "project"
    (project / "src" / "pkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\n\n[tool.kitaru]\nstack = "proj"\n'
    )
    monkeypatch.chdir(project / "src" / "pkg")  # found by walking up
    monkeypatch.setenv("KITARU_STORE", str(stores["env"]))
    kitaru.configure(stack="cfg")

    def check(handle: kitaru.FlowHandle[int], expected: str) -> None:
        assert handle.wait() == 2  # the handle reads the store the execution is in
        assert where(handle.exec_id, stores) == [expected]

    check(pinned.run(1, stack="run"), "env")
    monkeypatch.delenv("KITARU_STORE")
    check(pinned.run(1, stack="run"), "cfg")
    assert kitaru.configure(stack=None) == kitaru.KitaruConfig(stack=None)
    check(pinned.run(1, stack="run"), "run")  # .run() beats @flow
    check(pinned.run(1), "deco")
    check(plain.run(1), "proj")
    (project / "pyproject.toml").write_text('[project]\nname = "p"\n')
    check(plain.run(1), "act")
    kitaru.use_stack("default")
    check(plain.run(1), "default")
    # the stack is recorded on the execution
    last = KitaruClient(stack="run").executions.list()[0]
    assert last.stack_name == "run" and last.frozen_execution_spec is not None


def test_async_run_uses_its_stack(no_env_store: Path) -> None:
    import asyncio

    kitaru.create_stack("run", artifact_store=str(no_env_store / "run"), activate=False)
    handle = asyncio.run(aplain.arun(3, stack="run"))
    assert handle.wait() == 6 and where(handle.exec_id, {"run": no_env_store / "run"}) == ["run"]


def test_file_url_and_memory_stacks(no_env_store: Path) -> None:
    url = (no_env_store / "by-url").as_uri()
    kitaru.create_stack("url", artifact_store=url, activate=False)
    kitaru.create_stack("mem", artifact_store="memory://stacks-test", activate=False)
    on_url, in_memory = plain.run(1, stack="url"), plain.run(2, stack="mem")
    assert (on_url.wait(), in_memory.wait()) == (2, 4)
    by_url = KitaruClient(stack="url").executions.list()
    in_mem = KitaruClient(stack="mem").executions.list()
    assert [e.exec_id for e in by_url] == [on_url.exec_id]
    assert [e.exec_id for e in in_mem] == [in_memory.exec_id]
    assert (no_env_store / "by-url").is_dir()


def test_configure(no_env_store: Path) -> None:
    assert kitaru.configure() == kitaru.KitaruConfig(stack=None)
    assert kitaru.configure(stack="prod").stack == "prod"
    assert kitaru.configure().stack == "prod"  # leaving it out keeps it
    with pytest.raises(KitaruUsageError, match=r"Invalid stack name 'no good' \(configure"):
        kitaru.configure(stack="no good")
    assert kitaru.configure().stack == "prod"
    # an unknown name is refused when a run needs it, naming where it came from
    with pytest.raises(KitaruUsageError, match=r"Unknown stack 'prod' \(from kitaru.configure"):
        plain.run(1)


def test_unknown_stack_names_it_and_lists_known(no_env_store: Path) -> None:
    kitaru.create_stack("prod", artifact_store=str(no_env_store / "prod"), activate=False)
    with pytest.raises(
        KitaruUsageError, match=r"Unknown stack 'prdo' \(from \.run\(stack=\.\.\.\)\)\. Known stacks: default, prod"
    ):  # fmt: skip
        plain.run(1, stack="prdo")
    assert exec_ids(no_env_store / "prod") == set()
    assert exec_ids(config_dir(no_env_store) / "store") == set()


def test_pyproject_discovery(no_env_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = no_env_store
    kitaru.create_stack("proj", artifact_store=str(tmp / "proj"), activate=False)
    outer, inner = tmp / "outer", tmp / "outer" / "inner"
    inner.mkdir(parents=True)
    (outer / "pyproject.toml").write_text('[tool.kitaru]\nstack = "proj"\n')
    (inner / "pyproject.toml").write_text('[project]\nname = "inner"\n')
    monkeypatch.chdir(inner)
    # the nearest pyproject.toml is the project's: it has no [tool.kitaru], so no stack
    assert _config.resolve_store().stack == "default"
    monkeypatch.chdir(outer)
    choice = _config.resolve_store()
    assert (choice.stack, choice.location) == ("proj", str(tmp / "proj"))
    assert choice.source == f"[tool.kitaru] in {outer / 'pyproject.toml'}"

    bad = {
        "[tool.kitaru\n": "cannot be read as TOML",
        "[tool.kitaru]\nstack = 3\n": "non-empty string",
        '[tool.kitaru]\nrunner = "x"\n': "was renamed: use stack",
        '[tool.kitaru]\nstack = "nope"\n': "Unknown stack 'nope' (from [tool.kitaru] in",
    }
    for content, message in bad.items():
        (outer / "pyproject.toml").write_text(content)
        with pytest.raises(KitaruUsageError) as info:
            plain.run(1)
        assert message in str(info.value) and str(outer / "pyproject.toml") in str(info.value)
    # read only when needed: KITARU_STORE, configure() and stack= do not look at it
    monkeypatch.setenv("KITARU_STORE", str(tmp / "env"))
    assert plain.run(1).wait() == 2
    monkeypatch.delenv("KITARU_STORE")
    assert plain.run(1, stack="proj").wait() == 2


def test_import_kitaru_reads_no_config() -> None:
    code = (
        "import sys, kitaru; "
        "print(sorted(m for m in ('tomllib', 'kitaru.stacks', 'json') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_get_store_passes_options_only_when_there_are_some(
    no_env_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kitaru.create_stack(
        "remote",
        artifact_store="s3://agents-bucket/kitaru",
        region="eu-west-1",
        endpoint="http://127.0.0.1:9000",
        allow_http=True,
    )
    choice = _config.resolve_store()
    assert (choice.location, choice.options, choice.stack, choice.source) == (
        "s3://agents-bucket/kitaru",
        {"region": "eu-west-1", "endpoint": "http://127.0.0.1:9000", "allow_http": "true"},
        "remote",
        "kitaru stack use",
    )

    opened: list[tuple[str, dict[str, Any]]] = []

    class FakeStore:
        def __init__(self, location: str, **kwargs: Any) -> None:
            opened.append((location, kwargs))

    from kitaru import _kitaru as core

    monkeypatch.setattr(core, "Store", FakeStore)
    monkeypatch.setattr(_config, "_stores", {})
    remote = _config.get_store()
    assert opened == [("s3://agents-bucket/kitaru", {"fsync": False, "options": choice.options})]
    assert _config.get_store() is remote  # cached by (pid, location, options, fsync)
    assert _config.get_store(choice.location, dict(reversed(choice.options.items()))) is remote
    other = _config.get_store(choice.location, {"region": "us-east-1"})
    assert other is not remote
    local = _config.get_store(str(no_env_store / "local"))
    assert opened[-1] == (str(no_env_store / "local"), {"fsync": False, "options": None})
    assert local is not remote and len(opened) == 3


# --- the CLI and flows together --------------------------------------------------------

APPROVAL = """
import json
import kitaru
from kitaru import checkpoint, flow

@checkpoint
def draft(topic: str) -> str:
    return f"Draft about {topic}"

@flow(stack="prod")
def approve(topic: str) -> str:
    text = draft(topic)
    ok = kitaru.wait(name="ok", schema=bool, question="Publish?", timeout=0)
    return text + (" published" if ok else " dropped")

@flow
def quick(x: int) -> int:
    return x + 1

if __name__ == "__main__":
    import sys
    if sys.argv[1] == "quick":
        handle = quick.run(1, stack="prod")
    else:
        handle = approve.run("stacks")
    print(json.dumps({"exec_id": handle.exec_id, "status": str(handle.status)}))
"""


def run_script(script: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_run_with_stack_then_cli_get_with_that_stack_active(no_env_store: Path) -> None:
    tmp = no_env_store
    kitaru.create_stack("prod", artifact_store=str(tmp / "prod-store"), activate=False)
    script = write_script(tmp / "work", "approval.py", APPROVAL)
    started = run_script(script, "quick")
    exec_id = started["exec_id"]
    assert started["status"] == "completed" and exec_ids(tmp / "prod-store") == {exec_id}

    proc = run_cli("executions", "get", exec_id)  # the default stack does not have it
    assert proc.returncode == 1 and exec_id in proc.stderr
    assert "stack 'default' (from default); to look in another stack's store, add --stack" in (
        proc.stderr
    )
    assert (
        cli_json("--stack", "prod", "executions", "get", exec_id)["item"]["status"] == "completed"
    )
    cli_json("stack", "use", "prod")
    got = cli_json("executions", "get", exec_id)["item"]
    assert got["status"] == "completed" and got["stack_name"] == "prod"
    status = cli_json("status")["item"]
    assert (status["stack"], status["stack_source"]) == ("prod", "kitaru stack use")
    assert status["store"] == str(tmp / "prod-store") and status["executions"] == {"completed": 1}
    info = cli_json("store", "info")["item"]
    assert (info["stack"], info["stack_source"]) == ("prod", "kitaru stack use")
    assert cli_json("info")["item"]["stack"] == "prod"
    assert "Stack       prod  (from kitaru stack use)" in run_cli("status", check=True).stdout


def test_wait_input_and_resume_stay_in_the_flows_stack(no_env_store: Path) -> None:
    tmp = no_env_store
    kitaru.create_stack("prod", artifact_store=str(tmp / "prod-store"), activate=False)
    script = write_script(tmp / "work", "approval.py", APPROVAL)
    started = run_script(script, "approve")
    exec_id = started["exec_id"]
    assert started["status"] == "waiting"
    assert exec_ids(tmp / "prod-store") == {exec_id}
    assert exec_ids(config_dir(tmp) / "store") == set()

    cli_json("executions", "input", exec_id, "--value", "true", "--stack", "prod")
    done = cli_json("--stack", "prod", "executions", "resume", exec_id, cwd=tmp / "work")["item"]
    assert done["status"] == "completed"
    client = KitaruClient(stack="prod")
    assert client.executions.result(exec_id) == "Draft about stacks published"
    execution = client.executions.get(exec_id)
    assert execution.refresh().status == "completed"  # refresh() reads the same store


def test_kitaru_store_beats_the_cli_stack_option(
    no_env_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kitaru.create_stack("prod", artifact_store=str(no_env_store / "prod"), activate=False)
    monkeypatch.setenv("KITARU_STORE", str(no_env_store / "env"))
    proc = run_cli("--stack", "prod", "store", "info", "-o", "json", check=True)
    item = json.loads(proc.stdout)["item"]
    assert item["stack"] is None and item["stack_source"] == "KITARU_STORE"
    assert "KITARU_STORE is set and takes precedence over --stack prod" in proc.stderr
    current = cli_json("stack", "current")["item"]
    assert current["name"] == "default" and current["in_effect"]["source"] == "KITARU_STORE"
    assert "which takes precedence here" in run_cli("stack", "current", check=True).stdout


def test_cli_help_mentions_stacks() -> None:
    out = run_cli("stack", "--help", check=True).stdout
    assert "Credentials come from the environment" in out
    for action in ("create", "list", "current", "show", "use", "delete"):
        assert action in out
    assert "--stack NAME" in run_cli("executions", "list", "--help", check=True).stdout
    assert "named store configurations" in run_cli("--help", check=True).stdout
