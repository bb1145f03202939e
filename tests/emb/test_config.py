import pytest

from app.emb.config import check_world, load_config, parse_override
from app.errors import BadInput
from tests.emb.conftest import SMOKE

REQUIRED = ("data.shards=/s", "run.dir=/r")


def test_file_then_overrides_on_top_of_defaults():
    c = load_config(SMOKE, [*REQUIRED, "train.steps=7", "train.deterministic=true", "model.name=fcn_resnet50",
                            "train.lr=1"])
    assert c["train"]["steps"] == 7 and c["train"]["deterministic"] is True
    assert c["model"]["name"] == "fcn_resnet50" and c["train"]["lr"] == 1.0
    assert c["train"]["batch_size"] == 8  # from smoke.toml
    assert c["train"]["momentum"] == 0.9  # from default.toml


@pytest.mark.parametrize("bad", ["train.stepz=3", "train.steps=three", "train.steps=0", "model.name=unet",
                                 "steps=3", "train.deterministic=maybe", "data=1"])
def test_bad_overrides_are_bad_input(bad):
    with pytest.raises(BadInput):
        load_config(SMOKE, [*REQUIRED, bad])


def test_required_keys():
    with pytest.raises(BadInput, match="data.shards"):
        load_config(SMOKE, ["run.dir=/r"])


def test_override_values_parse_as_toml_or_bare_strings():
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("a.b=/x/y") == {"a": {"b": "/x/y"}}
    assert parse_override('a.b="3"') == {"a": {"b": "3"}}


def test_global_batch_must_split_into_whole_blocks():
    c = load_config(SMOKE, [*REQUIRED, "train.batch_size=8", "data.block_chips=2"])
    assert check_world(c, 2) == 4
    with pytest.raises(BadInput):
        check_world(c, 3)
    with pytest.raises(BadInput):
        check_world(c, 8)


def test_usage_errors_are_one_line_exit_2():
    from tests.emb.conftest import run_py

    for args in (["-m", "app.emb.train", "--bogus"], ["-m", "app.emb", "frob"], ["-m", "app.emb", "synth"]):
        proc = run_py(*args, check=False)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
