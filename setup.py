"""Build of the `app` package: app.sure2 is Cython-compiled; its wheel ships .so files, no sources.
The season build side's per-window loops (app/season/*.pyx) are compiled too.

    python setup.py build_ext --inplace   # development: .so next to the .py (the .so wins at import)
    python setup.py bdist_wheel           # a wheel of the whole package
    APP_PACKAGES="app app.hpc app.sure2" python setup.py bdist_wheel   # only these packages (build.py:
                                          # each image's wheel holds exactly the packages it declares)

Every module of app/sure2 except the two tiny shims (__init__, __main__) is compiled, the plain .py
modules as well as the .pyx kernels; build_py leaves their sources out of the wheel.
"""

import os
import sysconfig
from pathlib import Path

from Cython.Build import cythonize
from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
COMPILED_PACKAGE = "app/sure2"
SHIMS = {"__init__.py", "__main__.py"}
KERNELS_ONLY = "app/season"  # only its .pyx are compiled: the rest of the build side stays plain Python


def selected_packages() -> list:
    """Every package of app, or only those named in $APP_PACKAGES (space-separated)."""
    found = find_packages(include=["app", "app.*"])
    wanted = os.environ.get("APP_PACKAGES", "").split()
    unknown = set(wanted) - set(found)
    if unknown:
        raise SystemExit(f"APP_PACKAGES names no package of app: {', '.join(sorted(unknown))}")
    return [p for p in found if p in wanted] if wanted else found


def compiled_sources() -> list:
    return sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / COMPILED_PACKAGE).iterdir()
        if p.suffix in (".py", ".pyx") and p.name not in SHIMS
    )


def kernel_sources() -> list:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / KERNELS_ONLY).glob("*.pyx"))


def _version() -> str:
    for line in (ROOT / "app" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("app.__version__ not found")


class BuildPyWithoutCompiledSources(build_py):
    """Keep the compiled modules' .py out of build/ (and so out of the wheel)."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not _is_compiled(m[2])]


class ParallelBuildExt(build_ext):
    def initialize_options(self):
        super().initialize_options()
        self.parallel = max(1, len(os.sched_getaffinity(0)))

    def run(self):
        super().run()
        # A module that moved or was deleted leaves its old .so behind, which would still import and
        # would count in the code version (app.sure2.version hashes every compiled module): prune it.
        target = ROOT if self.inplace else Path(self.build_lib)
        if not (target / COMPILED_PACKAGE).is_dir():
            return
        wanted = {Path(src).stem for src in compiled_sources()}
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        for so in (target / COMPILED_PACKAGE).glob(f"*{suffix}"):
            if so.name[: -len(suffix)] not in wanted:
                so.unlink()


def _is_compiled(path: str) -> bool:
    p = Path(path)
    return p.parent.as_posix().endswith(COMPILED_PACKAGE) and p.name not in SHIMS


os.chdir(ROOT)
PACKAGES = selected_packages()
setup(
    name="sealed-geoml",
    version=_version(),
    description="Sealed geospatial ML for HPC clusters (Sure2 assessment compiled with Cython)",
    packages=PACKAGES,
    python_requires=">=3.11",
    ext_modules=cythonize(
        (compiled_sources() if "app.sure2" in PACKAGES else [])
        + (kernel_sources() if "app.season" in PACKAGES else []),
        quiet=True,
        nthreads=max(1, len(os.sched_getaffinity(0))),
        compiler_directives={
            "language_level": 3,
            # Type annotations stay documentation: `x: int` must not turn into a C type check.
            "annotation_typing": False,
            "embedsignature": True,
        },
    ),
    cmdclass={"build_py": BuildPyWithoutCompiledSources, "build_ext": ParallelBuildExt},
    exclude_package_data={"": ["*.c", "*.pyx", "*.pxd"]},
    # the season page's code and its vendored libraries (inlined into report.html by app.batch.page)
    package_data={"app.batch": ["page_assets/*.js", "page_assets/*.css", "page_assets/vendor/*"]},
    zip_safe=False,
)
