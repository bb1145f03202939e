"""Cluster profiles (profiles/NAME.profile) through their one reader, slurm/common.sh: binds resolve as
the wrappers resolve them, and every line kind parses in every profile. Plain unit tests: no Slurm."""

import os
import pwd
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "slurm" / "common.sh"
PROFILES = ("betzy", "saga", "local", "olivia")
JOB_ENV = {"USER": "alice", "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": "/home/alice/work"}


def bash_binds(profile, names, extra_env=None, job_env=JOB_ENV):
    env = {"PATH": os.environ["PATH"], "CLUSTER_PROFILE": profile, **job_env, **(extra_env or {})}
    return subprocess.run(["bash", str(COMMON), "binds", *names], env=env, capture_output=True, text=True)


def reader(profile, code):
    env = {"PATH": os.environ["PATH"], "CLUSTER_PROFILE": profile}
    got = subprocess.run(["bash", "-c", f'source "{COMMON}" && {code}'], env=env, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    return got.stdout


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_binds_outputs_and_a_ram_temp_dir_per_job(profile):
    got = bash_binds(profile, ["out", "tmp", "shards", "runs"])
    assert got.returncode == 0, got.stderr
    out, tmp, shards, runs = got.stdout.splitlines()
    assert tmp == "/dev/shm/alice/4242"  # RAM, one directory per job
    assert out.startswith("/") and shards.startswith("/") and runs.startswith("/")
    lines = reader(profile, "sl_map_lines bind").splitlines()
    modes = {line.split()[1]: line.split()[4] for line in lines}
    assert modes["out"] == "rw" and modes["shards"] == "ro"


def test_betzy_paths_expand_user_and_job():
    got = bash_binds("betzy", ["out", "tmp"])
    assert got.stdout.splitlines() == ["/cluster/work/users/alice/sure2/out", "/dev/shm/alice/4242"]


def test_override_with_spaces_and_quotes_is_taken_verbatim():
    odd = "/scratch/my runs/it's \"q\" $HOME"
    got = bash_binds("betzy", ["out"], {"BIND_OUT": odd})
    assert got.returncode == 0 and got.stdout == odd + "\n"


def test_unset_variable_is_an_error():
    got = bash_binds("betzy", ["tmp"], job_env={"USER": "alice"})
    assert got.returncode == 2 and "$SLURM_JOB_ID" in got.stderr and got.stdout == ""


def test_user_falls_back_to_the_account_name():
    got = bash_binds("betzy", ["tmp"], job_env={"SLURM_JOB_ID": "7"})
    assert got.stdout == f"/dev/shm/{pwd.getpwuid(os.getuid()).pw_name}/7\n"


@pytest.mark.parametrize("bad", ["/a:b", "/a,b", "relative/dir"])
def test_paths_apptainer_cannot_bind_are_refused(bad):
    got = bash_binds("betzy", ["out"], {"BIND_OUT": bad})
    assert got.returncode == 2 and got.stdout == ""
    assert got.stderr.count("\n") == 1


def test_no_command_substitution_in_map_values(tmp_path):
    # A map is data: $(...) and backticks stay literal text.
    m = tmp_path / "evil.map"
    m.write_text("bind out /x/$(id)/`id`/$USER /out rw\n")
    assert bash_binds(str(m), ["out"]).stdout == "/x/$(id)/`id`/alice\n"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_line_is_a_known_kind_with_its_fields(profile):
    known = {"bind": (4, 5), "rule": (4,), "node": None, "cluster": (3,)}
    for kind in known:
        for line in reader(profile, f"sl_map_lines {kind}").splitlines():
            fields = line.split()
            if kind == "node":
                assert fields[2].isdigit() and all("=" in f for f in fields[3:]), line
                keys = {f.split("=")[0] for f in fields[3:]}
                assert {"sockets", "cores_per_socket", "threads_per_core", "memory_mb"} <= keys, line
            else:
                assert len(fields) in known[kind], line
    everything = reader(profile, "sed -e 's/#.*//' \"$(sl_map_file)\" | awk 'NF { print $1 }'")
    assert set(everything.split()) <= set(known)


def test_rules_read_by_key():
    assert reader("betzy", "sl_rule normal nodes").strip() == "4-512"
    assert reader("betzy", "sl_rule accel max_nodes_per_user").strip() == "3"
    assert reader("betzy", "sl_rule preproc nodes").strip() == "1-1"
    for profile in PROFILES:  # Betzy's "every job must specify an account", on every profile
        parts = set(reader(profile, "sl_map_lines rule | awk '{print $2}'").split())
        assert all(reader(profile, f"sl_rule {p} account").strip() == "required" for p in parts), profile
