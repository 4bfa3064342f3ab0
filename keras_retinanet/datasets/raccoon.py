"""The raccoon dataset (github.com/datitran/raccoon_dataset, MIT licence): 200 photos of raccoons, their VOC XML
annotations and CSV labels with a published split, fetched at a pinned commit, every file checked against its
size and SHA-256 (`raccoon.sha256`, made from that commit: `<sha256>  <bytes>  <path>` lines).

    bin/fetch_raccoon [--output_dir=data/raccoon] [--source_dir=LOCAL_COPY]
    (also retinanet-fetch-raccoon, python -m keras_retinanet.cli.fetch_raccoon)

Files already in place with the right checksum are kept, so a rerun after an interruption fetches only what is
missing; a file whose checksum differs is an error that names it, and nothing unchecked is written under a file's
name (`keras_retinanet.pretrained.download` fetches each). Offline, `--source_dir` copies from a local clone or
download instead (checked the same way). Only regular files (links followed) are read, and at most one byte more
than the pinned size of each: a larger one is refused by its size before any checksum.
"""

import concurrent.futures
import os

from keras_retinanet.pretrained.download import Checksum, DownloadError, download, holds

COMMIT = "93938849301895fb73909842ba04af9b602f677a"
URL_TEMPLATE = "https://raw.githubusercontent.com/datitran/raccoon_dataset/{commit}/{path}"
MANIFEST = os.path.join(os.path.dirname(__file__), "raccoon.sha256")

DatasetFetchError = DownloadError  # a file that could not be fetched, or whose content is not the pinned one
PinnedFile = Checksum  # (SHA-256 hex digest, size in bytes)


def manifest():
    """{relative path: `PinnedFile` (SHA-256 hex digest, size in bytes)} of the pinned commit's files."""
    entries = {}
    with open(MANIFEST, encoding="utf-8") as file:
        for line in file:
            digest, size, path = line.rstrip("\n").split("  ", 2)
            entries[path] = PinnedFile(digest, int(size))
    return entries


def _fetch_one(path, pinned, output_dir, source_dir, url_template, timeout):
    """Makes `output_dir/path` hold the `pinned` content; returns True if it had to be written."""
    target = os.path.join(output_dir, path)
    if holds(target, pinned):
        return False
    source = (os.path.join(source_dir, path) if source_dir is not None
              else url_template.format(commit=COMMIT, path=path))
    download(source, target, pinned, timeout, what=f"{path} at commit {COMMIT}")
    return True


def fetch_raccoon(output_dir="data/raccoon", source_dir=None, url_template=URL_TEMPLATE, files=None, timeout=60,
                  workers=8):
    """Fetches (or, with `source_dir`, copies) the pinned raccoon dataset into `output_dir`, checking every file's
    size and SHA-256; `files` ({path: `PinnedFile`}, default the whole `manifest()`) limits it. Returns (files
    written, files already in place). Raises `DatasetFetchError` naming the first file that failed."""
    files = manifest() if files is None else files
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        written = list(pool.map(lambda item: _fetch_one(*item, output_dir, source_dir, url_template, timeout),
                                files.items()))
    return sum(written), len(written) - sum(written)

