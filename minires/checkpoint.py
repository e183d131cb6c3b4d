"""Checkpoints as NumPy ``.npz`` + JSON, written atomically. No pickle anywhere.

A checkpoint is a nested state (dicts and lists of NumPy arrays, numbers, strings, None). Saving
splits it in two: every array goes into ``NAME-<id>.npz`` under its path in the tree
(``model/layer1.0.bn1.running_var``), everything else into ``NAME.json``, with each array replaced
by ``{"__array__": path}``. The JSON also names its ``.npz`` and records its SHA-256.

Why a kill mid-save cannot break it — the writes are ordered:

1. the arrays go to a temporary file, flushed to disk, then ``os.replace``-d to a *new* name
   (``NAME-<id>.npz``; the previous checkpoint's ``.npz`` is untouched), and the folder is flushed;
2. the JSON goes to a temporary file, flushed, then ``os.replace``-d over ``NAME.json``. That rename
   is atomic: a reader sees the old JSON (pointing to the old, intact ``.npz``) or the new one;
3. only once the folder is flushed again (the rename is on disk, and survives a power cut) is the
   previous ``.npz`` deleted.

Stale temporary files from an interrupted save are ignored (and removed by the next save).
JSON object keys are strings: integer keys (e.g. the optimizer's parameter indices) come back as
strings, which the ``load_state_dict`` methods accept.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import uuid
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "minires-checkpoint"
VERSION = 1
ID_LENGTH = 12  # hex digits of the id in an array file's name
_ARRAY_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.npz")  # a plain file name: no folder, no ".."


class CheckpointError(ValueError):
    """A checkpoint is malformed: its JSON breaks the schema, or its array file is missing, outside the
    run folder, or does not match what the JSON recorded."""


def save_checkpoint(folder, state: dict, name: str = "checkpoint") -> Path:
    """Write ``state`` as ``folder/NAME.json`` + ``folder/NAME-<id>.npz``, atomically; return the JSON path."""
    if not _ARRAY_FILE.fullmatch(f"{name}.npz"):  # else load_checkpoint would refuse the array file's name
        raise ValueError(f"save_checkpoint: checkpoint name {name!r}; use letters, digits, '_', '.' and '-' (not "
                         "first), and no folder (pass that as the folder)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    tree = _split(state, "", arrays)
    array_file = f"{name}-{uuid.uuid4().hex[:ID_LENGTH]}.npz"
    atomic_write(folder / array_file, lambda f: np.savez(f, **arrays))
    meta = {"format": FORMAT, "version": VERSION, "arrays": array_file,
            "sha256": _sha256(folder / array_file), "state": tree}
    atomic_write(folder / f"{name}.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    _remove_stale(folder, name, keep=array_file)
    return folder / f"{name}.json"


def load_checkpoint(folder, name: str = "checkpoint") -> dict:
    """The state saved by :func:`save_checkpoint` in ``folder``.

    Raises :class:`CheckpointError` for every malformed checkpoint (FileNotFoundError when there is none).
    """
    path = Path(folder) / f"{name}.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint {path}; train first (without --resume) or check --out") from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{path}: not valid JSON ({type(error).__name__}: {error})") from error
    array_path = _check_meta(path, meta)
    if _sha256(array_path) != meta["sha256"]:
        raise CheckpointError(f"{array_path}: contents do not match the SHA-256 recorded in {path}; the file was "
                              "changed or damaged after saving")
    try:
        with np.load(array_path, allow_pickle=False) as arrays:
            return _join(meta["state"], arrays, path)
    except (OSError, ValueError, zipfile.BadZipFile, RecursionError) as error:
        raise CheckpointError(f"{array_path}: not a readable .npz of plain arrays ({type(error).__name__}: "
                              f"{error})") from error


def _check_meta(path: Path, meta) -> Path:
    """Check the JSON's schema; return the array file it names (a plain file in the same folder)."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: not a minires checkpoint (format {found!r})")
    if meta.get("version") != VERSION or type(meta.get("version")) is not int:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')!r}; this minires reads version {VERSION}")
    expected = {"format": str, "version": int, "arrays": str, "sha256": str, "state": dict}
    wrong = [f"{key!r} should be a {kind.__name__}" for key, kind in expected.items()
             if not isinstance(meta.get(key), kind)]
    unknown = sorted(set(meta) - set(expected))
    if wrong or unknown:
        raise CheckpointError(f"{path}: malformed checkpoint: " + "; ".join(wrong + [f"unknown key {k!r}" for k in unknown]))
    name = meta["arrays"]
    if not _ARRAY_FILE.fullmatch(name):
        raise CheckpointError(f"{path}: 'arrays' names {name!r}; it must be a .npz file name in the run folder "
                              "itself (no folder, no '..', no absolute path)")
    array_path = path.parent / name
    if not array_path.is_file() or not array_path.resolve().is_relative_to(path.parent.resolve()):
        raise CheckpointError(f"{path} refers to {array_path}, which is missing (or a link out of the run folder)")
    return array_path


