"""Planning: the requested fields minus those that already have a VALID output.

Valid = the whole file reads with matching page checksums, its row count is the field's promised one,
its metadata names the field, the code version, the data fingerprint and this run's settings
(app.sure2.output.check_output). Existence alone proves nothing; a file the batch itself recorded as
valid is trusted while its identity and context still match (app.batch.outputs). Invalid outputs are
moved aside to OUT/.batch/invalid/ and planned again; temp files left by dead writers are removed. Both
happen under the journal lock and only for fields no live worker holds, because a worker claims
(under that lock) before it writes.

Outputs made with other settings (λ, coverage thresholds) are a decision for the user, not a repair:
`--settings-change refuse` (default) stops with one line naming the difference before anything is
touched; `redo` treats them as invalid; `keep` counts them as done.
"""

import os
from dataclasses import dataclass, field

from app.batch.claims import ClaimBoard
from app.batch.layout import OUTPUT_SUFFIX, BatchLayout, field_of_temp
from app.batch.outputs import OutputChecker, OutputIndex, context_of, is_settings_problem
from app.batch.policy import BatchPolicy
from app.errors import BadInput

SETTINGS_CHANGE = ("refuse", "redo", "keep")


@dataclass
class Plan:
    todo: list  # fields to assess, in catalogue (spatial) order
    requested: int  # distinct IDs asked for
    index: OutputIndex  # validity and summaries of outputs, as the plan found them
    valid: list = field(default_factory=list)  # already valid: skipped
    bad_ids: dict = field(default_factory=dict)  # id -> reason (not a field of this season)
    given_up: dict = field(default_factory=dict)  # field -> last failure reason
    moved: list = field(default_factory=list)  # (field, reason, moved-to path)
    kept: list = field(default_factory=list)  # made with other settings, kept (--settings-change keep)
    swept: int = 0  # temp files of dead writers removed

    def counts(self) -> dict:
        return {
            "requested": self.requested,
            "valid": len(self.valid),
            "todo": len(self.todo),
            "moved_aside": len(self.moved),
            "kept_other_settings": len(self.kept),
            "given_up": len(self.given_up),
            "bad_ids": len(self.bad_ids),
            "temp_swept": self.swept,
        }


def requested_fields(season, ids: list[str] | None) -> tuple[list[str], dict]:
    """(fields in catalogue order, {bad id: reason}) for a list, or the whole catalogue."""
    catalogue = list(season.field_ids)
    if ids is None:
        return catalogue, {}
    bad, wanted = {}, set()
    for text in dict.fromkeys(ids):  # a field_id or the insurer's ID as written
        try:
            wanted.add(season.resolve_id(text))
        except BadInput as exc:
            bad[text] = str(exc)
    return [fid for fid in catalogue if fid in wanted], bad


def make_plan(season, layout: BatchLayout, board: ClaimBoard, policy: BatchPolicy, ids=None, tidy=True) -> Plan:
    """tidy=False (status, report) looks only: nothing is moved aside, swept or recorded.

    Raises BadInput (before touching anything) when outputs were made with other settings and the
    policy's settings_change is "refuse". policy.verify_all checks every output in full, trusting no record.
    """
    fields, bad = requested_fields(season, ids)
    with board.journal.locked():
        state = board.sync()
    settings = policy.settings
    index = OutputIndex(OutputChecker(season, layout.out, settings), state, context_of(season, settings),
                        full=policy.verify_all, keep_other_settings=policy.keep_other_settings)
    plan = Plan(todo=[], requested=len(fields) + len(bad), index=index, bad_ids=bad)
    present = {entry.name for entry in os.scandir(layout.out)}
    problems = {fid: index.problem(fid) for fid in fields if f"{fid}{OUTPUT_SUFFIX}" in present}
    plan.kept = index.kept
    if policy.settings_change == "refuse":
        other = [(fid, why) for fid, why in problems.items() if why is not None and is_settings_problem(why)]
        if other:
            raise BadInput(f"{len(other)} output(s) were {other[0][1].split(': ', 1)[1]} (e.g. {other[0][0]}): "
                           "rerun with --settings-change redo to redo them, or keep to keep them")
    invalid = {}  # field -> why, for outputs to move aside
    for fid in fields:
        fails = policy.failures.failures(state, fid)
        if policy.failures.given_up(fails):
            plan.given_up[fid] = fails[-1].why
            continue
        if problems.get(fid, "missing") is None:
            plan.valid.append(fid)
        elif fid in problems:
            invalid[fid] = problems[fid]
        else:
            plan.todo.append(fid)
    if tidy:
        plan.moved = _move_aside_if_unheld(board, layout, index, invalid)
    moved = {fid for fid, _, _ in plan.moved}
    for fid in invalid:  # looking only, a live worker holds it, or it became valid meanwhile
        if fid not in moved and tidy and index.problem(fid) is None:
            plan.valid.append(fid)
        else:
            plan.todo.append(fid)
    position = {fid: i for i, fid in enumerate(fields)}
    plan.todo.sort(key=position.__getitem__)  # catalogue (spatial) order
    if tidy:
        plan.swept = sweep_dead_temp_files(board, layout, present)
        board.record(index.records())
    return plan


def _move_aside_if_unheld(board, layout, index, invalid: dict) -> list:
    """Move invalid outputs aside, under the journal lock, if no live worker holds their field and the
    file is still the one found invalid (same identity: else it is checked again, as a worker may just
    have written it). One journal record per thousand moved. Returns [(field, why, moved-to path)]."""
    from app.batch.outputs import identity

    if not invalid:
        return []
    checked = {fid: identity(index.checker.path(fid)) for fid in invalid}
    moved = []
    with board.journal.locked():
        board.sync()
        held = board.live_claims()
        for fid, why in invalid.items():
            path = index.checker.path(fid)
            now = identity(path)
            if fid in held or now is None or (now != checked[fid] and index.checker.problem(fid) is None):
                continue
            moved.append((fid, why, str(layout.move_aside(path))))
        for i in range(0, len(moved), 1000):
            board.journal.append([{"o": board.owner, "invalid": [list(m) for m in moved[i:i + 1000]]}])
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
