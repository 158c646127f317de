from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_quickstart_kills_and_resumes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "child exit code -9 (killed)" in out
    assert "status: failed" in out
    assert "plan         reused from the killed run" in out
    assert "research     reused from the killed run" in out
    assert "research_2   ran live in the retry" in out
    assert "write        ran live in the retry" in out
    assert "status: completed" in out and "Report on durable agents" in out
