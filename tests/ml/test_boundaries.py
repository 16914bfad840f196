"""The ml package stays a plain Python package: importing any of it never imports Django."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ml

pytestmark = [pytest.mark.no_db, pytest.mark.slow]


def test_no_ml_module_imports_django():
    modules = [f"ml.{m.name}" for m in pkgutil.iter_modules(ml.__path__)]
    assert len(modules) >= 10
    # A fresh interpreter in which any import of django fails loudly.
    script = "import sys; sys.modules['django'] = None\n" + "".join(f"import {name}\n" for name in modules)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(ml.__file__).parent.parent, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_serving_path_does_not_import_tensorflow():
    script = ("import sys\nimport ml.predictor, ml.folder_eval, ml.explain, ml.imaging\n"
              "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(ml.__file__).parent.parent, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
