"""Malformed checkpoints raise CheckpointError, never another exception (fuzzed with hypothesis).

The planted faults are the issue's (``[1, 2]`` as the JSON, a missing ``arrays`` key, an ``arrays``
path out of the run folder) plus whatever hypothesis draws: random JSON values, and a valid training
checkpoint with one value replaced, one key deleted, or one value wrapped in a list.
"""
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minires import backend
from minires.checkpoint import CheckpointError, _sha256, load_checkpoint, save_checkpoint
from minires.train import Trainer, fit, load_training_checkpoint

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real (tiny) training run's folder, and its checkpoint JSON as written."""
    out = tmp_path_factory.mktemp("run")
    with backend.using("conv2d", "numpy"):
        fit(out=str(out), model="resnet8", width=2, train_size=8, test_size=4, batch_size=4, epochs=1,
            eval_batch_size=4, progress=False)
    original = json.loads((out / "checkpoint.json").read_text())
    yield out, original
    (out / "checkpoint.json").write_text(json.dumps(original))


def _write(out, meta):
    (out / "checkpoint.json").write_text(json.dumps(meta))


def test_the_valid_checkpoint_loads(run):
    out, original = run
    _write(out, original)
    assert load_training_checkpoint(out)["epoch"] == 1


@pytest.mark.parametrize("meta", [[1, 2], "checkpoint", None, 3.5, {}])
def test_json_that_is_not_a_checkpoint(run, meta):
    out, _ = run
    _write(out, meta)
    with pytest.raises(CheckpointError, match="not a minires checkpoint"):
        load_checkpoint(out)


@pytest.mark.parametrize("key", ["arrays", "sha256", "state", "version"])
def test_missing_keys(run, key):
    out, original = run
    _write(out, {k: v for k, v in original.items() if k != key})
    with pytest.raises(CheckpointError, match=repr(key) if key != "version" else "version None"):
        load_checkpoint(out)


def test_an_arrays_path_out_of_the_run_folder_is_refused_before_it_is_opened(run, tmp_path):
    out, original = run
    outside = tmp_path / "outside.npz"
    outside.write_bytes((out / original["arrays"]).read_bytes())     # same contents, same SHA-256
    for name in ("../" + outside.name, str(outside), f"sub/../{original['arrays']}"):
        _write(out, {**original, "arrays": name})
        with pytest.raises(CheckpointError, match="must be a .npz file name in the run folder itself"):
            load_checkpoint(out)
    link = out / "link.npz"
    os.symlink(outside, link)
    try:
        _write(out, {**original, "arrays": link.name, "sha256": _sha256(outside)})
        with pytest.raises(CheckpointError, match="a link out of the run folder"):
            load_checkpoint(out)
    finally:
        link.unlink()


def test_a_reference_to_an_array_the_file_lacks(tmp_path):
    save_checkpoint(tmp_path, {"w": np.zeros(2)})
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    meta["state"]["w"] = {"__array__": "nope"}
    _write(tmp_path, meta)
    with pytest.raises(CheckpointError, match="refers to array 'nope'"):
        load_checkpoint(tmp_path)


def test_invalid_utf8_and_deep_nesting(run):
    out, _ = run
    (out / "checkpoint.json").write_bytes(b'{"format": "\xff"}')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(out)
    (out / "checkpoint.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(out)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=JSON)
def test_random_json_raises_only_checkpoint_error(run, meta):
    out, _ = run
    _write(out, meta)
    with pytest.raises(CheckpointError):
        load_training_checkpoint(out)


def _paths(node, prefix=()):
    """Every path (keys and indices) into a JSON tree."""
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, prefix + (key,))


def _mutate(meta, path, action, value):
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "wrap":
        parent[path[-1]] = [parent[path[-1]]]
    else:
        parent[path[-1]] = value


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), action=st.sampled_from(["replace", "delete", "wrap"]), value=JSON)
def test_mutated_checkpoints_load_or_raise_checkpoint_error(run, data, action, value):
    out, original = run
    paths = [p for p in _paths(original) if p]
    meta = json.loads(json.dumps(original))
    _mutate(meta, data.draw(st.sampled_from(paths)), action, value)
    _write(out, meta)
    try:
        state = load_training_checkpoint(out)
    except CheckpointError:
        return
    assert isinstance(state["config"], dict) and isinstance(state["epoch"], int)


def test_a_config_value_no_run_can_have_is_refused_naming_the_checkpoint(run):
    out, original = run
    meta = json.loads(json.dumps(original))
    meta["state"]["config"]["seed"] = -1
    _write(out, meta)
    with pytest.raises(CheckpointError, match=f"{out}: malformed training checkpoint: .*seed -1"):
        Trainer.resume(out)
