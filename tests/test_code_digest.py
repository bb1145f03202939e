"""One code digest per product, covering exactly the code that changes that product: a changed
compiled module changes the assessment's code version, a changed NDVI import the stacks' digest, a
changed EMB prepare the shards'; the season build side, the batch and the HPC helpers change none."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.code_digest import PRODUCTS, product_modules
from tests.code_copy import ROOT, app_copy, change_module

DIGESTS = ("from app.code_digest import code_digest; from app.sure2.version import code_version; import json; "
           "print(json.dumps({p: code_digest(p) for p in ('assessment', 'stack', 'shard')} | {'version': code_version()}))")


def digests(root: Path) -> dict:
    got = subprocess.run([sys.executable, "-c", DIGESTS], cwd=root, capture_output=True, text=True, check=True)
    return json.loads(got.stdout)


# (file changed, the products whose digest must change)
CHANGES = [
    ("app/sure2/payout.*.so", {"assessment", "version"}),  # one rebuilt compiled module of the assessment
    ("app/sure2/assess.py", set()),  # a source that was not rebuilt: the .so still runs
    ("app/season/_scene_kernels.*.so", {"stack"}),
    ("app/season/offset.py", {"stack"}),
    ("app/season/builder.py", set()),  # the season build's bookkeeping: no stack or assessment redone
    ("app/season/fields_import.py", set()),
    ("app/emb/labels.py", {"shard"}),
    ("app/vector.py", {"shard"}),
    ("app/emb/train.py", set()),
    ("app/batch/plan.py", set()),
    ("app/hpc/atomic.py", set()),
]


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    root = app_copy(tmp_path_factory.mktemp("code"))
    return root, digests(root)


@pytest.mark.parametrize("pattern, changes", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_change_to_one_module_changes_exactly_the_products_it_makes(copy, pattern, changes):
    root, before = copy
    path = next(root.glob(pattern))
    original = path.read_bytes()
    change_module(root, pattern)
    try:
        after = digests(root)
    finally:
        path.write_bytes(original)
    assert {k for k in before if before[k] != after[k]} == changes


def test_the_checkout_and_its_copy_agree(copy):
    _, copied = copy
    assert digests(ROOT) == copied  # the digest depends on module names and bytes, not on where they live


# Modules that a product's code imports but that cannot change its bytes, and why.
NOT_CONTENT = {
    "app": "the package docstring and __version__ (a label)",
    "app.code_digest": "the digest itself",
    "app.errors": "exception classes and exit codes",
    "app.hpc.atomic": "how files are committed, not what they hold",
    "app.hpc.cores": "how many threads read",
    "app.hpc.tempdir": "where scratch lives",
    "app.sure2.season": "stack: the name of the dates tag, checked on the file itself",
    "app.season.fields_import": "stack: the plan's CRS helper; the grid it gives is in the inputs hash",
    "app.vector": "stack: reprojects outlines for the plan; the grid it gives is in the inputs hash",
    "app.sure2": "the package's shim: a docstring",
    "app.batch.page": "evaluate's basis-risk page: how results are shown, not what they are",
}


def _imports(module: str) -> set[str]:
    """The app modules that `module`'s source imports (`from app.x import y` counts app.x.y if it is a module)."""
    base = ROOT / Path(*module.split("."))
    source = next(p for p in (base / "__init__.py", base.with_suffix(".py"), base.with_suffix(".pyx")) if p.is_file())
    if source.suffix == ".pyx":  # Cython: its Python imports are one-line `from app.x import y` / `import app.x`
        found_lines = re.findall(r"^\s*(?:from\s+(app[\w.]*)\s+import\s+([\w, ]+)|import\s+(app[\w.]*))",
                                 source.read_text(), re.M)
        names = [n for mod, what, plain in found_lines
                 for n in ([plain] if plain else [mod] + [f"{mod}.{w.strip()}" for w in what.split(",")])]
    else:
        names = []
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    found = set()
    for name in names:
        path = ROOT / Path(*name.split("."))
        if name.split(".")[0] == "app" and (path.is_dir() or any(path.with_suffix(s).is_file() for s in (".py", ".pyx"))):
            found.add(name)
    return found


@pytest.mark.parametrize("product", ["assessment", *PRODUCTS])
def test_every_module_a_product_imports_is_in_its_digest_or_cannot_change_it(product):
    listed = set(product_modules(product))
    unaccounted = {imp for m in listed for imp in _imports(m)} - listed - set(NOT_CONTENT)
    assert not unaccounted, f"{product} imports {sorted(unaccounted)}: list them in app.code_digest or in NOT_CONTENT"


def test_the_sealed_assessment_depends_on_no_build_side_code():
    assert all(m.startswith("app.sure2.") for m in product_modules("assessment"))
    assert len(product_modules("assessment")) >= 10
