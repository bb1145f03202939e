#!/usr/bin/env python3
"""Build the Apptainer images: build/base.sif, then build/sure2.sif and build/train.sif on it.

    python build.py wheelhouse DIR [--torch-variant cu130|cu128]   # pinned wheels, for offline builds
    python build.py base|sure2|train|season|all [--data DIR] [--wheelhouse DIR] [--torch-variant V] [--force]
        [--bootstrap scratch|docker --from IMAGE]

Each build goes through spython's Client.build (never its recipe writer: the def files in apptainer/
are plain text, templated only with Apptainer's own {{ build-args }}), with --fakeroot and zstd
squashfs. The image's %test runs as part of the build. A build writes to a temporary name and is
checked to be really new before it replaces the target (spython returns the old path when a build
fails). build/manifest.json records, per image: the hash of every input, versions, the image's
sha256 and size, and the build time; an image whose inputs did not change is not rebuilt.

Inputs, all staged under build/stage/: Debian bookworm .debs for the offline base (apt-get download,
a throwaway apt configuration, so it works on a Debian 12 or 13 host); the wheelhouse (default
build/wheelhouse, filled on first use; pip installs from it with --no-index, bound at /wheelhouse);
the app wheel (setup.py bdist_wheel: app.sure2 compiled, no sources); the season for sure2.sif
(--data DIR, default a demo season made by `python -m app.season synth --fields 200 --seed 1`).
Exit status: 0 built or up to date, 2 bad usage, 3 missing tool or a failed build (the failing
section's output is shown; the full log is in build/logs/NAME.log).
"""

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from app.errors import BadInput, guarded
from app.hpc.atomic import sha256_file

ROOT = Path(__file__).resolve().parent
BUILD = ROOT / "build"
STAGE = BUILD / "stage"
LOGS = BUILD / "logs"
MANIFEST = BUILD / "manifest.json"
DEFAULT_WHEELHOUSE = BUILD / "wheelhouse"
REQUIREMENTS = ROOT / "requirements"
DEBIAN_SUITE = "bookworm"
DEMO_SEASON = {"fields": 200, "seed": 1}
TORCH_VARIANTS = {"cu130": "train.txt", "cu128": "train-cu128.txt"}
# zstd level by image: small images compress harder (sure2.sif must stay small; seconds at level 9);
# train.sif is 3 GB of mostly incompressible CUDA libraries, where level 3 saves a minute. Blocks stay
# at the default 128 KiB: every run mounts the image afresh and decompresses each block it touches,
# so 1 MiB blocks (-6 % size) cost ≈0.15 s CPU more per container start (measured on sure2.sif).
# What each image holds of the app, in one place: its wheel (train.sif: its source copy) is made of
# exactly these packages, and tests/container/test_images.py opens each built image and checks that it
# holds them, no other, and that every module in them imports there.
IMAGE_PACKAGES = {
    # sealed: the compiled assessment and the batch that runs it inside the image on Slurm; no build side
    "sure2": ("app", "app.batch", "app.hpc", "app.sure2"),
    # the season build side: importers, fetch and generators, and the assessment and batch code they reuse
    "season": ("app", "app.batch", "app.fetch", "app.hpc", "app.season", "app.sure2"),
    # EMB training, prediction and the embedding fetch
    "train": ("app", "app.emb", "app.fetch", "app.hpc"),
}
SQUASHFS_LEVEL = {"base": 9, "sure2": 9, "train": 3, "season": 9}
SECTION_MARK = re.compile(r"INFO:\s+(Running (setup|post) scriptlet|Running testscript|Copying .*|Adding .*)")


class BuildError(Exception):
    """A build that cannot proceed or failed; the message is what the user needs to see."""


# --- hashing -----------------------------------------------------------------------------------------

def sha256_tree(directory: Path) -> str:
    """Hash of every file's relative path and content under a directory."""
    return sha256_tree_of(directory, ("*",))


