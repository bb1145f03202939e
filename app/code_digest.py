"""The one code digest behind every "valid": a product is kept only if the code that makes it now made it.

Each product names the modules whose code decides its content (`PRODUCTS`); `code_digest(product)`
is the sha256 over (module name, bytes of the file the interpreter loads for it): the compiled `.so`
where one is built (it wins at import), else the `.py` source. A rebuilt or edited module changes the
digest of the products that list it, and only theirs:

- `assessment`: every module of app.sure2 but its two shims (all compiled). Each output records it
  (`code_version()`, app.sure2.version); a change to the season build side redoes no assessment.
- `stack`: the NDVI import (scene catalogue, BOA offset, scene NDVI, stack plan and build, their
  compiled kernels). Each season stack records it; a change to the import redoes the stacks.
- `shard`: EMB prepare (rasters, quantisation, parcels and labels, split, shard format). Each shard's
  fingerprint covers it.

Modules those import that cannot change a product's bytes (atomic writes, core counts, temp dirs,
error classes) are left out on purpose, so a change to them redoes nothing; tests/test_code_digest.py
checks that every module a product's code imports is either listed or one of those.
"""

import hashlib
import importlib.util
import pkgutil
from functools import lru_cache
from pathlib import Path

SHIMS = ("__init__", "__main__")  # app.sure2's plain-Python entry points: no science in them
ASSESSMENT_PACKAGE = "app.sure2"
PRODUCTS = {
    "stack": ("app.season.scenes", "app.season.offset", "app.season._scene_kernels", "app.season.scene_ndvi",
              "app.season.stack_plan", "app.season.stack_build"),
    "shard": ("app.emb", "app.emb.raster", "app.emb.quant", "app.vector", "app.emb.labels", "app.emb.split",
              "app.emb.shards", "app.emb.prepare"),
}


def product_modules(product: str) -> tuple[str, ...]:
    if product == "assessment":
        package = importlib.util.find_spec(ASSESSMENT_PACKAGE)
        found = pkgutil.iter_modules(package.submodule_search_locations or [] if package else [])
        return tuple(sorted(f"{ASSESSMENT_PACKAGE}.{m.name}" for m in found if m.name not in SHIMS))
    return PRODUCTS[product]


def digest_of(modules) -> str:
    """sha256 over (module name, sha256 of its bytes) pairs, in name order."""
    h = hashlib.sha256()
    for name, data in sorted(modules):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def module_file(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise RuntimeError(f"module {name} not found: cannot tell which code made its products")
    return spec.origin


@lru_cache(maxsize=None)
def code_digest(product: str) -> str:
    """64 hex: the digest of the files that `product`'s modules load from."""
    files = [(name, module_file(name)) for name in product_modules(product)]
    if not files:
        raise RuntimeError(f"no modules found for {product}")
    if product == "assessment" and not all(path.endswith(".so") for _, path in files):
        plain = [name for name, path in files if not path.endswith(".so")]
        raise RuntimeError(f"{', '.join(plain)} not compiled: build them (python setup.py build_ext --inplace)")
    return digest_of((name, Path(path).read_bytes()) for name, path in files)
