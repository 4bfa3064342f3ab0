"""The raccoon downloader: the pinned manifest, checksums, resumption and errors, on the photos vendored in
tests/data/raccoon (the same files as at the pinned commit), over file:// URLs and from a local copy."""

import os
import shutil
import subprocess
import sys

import pytest

from keras_retinanet.datasets.raccoon import DatasetFetchError, fetch_raccoon, manifest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
VENDORED = os.path.join(ROOT, "tests", "data", "raccoon")


def _vendored_files():
    """{path: pinned digest and size} of the vendored files that the dataset has (its images, XMLs and licence)."""
    pinned = manifest()
    paths = [os.path.relpath(os.path.join(folder, name), VENDORED) for folder, _, names in os.walk(VENDORED)
             for name in names]
    return {path: pinned[path] for path in paths if path in pinned}


def test_the_manifest_pins_the_whole_dataset_and_the_vendored_photos_are_its_files():
    pinned = manifest()
    kinds = [path.split("/")[0] for path in pinned]
    assert (kinds.count("images"), kinds.count("annotations"), kinds.count("data"), kinds.count("LICENSE")) == (
        200, 200, 3, 1)
    assert {"data/train_labels.csv", "data/test_labels.csv"} <= set(pinned)
    assert len(_vendored_files()) == 11  # 5 photos, their XMLs and the licence: every one with the pinned digest
    for path, pinned in _vendored_files().items():
        assert os.path.getsize(os.path.join(VENDORED, path)) == pinned.size


@pytest.mark.parametrize("route", ["download", "local copy"])
def test_fetch_checks_writes_and_resumes(tmp_path, route):
    files = _vendored_files()
    options = ({"url_template": f"file://{os.path.abspath(VENDORED)}/{{path}}"} if route == "download"
               else {"source_dir": VENDORED})
    output = tmp_path / "raccoon"
    assert fetch_raccoon(str(output), files=files, **options) == (11, 0)
    for path in files:
        assert (output / path).read_bytes() == open(os.path.join(VENDORED, path), "rb").read()
    os.remove(output / "images" / "raccoon-63.jpg")
    (output / "images" / "raccoon-1.jpg").write_bytes(b"truncated")
    assert fetch_raccoon(str(output), files=files, **options) == (2, 9)  # only the missing and the damaged
    assert not list(output.rglob("*.partial"))


def test_a_file_with_another_checksum_is_named_and_not_written(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(VENDORED, source)
    photo = source / "images" / "raccoon-105.jpg"
    data = bytearray(photo.read_bytes())
    data[1000] ^= 1  # one bit of a camera JPEG: still decodes, but is not the pinned file
    photo.write_bytes(bytes(data))
    with pytest.raises(DatasetFetchError, match=r"raccoon-105.jpg: SHA-256 [0-9a-f]{64} is not the pinned "
                                                r"[0-9a-f]{64} of images/raccoon-105.jpg at commit 9393884"):
        fetch_raccoon(str(tmp_path / "out"), source_dir=str(source), files=_vendored_files())
    assert not (tmp_path / "out" / "images" / "raccoon-105.jpg").exists()


def test_unreachable_files_say_what_to_do(tmp_path):
    files = {"images/raccoon-2.jpg": manifest()["images/raccoon-2.jpg"]}
    with pytest.raises(DatasetFetchError, match="cannot download .*give --source_dir=a local copy"):
        fetch_raccoon(str(tmp_path), url_template=f"file://{tmp_path}/missing/{{path}}", files=files)
    process = subprocess.run([sys.executable, "-m", "keras_retinanet.cli.fetch_raccoon", f"--output_dir={tmp_path}/o",
                              f"--source_dir={VENDORED}"], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1].startswith(f"error: {VENDORED}/")  # a photo the copy lacks
    assert "cannot read: No such file or directory" in process.stderr


def _sparse_file_of(size):
    def make(path):
        with open(path, "wb") as file:
            file.truncate(size)
    return make


def test_only_regular_files_of_the_pinned_size_are_read(tmp_path):
    """A FIFO (which would block a plain open), a link to /dev/zero (endless), a 1 GB file and a short one in the
    local copy are refused naming the file, without hanging or reading more than the pinned size + 1 bytes; so is
    an oversized download. In the output folder, such files are replaced by the pinned ones."""
    files = _vendored_files()
    photo = "images/raccoon-1.jpg"
    size = files[photo].size
    cases = [(os.mkfifo, "not a regular file"), (lambda path: os.symlink("/dev/zero", path), "not a regular file"),
             (_sparse_file_of(2**30), f"more, not the pinned {size} bytes"),
             (_sparse_file_of(size - 1), f"{size - 1} bytes, not the pinned {size} bytes")]
    for index, (make, cause) in enumerate(cases):
        source = tmp_path / f"source{index}"
        shutil.copytree(VENDORED, source)
        os.remove(source / photo)
        make(str(source / photo))
        with pytest.raises(DatasetFetchError) as raised:
            fetch_raccoon(str(tmp_path / "out"), source_dir=str(source), files={photo: files[photo]})
        assert str(raised.value).startswith(f"{source / photo}: {cause}")
    oversized = str(tmp_path / "source2")
    with pytest.raises(DatasetFetchError, match=f"^file://{oversized}/{photo}: more, not the pinned {size} bytes"):
        fetch_raccoon(str(tmp_path / "out"), url_template=f"file://{oversized}/{{path}}", files={photo: files[photo]})
    output = tmp_path / "output"
    (output / "images").mkdir(parents=True)
    os.mkfifo(output / photo)
    os.symlink("/dev/zero", output / "images" / "raccoon-63.jpg")
    assert fetch_raccoon(str(output), source_dir=VENDORED, files=files) == (11, 0)
    assert (output / photo).read_bytes() == open(os.path.join(VENDORED, photo), "rb").read()

