"""The raccoon dataset (github.com/datitran/raccoon_dataset, MIT licence): 200 photos of raccoons, their VOC XML
annotations and CSV labels with a published split, fetched at a pinned commit, every file checked against its
size and SHA-256 (`raccoon.sha256`, made from that commit: `<sha256>  <bytes>  <path>` lines).

    python -m keras_retinanet.datasets.raccoon [--output_dir=data/raccoon] [--source_dir=LOCAL_COPY]
    (also bin/fetch_raccoon, retinanet-fetch-raccoon)

Files already in place with the right checksum are kept, so a rerun after an interruption fetches only what is
missing; a file whose checksum differs is an error that names it, and nothing unchecked is written. Offline,
`--source_dir` copies from a local clone or download instead (checked the same way). Only regular files (links
followed) are read, and at most one byte more than the pinned size of each: a larger one is refused by its size
before any checksum.
"""

import collections
import concurrent.futures
import hashlib
import os
import stat
import urllib.error
import urllib.request

COMMIT = "93938849301895fb73909842ba04af9b602f677a"
URL_TEMPLATE = "https://raw.githubusercontent.com/datitran/raccoon_dataset/{commit}/{path}"
MANIFEST = os.path.join(os.path.dirname(__file__), "raccoon.sha256")


class DatasetFetchError(RuntimeError):
    """A file could not be fetched, or its content is not the pinned one."""


PinnedFile = collections.namedtuple("PinnedFile", ["digest", "size"])


def manifest():
    """{relative path: `PinnedFile` (SHA-256 hex digest, size in bytes)} of the pinned commit's files."""
    entries = {}
    with open(MANIFEST, encoding="utf-8") as file:
        for line in file:
            digest, size, path = line.rstrip("\n").split("  ", 2)
            entries[path] = PinnedFile(digest, int(size))
    return entries


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _bounded(data, size, origin):
    """`data` (read with a limit of `size` + 1 bytes) if it has the pinned `size`, else an error."""
    if len(data) != size:
        found = "more" if len(data) > size else f"{len(data)} bytes"
        raise DatasetFetchError(f"{origin}: {found}, not the pinned {size} bytes: not written")
    return data


def _read_local(location, size):
    """The bytes of the regular file at `location` (links followed), read up to one byte more than the pinned
    `size`; a `DatasetFetchError` for anything else (a FIFO is opened without blocking, then refused), or for a
    file of another size."""
    try:
        with open(os.open(location, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise DatasetFetchError(f"{location}: not a regular file")
            return _bounded(file.read(size + 1), size, location)
    except OSError as error:
        raise DatasetFetchError(f"{location}: cannot read: {error.strerror}") from None


def _read_source(path, size, source_dir, url_template, timeout):
    if source_dir is not None:
        location = os.path.join(source_dir, path)
        return _read_local(location, size), location
    url = url_template.format(commit=COMMIT, path=path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(size + 1)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DatasetFetchError(f"{url}: cannot download ({reason}); without internet access, give --source_dir="
                                "a local copy of the dataset") from None
    return _bounded(data, size, url), url


def _fetch_one(path, pinned, output_dir, source_dir, url_template, timeout):
    """Makes `output_dir/path` hold the `pinned` content; returns True if it had to be written."""
    target = os.path.join(output_dir, path)
    if os.path.lexists(target):
        try:
            if _sha256(_read_local(target, pinned.size)) == pinned.digest:
                return False
        except DatasetFetchError:  # not a readable regular file of the pinned size: replaced below
            pass
    data, origin = _read_source(path, pinned.size, source_dir, url_template, timeout)
    actual = _sha256(data)
    if actual != pinned.digest:
        raise DatasetFetchError(f"{origin}: SHA-256 {actual} is not the pinned {pinned.digest} of {path} at commit "
                                f"{COMMIT}: not written")
    temporary = f"{target}.partial"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
    except OSError as error:
        raise DatasetFetchError(f"{target}: cannot write: {error.strerror}") from None
    return True


def fetch_raccoon(output_dir="data/raccoon", source_dir=None, url_template=URL_TEMPLATE, files=None, timeout=60,
                  workers=8):
    """Fetches (or, with `source_dir`, copies) the pinned raccoon dataset into `output_dir`, checking every file's
    size and SHA-256; `files` ({path: `PinnedFile`}, default the whole `manifest()`) limits it. Returns (files written, files
    already in place). Raises `DatasetFetchError` naming the first file that failed."""
    files = manifest() if files is None else files
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        written = list(pool.map(lambda item: _fetch_one(*item, output_dir, source_dir, url_template, timeout),
                                files.items()))
    return sum(written), len(written) - sum(written)


if __name__ == "__main__":
    from keras_retinanet.cli.fetch_raccoon import run

    run()