def sha256_tree_of(directory: Path, patterns: tuple) -> str:
    h = hashlib.sha256()
    files = {p for pattern in patterns for p in directory.rglob(pattern) if p.is_file()}
    for path in sorted(files):
        h.update(f"{path.relative_to(directory)}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def sha256_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def wheel_content_hash(wheel: Path) -> str:
    """Hash of a wheel's RECORD without its dist-info lines: the files' own sha256s, not zip timestamps."""
    with zipfile.ZipFile(wheel) as z:
        record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
        lines = [l for l in z.read(record).decode().splitlines() if ".dist-info/" not in l.split(",")[0]]
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


# --- running tools -----------------------------------------------------------------------------------

def run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise BuildError(f"{' '.join(map(str, cmd[:4]))} ... failed (exit {proc.returncode}):\n{tail}")
    return proc


def apptainer_path() -> str:
    path = shutil.which("apptainer")
    if not path:
        raise BuildError("apptainer is not installed: run `bash scripts/install-apptainer.sh` (as root)")
    return path


def apptainer_version() -> str:
    return run([apptainer_path(), "--version"]).stdout.split()[-1]


def spython_shim() -> Path:
    """A `singularity` for spython (it only calls that name) that merges stderr into stdout,
    so streaming the build reads every line and cannot block on a full stderr pipe."""
    shim_dir = BUILD / ".bin"
    shim_dir.mkdir(parents=True, exist_ok=True)
    shim = shim_dir / "singularity"
    shim.write_text(f'#!/bin/sh\nexec {apptainer_path()} "$@" 2>&1\n')
    shim.chmod(0o755)
    return shim_dir


def failing_section(lines: list[str]) -> str:
    """The output from the last section Apptainer announced (e.g. 'Running post scriptlet') on."""
    start = max((i for i, l in enumerate(lines) if SECTION_MARK.search(l)), default=0)
    section = lines[start:]
    if len(section) > 60:
        section = section[:1] + ["    ..."] + section[-59:]
    return "".join(section)


def apptainer_build(name: str, def_file: Path, target: Path, build_args: dict, binds: dict) -> None:
    from spython.main import Client

    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    options = ["--fakeroot", "--mksquashfs-args", f"-comp zstd -Xcompression-level {SQUASHFS_LEVEL[name]}"]
    for host, inside in binds.items():
        options += ["--bind", f"{host}:{inside}"]
    for key, value in build_args.items():
        options += ["--build-arg", f"{key}={value}"]
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{name}.log"
    shim_dir = str(spython_shim())
    if not os.environ["PATH"].startswith(shim_dir + os.pathsep):
        os.environ["PATH"] = f"{shim_dir}{os.pathsep}{os.environ['PATH']}"
    started = time.time()
    lines = []
    with open(log_path, "w", buffering=1) as log:  # line-buffered: the log follows a long build
        try:
            _, stream = Client.build(recipe=str(def_file), image=str(partial), sudo=False, stream=True,
                                         quiet=True, options=options)
            for line in stream:
                lines.append(line)
                log.write(line)
        except subprocess.CalledProcessError:
            partial.unlink(missing_ok=True)
            raise BuildError(f"building {name} failed; the failing section's output "
                             f"(full log: {log_path}):\n{failing_section(lines)}") from None
    # spython reports the path whenever a file exists there: check it is this build's output.
    if not partial.is_file() or partial.stat().st_mtime < started:
        raise BuildError(f"building {name} produced no new image (full log: {log_path})")
    os.replace(partial, target)


# --- manifest ------------------------------------------------------------------------------------------

def load_manifest() -> dict:
    try:
        return json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}