def has_checkpoint(folder, name: str = "checkpoint") -> bool:
    return (Path(folder) / f"{name}.json").is_file()


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


@contextlib.contextmanager
def run_lock(folder):
    """Hold an exclusive OS lock (``flock``) on ``folder/.lock`` for the block; it holds this PID.

    The kernel releases the lock when the process ends, however it ends, so a killed run never leaves
    a folder locked. A second holder gets :class:`RunFolderBusy` naming the first one's PID.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunFolderBusy(f"{folder} is in use by another minires run (PID {holder}); wait for it to end, "
                                "or give this run another --out folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# ----------------------------------------------------------------------------- helpers
def _split(node, path, arrays):
    """Replace every array in ``node`` by a reference, collecting the arrays in ``arrays``."""
    if isinstance(node, dict):
        return {str(k): _split(v, f"{path}/{k}" if path else str(k), arrays) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_split(v, f"{path}/{i}", arrays) for i, v in enumerate(node)]
    if isinstance(node, np.ndarray):
        arrays[path] = node
        return {"__array__": path}
    if isinstance(node, np.generic):
        return node.item()
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise TypeError(f"save_checkpoint: cannot store {type(node).__name__} at {path!r}; "
                    "use NumPy arrays, numbers, strings, lists and dicts")


def _join(node, arrays, path):
    """Put the arrays back in place of their references (each must name an array in the file)."""
    if isinstance(node, dict):
        if set(node) == {"__array__"}:
            key = node["__array__"]
            if not isinstance(key, str) or key not in arrays.files:
                raise CheckpointError(f"{path}: refers to array {key!r}, which its .npz file does not hold")
            return arrays[key]
        return {k: _join(v, arrays, path) for k, v in node.items()}
    if isinstance(node, list):
        return [_join(v, arrays, path) for v in node]
    return node


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk, rename it to ``path``.

    Readers see the old file or the new one, never a partial one; on an exception nothing changes.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the mode open() gives: umask decides
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        _flush_folder(path.parent)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _flush_folder(folder: Path) -> None:
    """Flush a folder's entries to disk: a rename survives a power cut only once its folder is flushed."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _remove_stale(folder: Path, name: str, keep: str) -> None:
    """Delete array files of ``name`` other than ``keep``, and temporary files left by its interrupted saves
    (not another checkpoint's whose name begins with this one, such as ``model-best`` for ``model``)."""
    array_file = rf"{re.escape(name)}-[0-9a-f]{{{ID_LENGTH}}}\.npz"
    own = re.compile(rf"{array_file}|\.({re.escape(name)}\.json|{array_file})\..+\.tmp")
    for path in folder.iterdir():
        if own.fullmatch(path.name) and path.name != keep:
            path.unlink(missing_ok=True)
