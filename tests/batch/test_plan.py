"""Planning tidies only what nobody is working on: a field held by a live worker keeps its temp
file and its (not yet valid) output; a dead writer's leftovers go."""

import subprocess
import time

from app.batch.claims import ClaimBoard
from app.batch.journal import Journal
from app.batch.layout import BatchLayout, field_of_temp
from app.batch.plan import make_plan
from app.batch.policy import BatchPolicy, FailurePolicy
from app.sure2.settings import Settings
from app.hpc.atomic import temp_name
from tests.batch.conftest import batch_cmd, run_batch
from tests.code_copy import app_copy, change_module

ELSEWHERE = "node9|b00t|1|77|1"  # a worker on another node: alive while its lease lasts


def setup(tmp_path, season):
    layout = BatchLayout(tmp_path)
    layout.create()
    board = ClaimBoard(Journal(layout.journal), lease_s=60)
    return layout, board


def test_field_of_temp_names():
    assert field_of_temp(temp_name(__import__("pathlib").Path("/o/NO25-00001.parquet")).name) == "NO25-00001"
    assert field_of_temp("NO25-00001.parquet") is None
    assert field_of_temp(".x.json.tmp.1.ab") is None


def test_live_claims_keep_their_files_dead_ones_are_tidied(season, tmp_path):
    layout, board = setup(tmp_path, season)
    held, loose = season.field_ids[:2]
    for fid in (held, loose):
        (tmp_path / f"{fid}.parquet").write_bytes(b"half")  # invalid
        temp_name(tmp_path / f"{fid}.parquet").write_bytes(b"partial")
    with board.journal.locked():
        board.sync()
        board.journal.append([{"o": ELSEWHERE, "claim": [held]}])

    plan = make_plan(season, layout, board, BatchPolicy(Settings()))
    assert plan.todo == list(season.field_ids)  # nothing valid yet: everything planned
    assert [m[0] for m in plan.moved] == [loose] and plan.swept == 1
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != ".batch")
    assert f"{held}.parquet" in left and any(field_of_temp(n) == held for n in left)
    assert f"{loose}.parquet" not in left and not any(field_of_temp(n) == loose for n in left)

    board.state.last_seen[ELSEWHERE] = time.time() - 3600  # its lease ran out: the node is gone
    plan = make_plan(season, layout, board, BatchPolicy(Settings()))
    assert [m[0] for m in plan.moved] == [held] and plan.swept == 1
    assert [p.name for p in tmp_path.iterdir()] == [".batch"]


def test_status_looks_without_touching(season, tmp_path):
    layout, board = setup(tmp_path, season)
    fid = season.field_ids[0]
    (tmp_path / f"{fid}.parquet").write_bytes(b"junk")
    plan = make_plan(season, layout, board, BatchPolicy(Settings()), tidy=False)
    assert fid in plan.todo and plan.moved == [] and (tmp_path / f"{fid}.parquet").exists()


def test_list_order_follows_the_catalogue(season, tmp_path):
    layout, board = setup(tmp_path, season)
    wanted = list(reversed(season.field_ids[:5]))
    plan = make_plan(season, layout, board, BatchPolicy(Settings()), ids=wanted + ["bad/id"])
    assert plan.todo == season.field_ids[:5] and list(plan.bad_ids) == ["bad/id"]


def test_outputs_of_a_rebuilt_assessment_are_planned_again_and_a_season_build_change_redoes_none(
        season, season_dir, tmp_path):
    """The real `plan` from a copy of the code: one compiled module of the assessment rebuilt (other
    bytes) → every output is another code's and planned again; a change to the season build → none."""
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(season.field_ids[:3]) + "\n")
    out = tmp_path / "out"
    done = run_batch(season_dir, out, "--fields", ids, "--no-report")
    assert done.returncode == 0, done.stderr

    def plan_from(root):
        got = subprocess.run(batch_cmd("plan", season_dir, out, "--fields", ids), cwd=root, capture_output=True,
                             text=True, timeout=120)
        assert got.returncode == 0, got.stderr
        return got.stdout.split()

    root = app_copy(tmp_path / "code")
    change_module(root, "app/season/builder.py")
    assert plan_from(root) == []
    change_module(root, "app/sure2/payout.*.so")
    assert plan_from(root) == season.field_ids[:3]


def test_a_field_whose_input_was_bad_is_given_up_at_once_and_failures_count_to_the_limit(season, tmp_path):
    layout, board = setup(tmp_path, season)
    bad, flaky, broken = season.field_ids[:3]
    board.record([{"bad": bad, "why": "contract names no crop"}, {"fail": flaky, "why": "timeout"}]
                 + [{"fail": broken, "why": "singular"}] * 2)
    plan = make_plan(season, layout, board, BatchPolicy(Settings(), FailurePolicy(max_failures=2)), tidy=False)
    assert plan.given_up == {bad: "contract names no crop", broken: "singular"}
    assert flaky in plan.todo and bad not in plan.todo and broken not in plan.todo
    retry = BatchPolicy(Settings(), FailurePolicy(max_failures=2, since=time.time() + 1))  # --retry-failed
    assert make_plan(season, layout, board, retry, tidy=False).given_up == {}
