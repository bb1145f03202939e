import io

from app.batch.progress import Progress


def test_plain_lines_are_periodic_and_complete():
    stream = io.StringIO()
    p = Progress(100, stream=stream, every_s=3600, live=False)
    p.update(10, 1, 2)  # first call always prints
    p.update(20, 1, 2)  # within the period: silent
    p.finish(90, 4, 6)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("batch: 13/100 | done 10 failed 1 skipped 2 remaining 87 |")
    assert "remaining 0" in lines[1] and "ETA" in lines[1] and "fields/s" in lines[1]


def test_live_line_rewrites_itself_on_a_tty():
    stream = io.StringIO()
    p = Progress(10, stream=stream, live=True)
    p.update(1, 0, 0, force=True)
    p.update(2, 0, 0, force=True)
    p.finish(10, 0, 0)
    text = stream.getvalue()
    assert text.count("\r\x1b[2K") == 3 and text.endswith("\n") and text.count("\n") == 1


def test_eta_from_rate():
    p = Progress(100, stream=io.StringIO(), live=False)
    line = p.line(done=25, failed=0, skipped=0, now=p.t0 + 50)  # 0.5 fields/s, 75 left
    assert "0.5 fields/s" in line and "ETA 2m30s" in line
