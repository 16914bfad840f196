"""The configuration table (README) and the application part of `.env.example`, written from the
declarations in brainscan.env, so no variable can go undocumented.

The declarations are read in a fresh interpreter with an empty environment, so the defaults shown
are the built-in ones, whatever the caller has set. Paths inside the project are shown as <project>.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
_DUMP = ("import json, brainscan.settings; from brainscan import env; "
         "print(json.dumps([[name, env.DEFAULTS[name], text] for name, text in env.DECLARED.items()]))")


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    help: str


def declarations() -> list[Variable]:
    # A placeholder key keeps the settings from creating a development key file as a side effect.
    clean = {"PATH": os.environ.get("PATH", ""), "DJANGO_SECRET_KEY": "placeholder"}
    out = subprocess.run([sys.executable, "-c", _DUMP], cwd=BASE_DIR, env=clean, capture_output=True, text=True,
                         check=True).stdout
    return [Variable(name, _portable(default), text) for name, default, text in json.loads(out)]


def _portable(value: str) -> str:
    return value.replace(str(BASE_DIR), "<project>").replace(str(BASE_DIR.parent), "<project>/..")


def markdown_table(variables: list[Variable]) -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for v in variables:
        default = f"`{v.default}`" if v.default else "(none)"
        rows.append(f"| `{v.name}` | {default} | {v.help.replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"


def dotenv(variables: list[Variable]) -> str:
    """Every variable commented out at its default: uncomment a line to change it."""
    return "".join(f"# {v.help}\n# {v.name}={v.default}\n\n" for v in variables)
