"""assess_preproc.sh as a throttled array on the shared preproc node: two jobs, one list, each field once."""

import re
import subprocess

import pytest
from test_assess_normal import batch_status, ok_counts, setup_batch

pytestmark = [pytest.mark.slurm, pytest.mark.container]


def array_states(job) -> list[str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
    return re.findall(r"\bJobState=(\S+)", out)


def test_array_tasks_share_one_list_and_assess_each_field_once(tmp_path, sure2_sif, jobs):
    fields, fields_file, out, env = setup_batch(tmp_path, sure2_sif, 8)
    job = jobs.submit("assess_preproc.sh", env, "--array=1-2%2", f"--output={tmp_path}/job-%A_%a.out")
    states = jobs.wait_for(
        "both array tasks to end",
        lambda: (s := array_states(job)) and len(s) == 2 and all(x not in ("PENDING", "RUNNING", "COMPLETING") for x in s)
        and s,
        timeout=240)
    logs = "".join(p.read_text() for p in tmp_path.glob("job-*.out"))
    assert states == ["COMPLETED", "COMPLETED"], logs
    assert len(re.findall(r"^node-run: step \d+ on p1: end \S+ exit 0$", logs, re.M)) == 2
    status = batch_status(sure2_sif, out, fields_file)
    assert status["valid"] == 8 and status["todo"] == 0
    counts = ok_counts(out)
    assert sorted(counts) == sorted(fields) and set(counts.values()) == {1}
