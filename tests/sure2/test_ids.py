import pytest

from app.errors import BadInput
from app.sure2.ids import validate_field_id


@pytest.mark.parametrize("good", ["NO25-00001", "a", "A_b-9", "x" * 64])
def test_good_ids(good):
    assert validate_field_id(good) == good


@pytest.mark.parametrize("bad", ["", "../x", "/abs", "a/b", "x" * 65, "a\0b", "a b", ".hidden", "æøå", "a\nb", None])
def test_bad_ids_raise_one_line_reason(bad):
    with pytest.raises(BadInput) as info:
        validate_field_id(bad)
    assert "\n" not in str(info.value) and str(info.value)
