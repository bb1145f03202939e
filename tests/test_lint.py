"""The tools engineers use on themselves, in the fast tier (and so in CI): ruff (rules in ruff.toml)
and mypy (mypy.ini) report nothing on app/. A finding fails with the tool's own lines."""

import subprocess
import sys

import pytest

from tests.code_copy import ROOT


def _tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_in_app():
    got = _tool("ruff", "check", "--no-cache", "app")
    assert got.returncode == 0, got.stdout + got.stderr


@pytest.mark.slow
def test_mypy_finds_nothing_in_app():
    got = _tool("mypy")  # files, strictness and cache from mypy.ini
    assert got.returncode == 0, got.stdout + got.stderr
