"""Reading, downloading and unpacking dataset files, defensively.

* :func:`read_bounded` reads a file whose header says how long it is (gunzipping ``*.gz`` as it
  streams): the header is checked first, then exactly the bytes it declares are read, in pieces, and
  one byte more must not exist. Memory stays within the declared size, so a gzip bomb (a tiny
  archive that inflates to gigabytes) is refused after reading only what its header promised. A
  corrupt or truncated file raises :class:`DatasetFileError` naming the file.
* :func:`download` fetches a URL (``https://`` or, in tests, ``file://``) with a tqdm progress bar
  into a temporary file, checks its MD5 against the published one, and only then moves it into place.
* :func:`safe_extract_tar` unpacks only plain files and folders, each of which must land inside the
  destination: absolute paths, ``..`` components, links and device files are refused (a malicious
  archive cannot write outside the folder). Each file is written atomically, so an archive that ends
  inside a file (or a kill) leaves no short file that a later run would take for a whole one.
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

from ..checkpoint import atomic_write


class DatasetFileError(ValueError):
    """A dataset file is missing, truncated, corrupt or not in the expected format."""


GZIP_MAX_RATIO = 1032  # deflate never inflates one byte to more than ~1032 (RFC 1951's longest match)
PIECE = 1 << 20


def read_bounded(path, header_size: int, body_size) -> tuple[bytes, bytes]:
    """``(header, body)`` of ``path``: ``body_size(header)`` says how many bytes follow the header.

    The body's length is a Python integer (no overflow) and is checked against what the file can
    hold before anything more is read: its size, or, gzipped, the most its compressed size can
    inflate to. Then exactly that many bytes are read, and a longer file is refused.
    """
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as stream:
            header = _read_exactly(stream, header_size, path, "its header")
            size = body_size(header)
            expected = header_size + size
            most = os.path.getsize(path) * (GZIP_MAX_RATIO if path.suffix == ".gz" else 1)
            if expected > most:
                raise DatasetFileError(f"{path}: its header declares {expected:,} bytes, but the file can hold at "
                                       f"most {most:,}; it is truncated or corrupt")
            body = _read_exactly(stream, size, path, "data its header declares")
            if stream.read(1):
                raise DatasetFileError(f"{path}: longer than the {expected:,} bytes its header declares; the "
                                       "file is corrupt, or not the file its name says")
            return header, body
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DatasetFileError(f"{path}: cannot read it ({type(error).__name__}: {error}); the file is "
                               "corrupt or truncated — delete it and fetch it again") from error


def _read_exactly(stream, size: int, path, what: str) -> bytes:
    """``size`` bytes from ``stream``, read in pieces (memory follows what the file really holds)."""
    data = bytearray()
    while len(data) < size:
        piece = stream.read(min(PIECE, size - len(data)))
        if not piece:
            raise DatasetFileError(f"{path}: ends after {len(data):,} of the {size:,} bytes of {what}; it is "
                                   "truncated or corrupt")
        data += piece
    return bytes(data)


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


def safe_extract_tar(archive, destination, max_file_size: int | None = None) -> list[Path]:
    """Unpack the regular files and folders of a (compressed) tar archive into ``destination``.

    ``max_file_size`` (bytes) refuses a member whose header declares more, before writing it.
    """
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
                    if max_file_size is not None and member.size > max_file_size:
                        raise DatasetFileError(f"{archive}: member {member.name!r} declares {member.size:,} bytes, "
                                               f"more than the {max_file_size:,} any file of this dataset has")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as source:  # atomically: an archive cut short leaves no short file
                        atomic_write(target, lambda out: shutil.copyfileobj(source, out))
                    written.append(target)
                else:
                    raise DatasetFileError(f"{archive}: refusing to extract member {member.name!r}: it is a "
                                           "link or special file, which a dataset archive never needs")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DatasetFileError(f"{archive}: cannot unpack it ({type(error).__name__}: {error}); the archive "
                               "is corrupt or truncated — delete it and download it again") from error
    return written
