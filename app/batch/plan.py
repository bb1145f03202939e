"""Planning: the requested fields minus those that already have a VALID output.

Valid = footer reads, row count = the season's date count, metadata names the field, the code
version and the data fingerprint (app.sure2.output.check_output). Existence alone proves nothing.
Invalid outputs are moved aside to OUT/.batch/invalid/ and planned again; temp files left by dead
writers are removed. Both happen under the journal lock and only for fields no live worker holds,
because a worker claims (under that lock) before it writes.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from app.batch.claims import ClaimBoard
from app.batch.layout import BatchLayout, field_of_temp
from app.errors import BadInput


@dataclass
class Plan:
    todo: list  # fields to assess, in catalogue (spatial) order
    requested: int  # distinct IDs asked for
    valid: list = field(default_factory=list)  # already valid: skipped
    bad_ids: dict = field(default_factory=dict)  # id -> reason (not a field of this season)
    given_up: dict = field(default_factory=dict)  # field -> last failure reason
    moved: list = field(default_factory=list)  # (field, reason, moved-to path)
    swept: int = 0  # temp files of dead writers removed

    def counts(self) -> dict:
        return {
            "requested": self.requested,
            "valid": len(self.valid),
            "todo": len(self.todo),
            "moved_aside": len(self.moved),
            "given_up": len(self.given_up),
            "bad_ids": len(self.bad_ids),
            "temp_swept": self.swept,
        }


class OutputChecker:
    """Checks one field's output against the season (footer only)."""

    def __init__(self, season, out_dir):
        from app import __version__
        from app.sure2.output import check_output, output_path

        self._check, self._path = check_output, output_path
        self.season, self.out, self.version = season, Path(out_dir), __version__

    def path(self, fid: str) -> Path:
        return Path(self._path(self.out, fid))

    def problem(self, fid: str) -> str | None:
        """None when the output is valid, else why not."""
        return self._check(self.path(fid), fid, self.season.n_dates, self.version, self.season.fingerprint)


def read_id_list(path) -> list[str]:
    """IDs from a file ('-' = stdin), one per line; blank lines and '#' comments ignored."""
    import sys

    text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
    return [s.strip() for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")]


def requested_fields(season, ids: list[str] | None) -> tuple[list[str], dict]:
    """(fields in catalogue order, {bad id: reason}) for a list, or the whole catalogue."""
    catalogue = list(season.field_ids)
    if ids is None:
        return catalogue, {}
    bad, wanted = {}, set()
    for fid in dict.fromkeys(ids):
        try:
            season.require(fid)
            wanted.add(fid)
        except BadInput as exc:
            bad[fid] = str(exc)
    return [fid for fid in catalogue if fid in wanted], bad


def make_plan(
    season, layout: BatchLayout, board: ClaimBoard, ids=None, max_failures=3, failures_since=0.0, tidy=True
) -> Plan:
    """tidy=False (status) looks only: nothing is moved aside or swept."""
    checker = OutputChecker(season, layout.out)
    fields, bad = requested_fields(season, ids)
    plan = Plan(todo=[], requested=len(fields) + len(bad), bad_ids=bad)
    with board.journal.locked():
        state = board.sync()
    present = {entry.name for entry in os.scandir(layout.out)}
    for fid in fields:
        fails = [f for f in state.failures.get(fid, ()) if f.t >= failures_since]
        if len(fails) >= max_failures or (fails and fails[-1].kind == "bad"):
            plan.given_up[fid] = fails[-1].why
            continue
        path = checker.path(fid)
        if path.name in present:
            reason = checker.problem(fid)
            if reason is None:
                plan.valid.append(fid)
                continue
            moved = _move_aside_if_unheld(board, layout, checker, fid) if tidy else None
            if moved is None:  # looking only, a live worker holds it, or it became valid meanwhile
                if tidy and checker.problem(fid) is None:
                    plan.valid.append(fid)
                    continue
            else:
                plan.moved.append((fid, reason, str(moved)))
        plan.todo.append(fid)
    plan.swept = sweep_dead_temp_files(board, layout, present) if tidy else 0
    return plan


def _move_aside_if_unheld(board, layout, checker, fid) -> Path | None:
    with board.journal.locked():
        board.sync()
        if fid in board.live_claims():
            return None
        reason = checker.problem(fid)
        if reason is None or not checker.path(fid).exists():
            return None
        moved = layout.move_aside(checker.path(fid))
        board.journal.append([{"o": board.owner, "invalid": fid, "why": reason, "moved": str(moved)}])
    return moved


def sweep_dead_temp_files(board: ClaimBoard, layout: BatchLayout, names=None) -> int:
    """Remove temp outputs whose field no live worker holds (their writer is dead)."""
    names = names if names is not None else {e.name for e in os.scandir(layout.out)}
    temps = [(n, field_of_temp(n)) for n in names]
    temps = [(n, fid) for n, fid in temps if fid is not None]
    if not temps:
        return 0
    removed = 0
    with board.journal.locked():
        board.sync()
        held = board.live_claims()
        for name, fid in temps:
            if fid not in held:
                try:
                    (layout.out / name).unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed
