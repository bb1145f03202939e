"""Cluster profiles (bind_maps/PROFILE.map) read from Python: container binds and partition rules.

The same plain-text files are read from bash by slurm/common.sh (the wrappers run on hosts without
this package); the format is documented at the top of bind_maps/betzy.map. Both readers expand only
$NAME and ${NAME} from the environment (no command substitution: paths are data), fall back to the
account name for an unset $USER, let BIND_<NAME> replace a bind's host path, and refuse host paths
that apptainer --bind cannot express (':' or ',').
"""

import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

from app.errors import BadInput

MAPS_DIR = Path(__file__).resolve().parents[2] / "bind_maps"
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Bind:
    name: str
    host: str  # as written in the map, variables unexpanded
    container: str
    mode: str  # rw | ro

    def resolve(self, environ=os.environ) -> "Bind":
        """This bind with its host path from BIND_<NAME>, else expanded from the environment."""
        host = environ.get(f"BIND_{self.name.upper()}") or expand(self.host, environ)
        if ":" in host or "," in host:
            raise BadInput(f"bind {self.name}: host path {host!r} contains ':' or ',', which apptainer --bind cannot express")
        if not host.startswith("/"):
            raise BadInput(f"bind {self.name}: host path {host!r} must be absolute")
        return Bind(self.name, host, self.container, self.mode)

    def spec(self) -> str:
        return f"{self.host}:{self.container}:{self.mode}"


@dataclass(frozen=True)
class Profile:
    name: str
    binds: dict  # name -> Bind
    rules: dict  # partition -> {key: value}

    def bind_args(self, names, environ=os.environ) -> list[str]:
        """`--bind HOST:CONTAINER:MODE` arguments for apptainer, in the order asked."""
        args = []
        for name in names:
            if name not in self.binds:
                raise BadInput(f"profile {self.name} has no bind named {name!r} (has: {', '.join(self.binds)})")
            args += ["--bind", self.binds[name].resolve(environ).spec()]
        return args

    def rule(self, partition: str, key: str) -> str | None:
        return self.rules.get(partition, {}).get(key)


def expand(text: str, environ=os.environ) -> str:
    """Replace $NAME / ${NAME}; an unset variable is an error (a path must not silently lose a part)."""

    def value(m):
        name = m.group(1) or m.group(2)
        if name in environ:
            return environ[name]
        if name == "USER":
            return pwd.getpwuid(os.getuid()).pw_name
        raise BadInput(f"bind map uses ${name}, which is not set here (set it, or set BIND_<NAME>)")

    return _VAR.sub(value, text)


def parse(text: str, name: str = "profile") -> Profile:
    binds, rules = {}, {}
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        kind = fields[0]
        if kind == "bind" and len(fields) in (4, 5):
            mode = fields[4] if len(fields) == 5 else "rw"
            if mode not in ("rw", "ro"):
                raise BadInput(f"{name}:{number}: bind mode must be rw or ro, not {mode!r}")
            binds[fields[1]] = Bind(fields[1], fields[2], fields[3], mode)
        elif kind == "rule" and len(fields) == 4:
            rules.setdefault(fields[1], {})[fields[2]] = fields[3]
        else:
            raise BadInput(f"{name}:{number}: expected 'bind NAME HOST CONTAINER [MODE]' or 'rule PARTITION KEY VALUE'")
    return Profile(name, binds, rules)


def load(profile: str = "betzy") -> Profile:
    """A profile by name (betzy, saga, local) or by path to a .map file."""
    path = Path(profile) if "/" in profile else MAPS_DIR / f"{profile}.map"
    if not path.is_file():
        known = sorted(p.stem for p in MAPS_DIR.glob("*.map"))
        raise BadInput(f"unknown cluster profile {profile!r} (have: {', '.join(known)})")
    return parse(path.read_text(), path.stem)
