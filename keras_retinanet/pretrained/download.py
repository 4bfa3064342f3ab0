"""Files fetched against a pinned digest: downloads that resume, local copies checked the same way.

`download` streams a URL (http://, https://, file://) or a local path into `<destination>.partial`, reading at most
one byte more than the pinned size (or than `MAX_UNSIZED_BYTES` where the size is not pinned); an interrupted
download is kept there and the next call resumes it with an HTTP `Range` request. Only a file whose size and digest
are the pinned ones is renamed to `destination` (atomically); any other is deleted and named in the error with the
digest found beside the pinned one. Local files are read only if they are regular files (links followed): a FIFO is
opened without blocking and refused, a device is refused.
"""

import hashlib
import http.client
import os
import re
import stat
import typing
import urllib.error
import urllib.parse
import urllib.request

from keras_retinanet.errors import InputError

CHUNK_BYTES = 1 << 20
MAX_UNSIZED_BYTES = 4 << 30  # a file whose size is not pinned is refused past 4 GiB (weights files are < 1 GB)
TIMEOUT_SECONDS = 60  # to connect, and for each read
OFFLINE_HINT = "without internet access, give --source_dir=a local copy"
DIGEST_NAMES = {"sha256": "SHA-256", "md5": "MD5"}


class DownloadError(InputError, RuntimeError):
    """A file that cannot be fetched or read, or whose content is not the pinned one; the message names it."""


class Checksum(typing.NamedTuple):
    """What a fetched file must be: its hex `digest` by `algorithm` ("sha256", or "md5" where that is all that is
    published) and, where known, its `size` in bytes."""

    digest: str
    size: typing.Optional[int] = None
    algorithm: str = "sha256"


def check_file(path, expected, origin=None, what=None):
    """Raises a `DownloadError` naming `origin` (default: `path`) unless `path` is a regular file with the `expected`
    size and digest; `what` names the pinned file in the error (`... is not the pinned DIGEST of WHAT`)."""
    origin = origin or path
    limit = _read_limit(expected)
    digest = hashlib.new(expected.algorithm, usedforsecurity=False)  # a check against corruption, not a signature
    length = 0
    try:
        with _open_regular(path, origin) as file:
            for chunk in iter(lambda: file.read(min(CHUNK_BYTES, limit - length)), b""):
                digest.update(chunk)
                length += len(chunk)
    except OSError as error:
        raise DownloadError(f"{origin}: cannot read: {error.strerror}") from None
    if expected.size is not None and length != expected.size:
        found = "more" if length > expected.size else f"{length} bytes"
        raise DownloadError(f"{origin}: {found}, not the pinned {expected.size} bytes")
    if length > MAX_UNSIZED_BYTES:
        raise DownloadError(f"{origin}: more than {MAX_UNSIZED_BYTES} bytes, the most a file without a pinned size "
                            "may have")
    found = digest.hexdigest()
    if found != expected.digest:
        of_what = f" of {what}" if what else ""
        raise DownloadError(f"{origin}: {DIGEST_NAMES[expected.algorithm]} {found} is not the pinned "
                            f"{expected.digest}{of_what}")


def holds(path, expected):
    """Whether `path` is a regular file with the `expected` size and digest."""
    try:
        check_file(path, expected)
    except DownloadError:
        return False
    return True


def download(url, destination, expected, timeout=TIMEOUT_SECONDS, what=None):
    """Fetches `url` (http://, https:// or file://; or a local path) into `destination`, checked against `expected`
    (a `Checksum`); `what` names the pinned file in a digest error.

    A `destination.partial` left by an interrupted call is resumed from where it stopped: an HTTP server answering
    206 sends the rest, one answering 200 the whole file again (the partial file restarts), and 416 (nothing left
    to send) or a partial file already at the pinned size has it checked as it is. Raises a `DownloadError` naming
    the URL: it cannot be reached or read (`destination.partial` keeps what came, for the next call to resume), or
    what came is not the pinned file (deleted; the message gives the pinned and the found digest).
    """
    partial = f"{destination}.partial"
    try:
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        start = _resumable_bytes(partial, expected.size)
    except OSError as error:
        raise DownloadError(f"{destination}: cannot write: {error.strerror}") from None
    if expected.size is None or start < expected.size:
        _receive(url, partial, start, expected, timeout)
    try:
        check_file(partial, expected, origin=url, what=what)
    except DownloadError:
        os.remove(partial)
        raise
    os.replace(partial, destination)


