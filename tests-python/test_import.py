from __future__ import annotations

import json
import subprocess
import sys


def test_import_kitaru_is_light() -> None:
    code = (
        "import sys, json; import kitaru; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'httpx', 'asyncio', 'pydantic_ai', 'langgraph', 'openai', 'anthropic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
