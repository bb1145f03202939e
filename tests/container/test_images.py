"""Each built image holds exactly the app packages build.py declares for it (IMAGE_PACKAGES), and every
module in them imports there: train.sif's EMB with its torch, season.sif's importers, and the sealed
sure2.sif without the build side or EMB (a package that cannot import is a broken image, not a
smaller one)."""

import json

import pytest

from build import IMAGE_PACKAGES
from tests.container.conftest import contained

# Run inside the image: the app packages present (directories with __init__) and each module imported
# (the __main__ modules are entry points: importing one runs it).
PROBE = r"""
import importlib, json, os, pkgutil, sys
import app
root = os.path.dirname(app.__file__)
packages = sorted("app" if rel == "." else "app." + rel.replace(os.sep, ".")
                  for rel in (os.path.relpath(d, root) for d, _, files in os.walk(root) if "__init__.py" in files))
failed, imported = {}, 0
for package in packages:
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.ispkg or info.name == "__main__":
            continue
        name = f"{package}.{info.name}"
        try:
            importlib.import_module(name)
            imported += 1
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"packages": packages, "imported": imported, "failed": failed}))
"""


def probe(image, isolated: bool) -> dict:
    got = contained(image, "python", *(["-I"] if isolated else []), "-c", PROBE, timeout=600)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout.strip().splitlines()[-1])


@pytest.mark.container
@pytest.mark.parametrize("name", sorted(IMAGE_PACKAGES))
def test_each_image_holds_exactly_its_packages_and_each_module_imports(request, name):
    image = request.getfixturevalue(f"{name}_sif")
    found = probe(image, isolated=name != "train")  # train.sif finds the app through PYTHONPATH
    assert found["packages"] == sorted(IMAGE_PACKAGES[name])
    assert found["failed"] == {}
    assert found["imported"] >= 5 * len(IMAGE_PACKAGES[name]) // 2
