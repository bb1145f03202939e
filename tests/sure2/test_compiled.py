"""The venv runs the compiled assessment (scripts/setup.sh builds it in place), never stale builds."""

import importlib
import os
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "app" / "sure2"
COMPILED = sorted(p for p in PACKAGE.iterdir()
                  if p.suffix in (".py", ".pyx") and p.name not in ("__init__.py", "__main__.py"))


@pytest.mark.parametrize("source", COMPILED, ids=lambda p: p.name)
def test_module_is_compiled_and_current(source):
    module = importlib.import_module(f"app.sure2.{source.stem}")
    assert module.__file__.endswith(".so"), f"{source.name} is not compiled: run scripts/setup.sh"
    assert os.path.getmtime(module.__file__) >= os.path.getmtime(source), (
        f"{source.name} changed after its build: run `python setup.py build_ext --inplace`")


def test_shims_stay_plain_python():
    import app.sure2

    assert app.sure2.__file__.endswith("__init__.py")
