import signal
import subprocess
import sys
import time

from app.batch.claims import ClaimBoard, Picker
from app.batch.journal import Journal
from app.batch.owner import Liveness, Owner
from app.batch.policy import FailurePolicy

FIELDS = [f"F{i:03d}" for i in range(40)]


def board(tmp_path, lease=60.0):
    return ClaimBoard(Journal(tmp_path / "journal.log"), lease_s=lease)


def picker(fields=FIELDS, max_failures=3):
    return Picker(list(fields), since=0.0, failures=FailurePolicy(max_failures))


def test_chunks_are_contiguous_and_never_overlap(tmp_path):
    a, b = board(tmp_path), board(tmp_path, 60.0)
    b.owner = "other|x|y|1|1"  # a second live owner on another node (heartbeating: fresh records)
    pa, pb = picker(), picker()
    first = a.claim(pa, 5)
    assert first == FIELDS[:5]
    second = b.claim(pb, 5)
    assert not set(first) & set(second)
    assert second == FIELDS[22:27]  # the middle of the largest free stretch, leaving a room to grow
    assert a.claim(pa, 5, release=first) == FIELDS[5:10]  # a continues where it left off


def test_settled_and_failed_fields_are_not_claimed(tmp_path):
    a = board(tmp_path)
    a.record([{"ok": "F000"}, {"skip": "F001"}, {"bad": "F002", "why": "x"}] + [{"fail": "F003", "why": "y"}] * 3)
    assert a.claim(picker(FIELDS[:5]), 10) == ["F004"]


def test_failures_below_the_limit_are_retried(tmp_path):
    a = board(tmp_path)
    a.record([{"fail": "F000", "why": "flaky"}])
    assert a.claim(picker(FIELDS[:1], max_failures=2), 1) == ["F000"]


HOLDER = """
import sys, time
from app.batch.claims import ClaimBoard, Picker
from app.batch.journal import Journal
from app.batch.policy import FailurePolicy
b = ClaimBoard(Journal(sys.argv[1]), lease_s=60)
got = b.claim(Picker(sys.argv[2:], 0.0, FailurePolicy()), 100)
print(" ".join(got), flush=True)
time.sleep(60)
"""


def test_live_claim_is_not_stolen_and_dead_claim_is_taken_over(tmp_path):
    mine = FIELDS[:6]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "journal.log"), *mine], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().split() == mine
        a = board(tmp_path)
        assert a.claim(picker(mine), 10) == []  # alive: its claims stand
        assert a.waiting_on_others(picker(mine))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert a.claim(picker(mine), 10) == mine  # dead (same host: exact check): taken over at once
    assert not a.waiting_on_others(picker(mine))


def test_exit_record_releases_everything(tmp_path):
    a, b = board(tmp_path), board(tmp_path)
    b.owner = "other|x|y|2|2"
    assert b.claim(picker(), 3) == FIELDS[:3]
    b.record([{"exit": 1}])
    assert a.claim(picker(), 3) == FIELDS[:3]


def test_owner_elsewhere_is_alive_until_its_lease_runs_out(tmp_path):
    lease = 60.0
    a = board(tmp_path, lease)
    stale = "node7|b00t|4026531836|4242|999"
    with a.journal.locked():
        a.sync()
        # written by hand with an old timestamp: a node that stopped heartbeating 2 leases ago
        a.journal.append([{"o": stale, "claim": FIELDS[:2]}])
    assert a.claim(picker(FIELDS[:2]), 2) == []  # fresh record: within its lease
    a.state.last_seen[stale] = time.time() - 2 * lease
    assert a.claim(picker(FIELDS[:2]), 2) == FIELDS[:2]


def test_liveness_of_this_process_and_a_dead_pid():
    me = Owner.me()
    live = Liveness(lease_s=1.0)
    assert live.alive(str(me), last_seen=0.0, now=1e12)  # same place: pid check, lease irrelevant
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = Owner(me.place, proc.pid, "1")
    assert not live.alive(str(dead), last_seen=1e12, now=1e12)
    reused = Owner(me.place, me.pid, "0")  # same pid, another start time: pid reuse, not us
    assert not live.alive(str(reused), last_seen=1e12, now=1e12)


def test_heartbeat_keeps_appending(tmp_path):
    a = board(tmp_path)
    started = time.time()
    stop = a.heartbeat_every(0.05)
    deadline = started + 30  # generous: a loaded CI machine may delay the thread, never stop it
    while (tmp_path / "journal.log").read_text().count('"hb"') < 3 and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    a.sync()
    assert (tmp_path / "journal.log").read_text().count('"hb"') >= 3
    assert a.state.last_seen[a.owner] > started


def test_failures_before_the_retry_clock_do_not_count(tmp_path):
    a = board(tmp_path)
    a.record([{"fail": "F000", "why": "old"}] * 3)
    assert a.claim(picker(FIELDS[:1]), 1) == []  # given up
    now = time.time()
    assert a.claim(Picker(FIELDS[:1], since=now, failures=FailurePolicy(3, since=now)), 1) == ["F000"]
