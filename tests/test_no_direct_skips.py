"""No test skips on its own: every missing prerequisite goes through tests/conftest.py's
tier_unavailable, which fails under --require-tiers (the README's test command) instead of skipping."""

import re
from pathlib import Path

from tests.code_copy import ROOT

DIRECT_SKIP = re.compile(r"pytest\.skip\(|mark\.skipif|importorskip\(|mark\.skip\b|unittest\.skip")


def test_every_skip_goes_through_the_tier_mechanism():
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if DIRECT_SKIP.search(line) and path.name != Path(__file__).name:
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert [f.split(": ", 1)[1] for f in found] == ["pytest.skip(reason)"], "\n".join(found)
