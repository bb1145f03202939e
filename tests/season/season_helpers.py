"""What the season tests run: the CLI as a user runs it (imported by the tests and conftest)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def season_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """`python -m app.season ARGS` as a user runs it (exit code, stdout, stderr)."""
    return subprocess.run([sys.executable, "-m", "app.season", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600)


def build_args(raw: Path, out: Path, fields="fields.gpkg", baseline=None, *extra) -> list:
    args = ["build", "--fields", raw / fields, "--mapping", raw / "mapping.toml", "--scenes", raw / "scenes",
            "--out", out, *extra]
    return args + (["--baseline", baseline] if baseline else [])
