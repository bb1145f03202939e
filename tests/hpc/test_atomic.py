import os
import signal
import subprocess
import sys

from app.hpc.atomic import atomic_path, atomic_write_bytes, is_temp_name, sweep_temp_files


def test_write_and_replace(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_exception_leaves_old_state(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_kill_9_mid_write_leaves_no_target(tmp_path):
    target = tmp_path / "big.bin"
    code = (
        "import sys, time\n"
        "from app.hpc.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    f = open(tmp, 'wb'); f.write(b'x' * 1000); f.flush()\n"
        "    print('writing', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    leftovers = os.listdir(tmp_path)
    assert len(leftovers) == 1 and is_temp_name(leftovers[0])
    assert sweep_temp_files(tmp_path) and os.listdir(tmp_path) == []
