"""What every benchmark shares: percentiles, a child-process runner, and the output format
(a table for people and, with --json, one JSON object as the last line for machines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def run_python(code: str, env: dict | None = None, timeout: float = 900) -> dict:
    """Run `code` in a fresh interpreter at the project root; it prints one JSON object last."""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"child process failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(title: str, rows: list[tuple[str, object, str]], figures: dict, as_json: bool) -> None:
    """Print a table of (name, value, note) rows, then the JSON object when asked."""
    width = max(len(name) for name, _, _ in rows)
    print(title)
    print("-" * len(title))
    for name, value, note in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown:>12}  {note}")
    if as_json:
        print(json.dumps(figures, sort_keys=True))
