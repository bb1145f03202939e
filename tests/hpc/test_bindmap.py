"""Cluster profiles: the Python reader, and agreement with the bash reader the wrappers use."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from app.errors import BadInput
from app.hpc import bindmap

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "slurm" / "common.sh"
PROFILES = ("betzy", "saga", "local")
JOB_ENV = {"USER": "alice", "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": "/home/alice/work"}


def bash_binds(profile, names, extra_env=None):
    env = {"PATH": os.environ["PATH"], "CLUSTER_PROFILE": profile, **JOB_ENV, **(extra_env or {})}
    return subprocess.run(["bash", str(COMMON), "binds", *names], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_binds_outputs_and_a_ram_temp_dir(profile):
    p = bindmap.load(profile)
    assert {"out", "tmp", "shards", "runs"} <= set(p.binds)
    assert p.binds["out"].container == "/out" and p.binds["out"].mode == "rw"
    assert p.binds["tmp"].container == "/tmp"
    # temp on RAM, one directory per job: never a shared filesystem, never reused across jobs
    assert p.binds["tmp"].host.startswith("/dev/shm/") and "$SLURM_JOB_ID" in p.binds["tmp"].host
    assert p.binds["shards"].mode == "ro"


@pytest.mark.parametrize("profile", PROFILES)
def test_bash_and_python_resolve_the_same_paths(profile):
    names = ["out", "tmp", "shards", "runs"]
    got = bash_binds(profile, names)
    assert got.returncode == 0, got.stderr
    p = bindmap.load(profile)
    assert got.stdout.splitlines() == [p.binds[n].resolve(JOB_ENV).host for n in names]


def test_betzy_paths_expand_user_and_job():
    p = bindmap.load("betzy")
    assert p.binds["out"].resolve(JOB_ENV).host == "/cluster/work/users/alice/sure2/out"
    assert p.binds["tmp"].resolve(JOB_ENV).host == "/dev/shm/alice/4242"
    assert p.bind_args(["out", "tmp"], JOB_ENV) == [
        "--bind", "/cluster/work/users/alice/sure2/out:/out:rw",
        "--bind", "/dev/shm/alice/4242:/tmp:rw",
    ]


def test_override_with_spaces_and_quotes_is_taken_verbatim_by_both_readers():
    odd = "/scratch/my runs/it's \"q\" $HOME"
    env = {**JOB_ENV, "BIND_OUT": odd}
    assert bindmap.load("betzy").binds["out"].resolve(env).host == odd
    got = bash_binds("betzy", ["out"], {"BIND_OUT": odd})
    assert got.returncode == 0 and got.stdout == odd + "\n"


def test_unset_variable_is_an_error_in_both_readers():
    env = {"USER": "alice"}  # no SLURM_JOB_ID
    with pytest.raises(BadInput, match=r"\$SLURM_JOB_ID"):
        bindmap.load("betzy").binds["tmp"].resolve(env)
    got = subprocess.run(
        ["bash", str(COMMON), "binds", "tmp"],
        env={"PATH": os.environ["PATH"], "USER": "alice", "CLUSTER_PROFILE": "betzy"},
        capture_output=True, text=True,
    )
    assert got.returncode == 2 and "$SLURM_JOB_ID" in got.stderr and got.stdout == ""


def test_user_falls_back_to_the_account_name():
    import pwd

    env = {"SLURM_JOB_ID": "7"}
    me = pwd.getpwuid(os.getuid()).pw_name
    assert bindmap.load("betzy").binds["tmp"].resolve(env).host == f"/dev/shm/{me}/7"


@pytest.mark.parametrize("bad", ["/a:b", "/a,b", "relative/dir"])
def test_paths_apptainer_cannot_bind_are_refused_by_both_readers(bad):
    with pytest.raises(BadInput):
        bindmap.load("betzy").binds["out"].resolve({**JOB_ENV, "BIND_OUT": bad})
    got = bash_binds("betzy", ["out"], {"BIND_OUT": bad})
    assert got.returncode == 2 and got.stdout == ""
    assert got.stderr.count("\n") == 1


def test_no_command_substitution_in_map_values(tmp_path):
    # A map is data: $(...) and backticks stay literal text in both readers.
    m = tmp_path / "evil.map"
    m.write_text("bind out /x/$(id)/`id`/$USER /out rw\n")
    want = "/x/$(id)/`id`/alice"
    assert bindmap.load(str(m)).binds["out"].resolve(JOB_ENV).host == want
    assert bash_binds(str(m), ["out"]).stdout == want + "\n"


def test_rules_are_read_alike_by_bash_and_python():
    p = bindmap.load("betzy")
    assert p.rule("normal", "nodes") == "4-512" and p.rule("normal", "mem") == "forbidden"
    assert p.rule("accel", "gpus_per_task") == "forbidden" and p.rule("preproc", "nodes") == "1-1"
    env = {"PATH": os.environ["PATH"], "CLUSTER_PROFILE": "betzy"}
    for part, rules in p.rules.items():
        for key, value in rules.items():
            got = subprocess.run(
                ["bash", "-c", f'source "{COMMON}" && sl_rule {part} {key}'], env=env, capture_output=True, text=True
            )
            assert got.stdout.strip() == value, (part, key)


def test_local_profile_rules_match_the_local_cluster_config():
    """The local cluster enforces at submit what bind_maps/local.map checks before sbatch."""
    p = bindmap.load("local")
    script = (ROOT / "scripts" / "slurm-local.sh").read_text()
    normal = re.search(r"^PartitionName=normal .*$", script, re.M).group(0)
    preproc = re.search(r"^PartitionName=preproc .*$", script, re.M).group(0)
    lo, hi = p.rule("normal", "nodes").split("-")
    assert f"MinNodes={lo}" in normal and f"MaxNodes={hi}" in normal
    assert "MaxNodes=1" in preproc and p.rule("preproc", "nodes") == "1-1"
    assert "EnforcePartLimits=ALL" in script


def test_unknown_profile_and_malformed_lines_are_bad_input(tmp_path):
    with pytest.raises(BadInput, match="betzy"):
        bindmap.load("nowhere")
    m = tmp_path / "bad.map"
    m.write_text("bind out /x\n")
    with pytest.raises(BadInput, match="bad:1"):
        bindmap.load(str(m))