def save_manifest(manifest: dict) -> None:
    BUILD.mkdir(exist_ok=True)
    tmp = MANIFEST.with_name(f".{MANIFEST.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, MANIFEST)


def up_to_date(entry: dict | None, target: Path, inputs_sha256: str) -> bool:
    """Same inputs, and the image on disk is the one recorded (size and mtime: no 3 GB re-hash)."""
    if not entry or entry.get("inputs_sha256") != inputs_sha256 or not target.is_file():
        return False
    st = target.stat()
    return entry.get("size_bytes") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns


def build_image(name: str, inputs: dict, build_args: dict, binds: dict, versions: dict, force: bool) -> dict:
    def_file = ROOT / "apptainer" / f"{name}.def"
    target = BUILD / f"{name}.sif"
    inputs = {**inputs, "def": sha256_file(def_file), "apptainer": apptainer_version(),
              "squashfs": f"zstd-{SQUASHFS_LEVEL[name]}"}
    inputs_sha256 = sha256_json(inputs)
    manifest = load_manifest()
    if not force and up_to_date(manifest.get(name), target, inputs_sha256):
        print(f"build: {name}.sif is up to date ({target.stat().st_size / 1e6:.0f} MB)", flush=True)
        return manifest[name]
    print(f"build: building {name}.sif ...", flush=True)
    started = time.monotonic()
    apptainer_build(name, def_file, target, build_args, binds)
    seconds = time.monotonic() - started
    st = target.stat()
    entry = {
        "image": str(target.relative_to(ROOT)), "inputs_sha256": inputs_sha256, "inputs": inputs,
        "versions": versions, "sha256": sha256_file(target), "size_bytes": st.st_size,
        "mtime_ns": st.st_mtime_ns, "build_seconds": round(seconds, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest = load_manifest()
    manifest[name] = entry
    save_manifest(manifest)
    print(f"build: {name}.sif built in {seconds:.1f} s, {st.st_size / 1e6:.0f} MB, %test passed", flush=True)
    return entry


# --- staging -------------------------------------------------------------------------------------------

def requirement_files(torch_variant: str | None, extra=()) -> list[Path]:
    files = [REQUIREMENTS / "image.txt", REQUIREMENTS / "runtime.txt", *extra]
    if torch_variant:
        files.append(REQUIREMENTS / TORCH_VARIANTS[torch_variant])
    return files


def with_includes(requirements: Path) -> list[Path]:
    """A requirements file and every file it pulls in with `-r` (recursively): what decides its pins."""
    found = [requirements]
    for line in requirements.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
            found += [p for p in with_includes(requirements.parent / parts[1]) if p not in found]
    return found


def fill_wheelhouse(directory: Path, torch_variant: str | None, extra=()) -> None:
    """pip download of the pinned requirements (binary wheels only): a later build needs no network."""
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--dest", directory]
    for req in requirement_files(torch_variant, extra):
        cmd += ["-r", req]
    print(f"build: wheelhouse {directory} <- {', '.join(p.name for p in requirement_files(torch_variant, extra))}",
          flush=True)
    run(cmd)


def wheelhouse_for(args, torch_variant: str | None, extra=()) -> Path:
    """The wheelhouse to bind; the default one is filled (or topped up) here, an explicit one is trusted."""
    if args.wheelhouse:
        directory = Path(args.wheelhouse).resolve()
        if not any(directory.glob("pip-*.whl")):
            raise BuildError(f"wheelhouse {directory} has no pip wheel: fill it with `python build.py wheelhouse {directory}`")
        return directory
    pins = [sha256_file(p) for f in requirement_files(torch_variant, extra) for p in with_includes(f)]
    stamp = DEFAULT_WHEELHOUSE / f".filled-{sha256_json(pins)[:16]}"
    if not stamp.exists():
        fill_wheelhouse(DEFAULT_WHEELHOUSE, torch_variant, extra)
        stamp.touch()
    return DEFAULT_WHEELHOUSE


def debian_packages(list_name: str) -> list[str]:
    text = (ROOT / "apptainer" / list_name).read_text()
    return [word for line in text.splitlines() if not line.startswith("#") for word in line.split()]


def stage_debs(list_name: str = "base-debs.txt", dest: str = "debs") -> Path:
    """Debian bookworm .debs named in apptainer/LIST_NAME (the scratch base's; train.sif's compiler)
    into build/stage/DEST, via a throwaway apt configuration (cached)."""
    debs = STAGE / dest
    packages = debian_packages(list_name)
    stamp = debs / f".downloaded-{sha256_json(packages)[:16]}"
    if stamp.exists():
        return debs
    if not shutil.which("apt-get"):
        raise BuildError("the offline base needs apt-get (Debian); elsewhere use --bootstrap docker")
    shutil.rmtree(debs, ignore_errors=True)
    apt = STAGE / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "etc/preferences.d"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "etc/sources.list").write_text(
        f"deb http://deb.debian.org/debian {DEBIAN_SUITE} main\n"
        f"deb http://deb.debian.org/debian-security {DEBIAN_SUITE}-security main\n")
    options = []
    for key, value in {"Dir::Etc::sourcelist": apt / "etc/sources.list", "Dir::Etc::sourceparts": "-",
                       "Dir::Etc::preferencesparts": apt / "etc/preferences.d", "Dir::State::Lists": apt / "lists",
                       "Dir::Cache": apt / "cache", "Dir::State::status": "/dev/null",
                       "APT::Sandbox::User": "root"}.items():
        options += ["-o", f"{key}={value}"]
    print(f"build: downloading {len(packages)} Debian {DEBIAN_SUITE} packages ({list_name})", flush=True)
    run(["apt-get", *options, "update", "-qq"])
    debs.mkdir(parents=True)
    run(["apt-get", *options, "download", "-qq", *packages], cwd=debs)
    stamp.touch()
    return debs


def build_app_wheel(image: str) -> Path:
    """The app wheel of one image: only its IMAGE_PACKAGES (setup.py reads $APP_PACKAGES), built in its
    own setuptools build dir (kept: compiled modules are rebuilt only when changed) from which any
    package the image no longer declares is removed first, so none can linger in the wheel."""
    out, work = STAGE / f"wheel-{image}", STAGE / f"setup-{image}"
    shutil.rmtree(out, ignore_errors=True)
    declared = {p.replace(".", "/") for p in IMAGE_PACKAGES[image]}
    for lib in work.glob("lib*"):
        for init in sorted(lib.glob("app/**/__init__.py")):
            if init.parent.relative_to(lib).as_posix() not in declared:
                shutil.rmtree(init.parent, ignore_errors=True)
    run([sys.executable, "setup.py", "-q", "build", "--build-base", work, "bdist_wheel", "--bdist-dir",
         work / "bdist", "--dist-dir", out], cwd=ROOT, env={**os.environ, "APP_PACKAGES": " ".join(IMAGE_PACKAGES[image])})
    wheels = list(out.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"setup.py bdist_wheel made {len(wheels)} wheels in {out}, expected 1")
    return wheels[0]


def stage_season(data: str | None) -> Path:
    if data:
        season = Path(data).resolve()
        if not (season / "season.json").is_file():
            raise BadInput(f"--data {season} is not a season directory (no season.json)")
        return season
    season = STAGE / "season"
    # regenerated when the generator's code (app/season, app/sure2 sources) or its parameters change
    generator = sha256_json([DEMO_SEASON, *(sha256_tree_of(ROOT / "app" / pkg, ("*.py", "*.pyx"))
                                            for pkg in ("season", "sure2"))])
    stamp = STAGE / "season.generator"
    if not season.is_dir() or not stamp.is_file() or stamp.read_text() != generator:
        partial = STAGE / "season.partial"  # renamed when complete: a killed synth leaves no half season
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(season, ignore_errors=True)
        print(f"build: synthesising the demo season ({DEMO_SEASON['fields']} fields)", flush=True)
        # the generator uses the compiled kernels: make sure the in-place build exists (setup.sh does it too)
        run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT)
        run([sys.executable, "-m", "app.season", "synth", "--fields", DEMO_SEASON["fields"],
             "--seed", DEMO_SEASON["seed"], "--out", partial], cwd=ROOT)
        os.replace(partial, season)
        stamp.write_text(generator)
    return season


def stage_train_app() -> Path:
    """The app source for train.sif: its IMAGE_PACKAGES (no build debris)."""
    dest = STAGE / "train-app" / "app"
    shutil.rmtree(dest.parent, ignore_errors=True)
    packages = {p.replace(".", "/") for p in IMAGE_PACKAGES["train"]}

    def outside(directory, names):
        here = Path(directory).relative_to(ROOT).as_posix()
        return [n for n in names if (Path(directory) / n).is_dir() and f"{here}/{n}" not in packages
                and (Path(directory) / n / "__init__.py").is_file()] + [
            n for n in names if n == "__pycache__" or n.endswith((".so", ".c", ".pyc"))]

    shutil.copytree(ROOT / "app", dest, ignore=outside)
    return dest


def code_version() -> str:
    return run([sys.executable, "-c", "import app; print(app.__version__)"], cwd=ROOT).stdout.strip()


def sure2_code_version(wheel: Path) -> str:
    """The code version sure2.sif's outputs record: the digest of the wheel's compiled app.sure2 modules,
    by the rule app.sure2.version applies at run time to the installed files."""
    from app.code_digest import ASSESSMENT_PACKAGE, digest_of
    from app.sure2.version import version_string

    package = ASSESSMENT_PACKAGE.replace(".", "/") + "/"
    with zipfile.ZipFile(wheel) as z:
        modules = [(f"{ASSESSMENT_PACKAGE}.{Path(n).name.split('.')[0]}", z.read(n)) for n in z.namelist()
                   if n.startswith(package) and n.count("/") == 2 and n.endswith(".so")]
    return version_string(digest_of(modules))


# --- images --------------------------------------------------------------------------------------------

def build_base(args, force=False) -> dict:
    wheelhouse = wheelhouse_for(args, None)
    runtime = REQUIREMENTS / "runtime.txt"
    build_args = {"BOOTSTRAP": args.bootstrap, "FROM": args.from_image or "", "REQUIREMENTS": runtime}
    inputs = {"requirements": sha256_file(runtime), "bootstrap": args.bootstrap, "from": args.from_image,
              "pip": sorted(p.name for p in wheelhouse.glob("pip-*.whl"))}
    if args.bootstrap == "scratch":
        debs = stage_debs()
        build_args["DEBS"] = debs
        inputs["debs"] = sorted(p.name for p in debs.glob("*.deb"))
    versions = {"python": "3.11", "runtime": [l for l in runtime.read_text().splitlines() if "==" in l]}
    return build_image("base", inputs, build_args, {wheelhouse: "/wheelhouse"}, versions, force)


def build_sure2(args, force=False) -> dict:
    season = stage_season(args.data)  # a bad --data is refused before minutes of base building
    base = build_base(args)
    wheelhouse = wheelhouse_for(args, None)
    wheel = build_app_wheel("sure2")
    fingerprint = json.loads((season / "season.json").read_text()).get("fingerprint", "unknown")
    version = sure2_code_version(wheel)
    inputs = {"base": base["sha256"], "wheel": wheel_content_hash(wheel), "season": sha256_tree(season)}
    build_args = {"BASE": BUILD / "base.sif", "WHEEL": wheel, "DATA": season,
                  "CODE_VERSION": version, "DATA_FINGERPRINT": fingerprint}
    versions = {"code": version, "data_fingerprint": fingerprint, "season": str(season)}
    return build_image("sure2", inputs, build_args, {wheelhouse: "/wheelhouse"}, versions, force)


def build_train(args, force=False) -> dict:
    """train.sif: torch + the plot and vector stacks from the wheelhouse, the app source, and a C/C++
    compiler (the bookworm .debs of apptainer/train-debs.txt, unpacked in %setup) for torch.compile."""
    base = build_base(args)
    wheelhouse = wheelhouse_for(args, args.torch_variant)
    app_dir = stage_train_app()
    compiler = stage_debs("train-debs.txt", "train-debs")
    requirements = REQUIREMENTS / TORCH_VARIANTS[args.torch_variant]
    version = code_version()
    inputs = {"base": base["sha256"], "app": sha256_tree(app_dir), "torch_variant": args.torch_variant,
              "requirements": {p.name: sha256_file(p) for p in with_includes(requirements)},
              "compiler_debs": sorted(p.name for p in compiler.glob("*.deb"))}
    build_args = {"BASE": BUILD / "base.sif", "REQUIREMENTS_DIR": REQUIREMENTS, "REQUIREMENTS": requirements.name,
                  "APP": app_dir, "COMPILER_DEBS": compiler, "CODE_VERSION": version}
    versions = {"code": version, "torch_variant": args.torch_variant,
                "torch": [l for l in requirements.read_text().splitlines() if l.startswith("torch")],
                "compiler": sorted(p.name for p in compiler.glob("g*-12_*.deb"))}
    return build_image("train", inputs, build_args, {wheelhouse: "/wheelhouse"}, versions, force)


def build_season(args, force=False) -> dict:
    """season.sif: the season build side (app.season with pyogrio), never sealed into sure2.sif."""
    base = build_base(args)
    requirements = REQUIREMENTS / "vector.txt"
    wheelhouse = wheelhouse_for(args, None, (requirements,))
    wheel = build_app_wheel("season")
    version = code_version()
    inputs = {"base": base["sha256"], "wheel": wheel_content_hash(wheel), "requirements": sha256_file(requirements)}
    build_args = {"BASE": BUILD / "base.sif", "WHEEL": wheel, "REQUIREMENTS": requirements, "CODE_VERSION": version}
    versions = {"code": version, "vector": [l for l in requirements.read_text().splitlines() if "==" in l]}
    return build_image("season", inputs, build_args, {wheelhouse: "/wheelhouse"}, versions, force)


def build_all(args, force=False) -> None:
    if force:
        build_base(args, force=True)  # the images on it follow: their input is the base's sha256
    build_sure2(args, force)
    build_train(args, force)
    build_season(args, force)


def exclusive_build_dir():
    """One build.py at a time per checkout: two would race on the same .partial files and manifest."""
    BUILD.mkdir(exist_ok=True)
    lock = open(BUILD / ".build.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("build: another build.py is running in this checkout; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=["wheelhouse", "base", "sure2", "train", "season", "all"])
    parser.add_argument("directory", nargs="?", help="wheelhouse: where to download the pinned wheels")
    parser.add_argument("--data", help="season directory to embed in sure2.sif (default: the demo season)")
    parser.add_argument("--wheelhouse", help=f"pinned wheels to install from (default {DEFAULT_WHEELHOUSE.relative_to(ROOT)}, filled on first use)")
    parser.add_argument("--torch-variant", choices=sorted(TORCH_VARIANTS), default="cu130",
                        help="cu130: torch 2.14.1 (R580+ drivers, default); cu128: torch 2.9.1")
    parser.add_argument("--bootstrap", choices=["scratch", "docker"], default="scratch",
                        help="base OS: bookworm .debs (offline, default) or a docker image (--from)")
    parser.add_argument("--from", dest="from_image", help="docker image for --bootstrap docker, e.g. python:3.11-slim-bookworm")
    parser.add_argument("--force", action="store_true", help="rebuild even if the inputs did not change")
    args = parser.parse_args(argv)
    if (args.target == "wheelhouse") != bool(args.directory):
        parser.error("a directory is required for 'wheelhouse' and only for it")
    if args.bootstrap == "docker" and not args.from_image:
        parser.error("--bootstrap docker needs --from IMAGE")
    return guarded("build", _build, args)


def _build(args) -> int:
    try:
        if args.target == "wheelhouse":
            fill_wheelhouse(Path(args.directory).resolve(), args.torch_variant, (REQUIREMENTS / "vector.txt",))
        else:
            apptainer_path()  # fail first, before minutes of staging
            lock = exclusive_build_dir()  # noqa: F841 (held open until the process exits)
            # --force rebuilds the named image; what it stands on is rebuilt only if its inputs changed
            builders = {"base": build_base, "sure2": build_sure2, "train": build_train, "season": build_season,
                        "all": build_all}
            builders[args.target](args, force=args.force)
    except BuildError as exc:
        print(f"build: ERROR: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
