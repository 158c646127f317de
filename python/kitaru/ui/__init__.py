"""`kitaru ui`: a local web dashboard that reads a store directly (`pip install kitaru[ui]`).

This package's `__init__` imports nothing; `serve` (in `_serve`) loads Starlette, uvicorn
and Jinja2 when a dashboard starts.
"""
