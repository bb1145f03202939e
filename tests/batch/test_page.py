"""The page's data and the text report keep insurer strings inert (the browser tier checks the page
itself: tests/batch/test_page_browser.py)."""

import json

from app.batch.page import plain, to_script_json


def test_script_json_cannot_end_its_script_and_means_the_same():
    data = {"id": "<img src=x onerror=alert(1)>", "note": 'a "q" </script><script>alert(2)</script> <!-- & \u2028'}
    text = to_script_json(data)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == data


def test_plain_text_cannot_forge_lines_and_is_bounded():
    assert plain("F1\nPaid: 1,000,000 NOK\r\x1b[31m", 80) == "F1\\nPaid: 1,000,000 NOK\\r\\x1b[31m"
    assert plain("x" * 50, 10) == "x" * 9 + "…" and plain(None, 5) == ""
