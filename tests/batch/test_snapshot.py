"""Snapshots: the state loaded from a snapshot plus the journal after it equals the state replayed
from byte 0; a snapshot that does not fit the journal (another journal, a torn file) is ignored."""

import os
import shutil

from app.batch.claims import ClaimBoard
from app.batch.journal import Journal
from app.batch.layout import BatchLayout
from app.batch.snapshot import HEADER, load, open_board, write

OTHER = "node7|b00t|1|4242|99"  # another run, on another node


def _replay_from_zero(layout):
    board = ClaimBoard(Journal(layout.journal), lease_s=60)
    return board.sync()


def _same(a, b):
    decoded = lambda s: {fid: s[fid] for fid in s}  # a snapshot's summaries stay JSON text until read
    assert a.outcome == b.outcome and decoded(a.summary) == decoded(b.summary) and a.files == b.files
    assert a.claim_of == b.claim_of and dict(a.failures) == dict(b.failures) and a.seconds == b.seconds
    assert {o: set(f) for o, f in a.held.items() if f} == {o: set(f) for o, f in b.held.items() if f}


def test_snapshot_plus_tail_equals_a_full_replay(tmp_path):
    layout = BatchLayout(tmp_path)
    layout.create()
    board = open_board(layout, lease_s=60)
    summary = {"outcome": "assessed", "payout": 12.5, "amount_cents": 1250, "currency": "NOK"}
    board.record([{"ok": "F1", "sec": 0.1, "s": summary, "f": [10, 20, 30], "c": "ctx"},
                  {"fail": "F2", "why": "boom"}, {"skip": "F3", "s": summary}])
    board.record([{"o": OTHER, "claim": ["F4", "F5"]}, {"invalid": [["F6", "corrupt", "/x"]]}])
    board.sync()
    write(layout, board.state, board.journal.position())
    board.record([{"ok": "F4", "sec": 0.2, "s": summary, "f": [1, 2, 3], "c": "ctx"}, {"release": ["F4"]},
                  {"fail": "F2", "why": "boom again"}])  # the tail after the snapshot
    loaded = open_board(layout, lease_s=60)
    assert loaded.snapshot_offset > 0
    _same(loaded.sync(), _replay_from_zero(layout))


def test_a_snapshot_that_does_not_fit_the_journal_is_ignored(tmp_path):
    layout = BatchLayout(tmp_path)
    layout.create()
    board = open_board(layout, lease_s=60)
    board.record([{"ok": "F1", "sec": 0.1, "s": {"outcome": "assessed"}}])
    board.sync()
    write(layout, board.state, board.journal.position())
    assert load(layout)[1] > 0
    shutil.copy(layout.journal, tmp_path / "copy")
    os.replace(tmp_path / "copy", layout.journal)  # another journal (a new inode) under the same name
    assert load(layout)[1] == 0
    write(layout, _replay_from_zero(layout), os.path.getsize(layout.journal))
    fields_file = next(layout.root.glob("snapshot-*.parquet"))
    fields_file.write_bytes(b"torn")
    assert load(layout)[1] == 0  # unreadable: a full replay instead, never a wrong state
    (layout.root / HEADER).write_text("{not json")
    state, offset = load(layout)
    assert offset == 0 and not state.outcome


def test_a_background_snapshot_is_the_state_when_it_was_taken(tmp_path, monkeypatch):
    """A run's snapshots between the forced ones are written by a thread from a copy: records made
    while it writes are not in it, and the snapshot plus the tail still equals a full replay."""
    from app.batch import snapshot

    monkeypatch.setattr(snapshot, "MIN_NEW_BYTES", 1)
    layout = BatchLayout(tmp_path)
    layout.create()
    board = open_board(layout, lease_s=60)
    summary = {"outcome": "assessed", "payout": 1.0, "amount_cents": 100, "currency": "NOK"}
    board.record([{"ok": f"F{k}", "sec": 0.1, "s": summary, "f": [k, k, k], "c": "ctx"} for k in range(50)])
    board.sync()
    snapshots = snapshot.Snapshotter(layout, board, every_s=0)
    taken_at = board.journal.position()
    snapshots.maybe()  # in the background
    board.record([{"fail": "F0", "why": "later"}, {"ok": "F99", "sec": 0.1, "s": summary}])
    board.sync()  # the live state moves on while the thread writes
    snapshots._wait()
    state, offset = load(layout)
    assert offset == taken_at and "F99" not in state.outcome and state.outcome["F0"].kind == "ok"
    _same(open_board(layout, lease_s=60).sync(), _replay_from_zero(layout))
