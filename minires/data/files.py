"""Reading, downloading and unpacking dataset files, defensively.

* :func:`read_bytes` reads a file, gunzipping it when it ends in ``.gz``; a corrupt or truncated
  archive raises :class:`DatasetFileError` naming the file.
* :func:`download` fetches a URL (``https://`` or, in tests, ``file://``) with a tqdm progress bar
  into a temporary file, checks its MD5 against the published one, and only then moves it into place.
* :func:`safe_extract_tar` unpacks only plain files and folders, each of which must land inside the
  destination: absolute paths, ``..`` components, links and device files are refused (a malicious
  archive cannot write outside the folder).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm


class DatasetFileError(ValueError):
    """A dataset file is missing, truncated, corrupt or not in the expected format."""


def read_bytes(path) -> bytes:
    """The contents of ``path``; ``*.gz`` files are decompressed."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DatasetFileError(f"{path}: cannot read it ({type(error).__name__}: {error}); the file is "
                               "corrupt or truncated — delete it and fetch it again") from error


def download(url: str, destination, md5: str, progress: bool = True) -> Path:
    """Fetch ``url`` to ``destination`` and verify its MD5; nothing is left at ``destination`` on failure."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=destination.name + ".", suffix=".part", dir=destination.parent)
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        if digest.hexdigest() != md5:
            raise DatasetFileError(f"{url}: downloaded file has MD5 {digest.hexdigest()}, expected {md5}; the "
                                   "download is corrupt or the server sent something else — try again")
        os.replace(partial, destination)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return destination


def _member_target(archive, root: Path, name: str) -> Path:
    """Where member ``name`` may be written, or an error if it would escape ``root``."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or ".." in parts \
            or any(":" in p or "\\" in p for p in parts):
        raise DatasetFileError(f"{archive}: refusing to extract member {name!r}: absolute path or '..' "
                               "would write outside the destination folder")
    target = root.joinpath(*parts)
    if not target.resolve().is_relative_to(root.resolve()):
        raise DatasetFileError(f"{archive}: refusing to extract member {name!r}: it resolves outside {root}")
    return target


def safe_extract_tar(archive, destination) -> list[Path]:
    """Unpack the regular files and folders of a (compressed) tar archive into ``destination``."""
    archive, destination = Path(archive), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                target = _member_target(archive, destination, member.name)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out)
                    written.append(target)
                else:
                    raise DatasetFileError(f"{archive}: refusing to extract member {member.name!r}: it is a "
                                           "link or special file, which a dataset archive never needs")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DatasetFileError(f"{archive}: cannot unpack it ({type(error).__name__}: {error}); the archive "
                               "is corrupt or truncated — delete it and download it again") from error
    return written