def _read_limit(expected):
    """How many bytes of a file are read at most: one more than it may have."""
    return (expected.size if expected.size is not None else MAX_UNSIZED_BYTES) + 1


def _open_regular(path, origin):
    """`path` opened for reading (links followed) if it is a regular file; an OSError if it cannot be opened, a
    `DownloadError` naming `origin` if it is anything else (a FIFO is opened without blocking, then refused)."""
    file = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        file.close()
        raise DownloadError(f"{origin}: not a regular file")
    return file


def _resumable_bytes(partial, size):
    """The bytes of an earlier attempt in `partial` to resume from: 0 where there is none, or it is not a regular
    file, or it is longer than the pinned `size` (then it is removed)."""
    try:
        info = os.lstat(partial)
    except FileNotFoundError:
        return 0
    if stat.S_ISREG(info.st_mode) and (size is None or info.st_size <= size):
        return info.st_size
    os.remove(partial)
    return 0


def _receive(url, partial, start, expected, timeout):
    """Appends what `url` holds from byte `start` to `partial` (or writes it all over, where the source sends the
    whole file), at most up to the read limit of `expected`."""
    source = _open_source(url, start, timeout)
    if source is None:  # HTTP 416: nothing after `start`; the partial file is checked as it is
        return
    stream, offset, announced = source
    budget = _read_limit(expected) - offset
    received = 0
    try:
        with stream, open(partial, "ab" if offset else "wb") as file:
            while received < budget:
                chunk = stream.read(min(CHUNK_BYTES, budget - received))
                if not chunk:
                    break
                file.write(chunk)
                received += len(chunk)
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(_stopped(url, partial, offset + received, _reason(error))) from None
    if announced is not None and received < min(announced, budget):
        raise DownloadError(_stopped(url, partial, offset + received, "the connection closed early"))


def _stopped(url, partial, kept, reason):
    return (f"{url}: the download stopped after {kept} bytes ({reason}); they are kept in {partial}: run again to "
            f"resume, or {OFFLINE_HINT}")


def _reason(error):
    reason = getattr(error, "reason", error)
    return " ".join(str(reason).split()) or type(reason).__name__


def _open_source(url, start, timeout):
    """(stream, the byte it starts at, the bytes it announces or None) of `url` from byte `start` where the source
    can resume there, else from byte 0; None where an HTTP server answers 416 (nothing after `start`)."""
    scheme = urllib.parse.urlsplit(url).scheme if "://" in url else ""
    if scheme in ("http", "https"):
        return _open_http(url, start, timeout)
    if scheme not in ("", "file"):
        raise DownloadError(f"{url}: cannot download (not an http://, https:// or file:// URL)")
    path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path) if scheme else url
    try:
        file = _open_regular(path, url)
        size = os.fstat(file.fileno()).st_size
    except OSError as error:
        failure = f"cannot download ({error.strerror}); {OFFLINE_HINT}" if scheme else f"cannot read: {error.strerror}"
        raise DownloadError(f"{url}: {failure}") from None
    offset = start if start <= size else 0
    file.seek(offset)
    return file, offset, size - offset


def _open_http(url, start, timeout):
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and start:
            return None
        raise DownloadError(f"{url}: cannot download (HTTP {error.code} {error.reason}); {OFFLINE_HINT}") from None
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"{url}: cannot download ({_reason(error)}); {OFFLINE_HINT}") from None
    content_range = response.headers.get("Content-Range", "")
    if response.status == 206 and not re.match(rf"bytes {start}-", content_range):
        response.close()
        raise DownloadError(f"{url}: cannot download (asked for the bytes from {start}, the server sent "
                            f"{content_range!r}); {OFFLINE_HINT}")
    return response, start if response.status == 206 else 0, response.length  # 200: the whole file
