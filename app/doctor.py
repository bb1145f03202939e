"""Environment self-check: the images' %test, and `python -m app doctor` on demand.

One line per check (`ok` or `FAIL`, a name, what was found); exit 3 if any check failed. It catches
what actually broke here: a PROJ_DATA pointing at a proj.db rasterio rejects (the PROJ trap: an
inherited %environment made every EPSG lookup fail), a PYTHONPATH entry that does not exist,
thread caps above the physical cores, a temp dir on Lustre or full, GPUs asked for but not seen.
"""

import importlib
import importlib.util
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from app.errors import EnvironmentFailure
from app.hpc.cores import physical_cores
from app.hpc.tempdir import free_bytes, mount_of, pick_temp_dir
from app.hpc.threads import THREAD_VARS

CORE_MODULES = ("numpy", "pyarrow", "rasterio", "pyproj", "shapely")
OPTIONAL_MODULES = ("torch", "torchvision")  # checked where installed (train.sif, the venv)

# UTM 33N of (15 E, 60 N): the central meridian, so easting is exactly 500 km.
EPSG_UTM33N = 32633
PROBE_LONLAT = (15.0, 60.0)
PROBE_UTM = (500000.0, 6651411.19)
PROBE_TOLERANCE_M = 0.01


class CheckFailed(Exception):
    """A check found the environment unusable; the message says what and where."""


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def _present(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_imports() -> str:
    found = []
    for name in CORE_MODULES + tuple(m for m in OPTIONAL_MODULES if _present(m)):
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # an import that raises anything is a broken install
            raise CheckFailed(f"import {name} failed: {type(exc).__name__}: {exc}") from exc
        found.append(f"{name} {getattr(module, '__version__', '?')}")
    return ", ".join(found)


def proj_layout_minor(proj_db: Path) -> int:
    with sqlite3.connect(f"file:{proj_db}?mode=ro", uri=True) as db:
        row = db.execute("SELECT value FROM metadata WHERE key = 'DATABASE.LAYOUT.VERSION.MINOR'").fetchone()
    if row is None:
        raise CheckFailed(f"{proj_db} has no layout version: not a proj.db")
    return int(row[0])


def check_proj_data(environ=os.environ) -> str:
    """PROJ_DATA must hold a proj.db at least as new as the one rasterio's PROJ was built with."""
    import rasterio

    bundled = Path(rasterio.__file__).parent / "proj_data" / "proj.db"
    setting = environ.get("PROJ_DATA") or environ.get("PROJ_LIB")
    if not setting:
        if bundled.exists():
            return f"unset; rasterio uses its bundled {bundled.parent}"
        raise CheckFailed("PROJ_DATA is unset and rasterio bundles no proj.db")
    db = Path(setting.split(os.pathsep)[0]) / "proj.db"
    if not db.is_file():
        raise CheckFailed(f"PROJ_DATA={setting} holds no proj.db (rasterio cannot look up any EPSG code)")
    minor = proj_layout_minor(db)
    if bundled.exists() and minor < proj_layout_minor(bundled):
        raise CheckFailed(
            f"PROJ_DATA={setting}: proj.db layout 1.{minor} is older than rasterio's PROJ needs "
            f"(1.{proj_layout_minor(bundled)}); point it at {bundled.parent}"
        )
    return f"{setting} (proj.db layout 1.{minor})"


def _check_probe(name: str, x: float, y: float) -> str:
    off = max(abs(x - PROBE_UTM[0]), abs(y - PROBE_UTM[1]))
    if off > PROBE_TOLERANCE_M:
        raise CheckFailed(f"{name} put (15E, 60N) at ({x:.2f}, {y:.2f}), {off:.2f} m from ({PROBE_UTM[0]}, {PROBE_UTM[1]})")
    return f"EPSG:{EPSG_UTM33N} found; (15E, 60N) -> ({x:.2f}, {y:.2f})"


def check_rasterio_crs() -> str:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform

    try:
        utm = CRS.from_epsg(EPSG_UTM33N)
        xs, ys = transform(CRS.from_epsg(4326), utm, [PROBE_LONLAT[0]], [PROBE_LONLAT[1]])
    except CRSError as exc:
        raise CheckFailed(f"rasterio EPSG lookup failed: {exc}") from exc
    return _check_probe("rasterio", xs[0], ys[0])


def check_pyproj_crs() -> str:
    from pyproj import Transformer
    from pyproj.exceptions import CRSError

    try:
        x, y = Transformer.from_crs(4326, EPSG_UTM33N, always_xy=True).transform(*PROBE_LONLAT)
    except CRSError as exc:
        raise CheckFailed(f"pyproj EPSG lookup failed: {exc}") from exc
    return _check_probe("pyproj", x, y)


def check_pythonpath(environ=os.environ) -> str:
    entries = [e for e in environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    missing = [e for e in entries if not os.path.isdir(e)]
    if missing:
        raise CheckFailed(f"PYTHONPATH entries that do not exist: {', '.join(missing)}")
    import app

    where = Path(app.__file__).parent
    return f"{os.pathsep.join(entries) or 'unset'}; app {app.__version__} from {where}"


def check_threads(environ=os.environ) -> str:
    cores = physical_cores(environ)
    caps, bad = [], []
    for var in THREAD_VARS:
        value = environ.get(var)
        if value is None:
            continue
        caps.append(f"{var}={value}")
        if not value.isdigit() or not 1 <= int(value) <= cores:
            bad.append(f"{var}={value}")
    if bad:
        raise CheckFailed(f"{', '.join(bad)} not within 1..{cores} physical cores (oversubscription)")
    return f"{cores} physical cores; " + (", ".join(caps) if caps else "no thread caps set")


def check_temp_dir(min_free_mib: int, environ=os.environ) -> str:
    try:
        path = pick_temp_dir(environ=environ)
    except EnvironmentFailure as exc:
        raise CheckFailed(str(exc)) from exc
    free_mib = free_bytes(path) // 2**20
    fstype = mount_of(path).fstype
    if free_mib < min_free_mib:
        raise CheckFailed(f"{path} ({fstype}) has {free_mib} MiB free, below {min_free_mib} MiB")
    return f"{path} ({fstype}, {free_mib} MiB free)"


def visible_gpus() -> list[str]:
    """GPU names as torch sees them when torch is installed, else as nvidia-smi lists them."""
    if _present("torch"):
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
        return [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
    return []


def check_gpus(required: int, environ=os.environ) -> str:
    """GPUs seen, and the driver against the image's CUDA: an allocation torch cannot use, or a driver
    older than the torch build needs, fails with the fix (app.hpc.gpus)."""
    from app.hpc.gpus import FIX, allocated_gpus, driver_too_old, driver_version

    gpus = visible_gpus()
    driver = driver_version()
    cuda = None
    if _present("torch"):
        import torch

        cuda = torch.version.cuda
    why = driver_too_old(cuda, driver)
    if why:
        raise CheckFailed(f"{why}: {FIX}")
    allocated = allocated_gpus(environ)
    if len(gpus) < max(required, len(allocated)):
        want = f"{len(allocated)} allocated" if len(allocated) >= required else f"{required} required"
        raise CheckFailed(f"{want}, {len(gpus)} usable (image CUDA {cuda or 'none'}, driver {driver or 'none found'}): {FIX}")
    listed = f"{len(gpus)}: {', '.join(gpus)}" if gpus else "none"
    return f"{listed} (image CUDA {cuda or 'none'}, driver {driver or 'none'})"


def run_checks(required_gpus: int = 0, min_free_mib: int = 64) -> list[Result]:
    checks = [
        ("imports", check_imports),
        ("proj-data", check_proj_data),
        ("rasterio-crs", check_rasterio_crs),
        ("pyproj-crs", check_pyproj_crs),
        ("pythonpath", check_pythonpath),
        ("threads", check_threads),
        ("temp-dir", lambda: check_temp_dir(min_free_mib)),
        ("gpus", lambda: check_gpus(required_gpus)),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(Result(name, True, check()))
        except CheckFailed as exc:
            results.append(Result(name, False, str(exc)))
        except Exception as exc:  # a check that crashes is a failed check, with its reason
            results.append(Result(name, False, f"{type(exc).__name__}: {exc}"))
    return results
