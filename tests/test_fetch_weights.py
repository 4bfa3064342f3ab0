"""Pretrained weights fetched, checked and converted (`keras_retinanet.pretrained`, `bin/fetch_weights`): downloads
from a local HTTP server that honours or ignores `Range` and can drop the connection part-way, file:// URLs and
local copies, with test catalog entries whose conversion is cheap. The real conversions are checked end to end in
tests/test_torchvision.py (torchvision's files) and here (a keras.applications file)."""

import contextlib
import dataclasses
import hashlib
import http.server
import json
import os
import random
import re
import shlex
import subprocess
import sys
import threading

import pytest

from keras_retinanet import pretrained
from keras_retinanet.pretrained import catalog, conversions
from keras_retinanet.pretrained.catalog import Weights
from keras_retinanet.pretrained.download import OFFLINE_HINT, Checksum, DownloadError, download

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAYLOAD = random.Random(0).randbytes(300_000)
CUT = 100_000  # where a dropped connection stops


def sha256(data):
    return hashlib.sha256(data).hexdigest()


PINNED = Checksum(sha256(PAYLOAD), len(PAYLOAD))


class Site:
    """What the test server serves ({path: bytes}) and how, and what it was asked and sent."""

    def __init__(self, url):
        self.url = url
        self.files = {}
        self.ignore_range = False
        self.drop_after = None  # the next response stops after this many bytes of its body
        self.stall = threading.Event()  # while cleared with `stalling` set, responses wait (for timeouts)
        self.stalling = False
        self.ranges = []  # each request's Range header (None: none)
        self.sent = 0  # body bytes sent, all requests together


class Handler(http.server.BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-` (206, or 416 past the end), as `Site` says; one request a connection."""

    def do_GET(self):
        site = self.server.site
        asked = self.headers.get("Range")
        site.ranges.append(asked)
        if site.stalling:
            site.stall.wait(10)
        data = site.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if asked and not site.ignore_range else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206 if asked and not site.ignore_range else 200)
        if asked and not site.ignore_range:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if site.drop_after is not None:
            body, site.drop_after = body[:site.drop_after], None
        site.sent += len(body)  # counted before the write: the client may finish reading before this thread resumes
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(files=None):
    """A `Site` served on localhost over HTTP for the block, holding `files` ({path: bytes})."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.site = Site(f"http://127.0.0.1:{server.server_port}")
    server.site.files.update(files or {})
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.site
    finally:
        server.site.stall.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def site():
    with serving({"/models/test-1234.bin": PAYLOAD}) as served:
        yield served


def test_a_download_is_checked_and_renamed_into_place(site, tmp_path):
    destination = str(tmp_path / "cache" / "test-1234.bin")
    download(f"{site.url}/models/test-1234.bin", destination, PINNED)
    assert open(destination, "rb").read() == PAYLOAD
    assert os.listdir(tmp_path / "cache") == ["test-1234.bin"]
    md5 = Checksum(hashlib.md5(PAYLOAD).hexdigest(), algorithm="md5")  # keras.applications' files: MD5, no size
    download(f"{site.url}/models/test-1234.bin", str(tmp_path / "md5.bin"), md5)
    assert open(tmp_path / "md5.bin", "rb").read() == PAYLOAD


def test_a_file_with_another_digest_is_deleted_and_named_with_both_digests(site, tmp_path):
    corrupted = bytearray(PAYLOAD)
    corrupted[123_456] ^= 1
    site.files["/models/test-1234.bin"] = bytes(corrupted)
    url = f"{site.url}/models/test-1234.bin"
    with pytest.raises(DownloadError) as raised:
        download(url, str(tmp_path / "test-1234.bin"), PINNED)
    assert str(raised.value) == f"{url}: SHA-256 {sha256(bytes(corrupted))} is not the pinned {PINNED.digest}"
    assert os.listdir(tmp_path) == []  # neither the file nor its .partial


@pytest.mark.parametrize("size_pinned", [True, False])
def test_an_interrupted_download_resumes_with_a_range_request(site, tmp_path, size_pinned):
    expected = PINNED if size_pinned else Checksum(PINNED.digest)
    destination = str(tmp_path / "test-1234.bin")
    site.drop_after = CUT
    with pytest.raises(DownloadError, match=rf"stopped after {CUT} bytes \(the connection closed early\); they are "
                                            rf"kept in {destination}.partial: run again to resume"):
        download(f"{site.url}/models/test-1234.bin", destination, expected)
    assert os.path.getsize(f"{destination}.partial") == CUT and not os.path.exists(destination)
    download(f"{site.url}/models/test-1234.bin", destination, expected)
    assert open(destination, "rb").read() == PAYLOAD
    assert site.ranges == [None, f"bytes={CUT}-"]
    assert site.sent == len(PAYLOAD) < 2 * len(PAYLOAD)
    assert not os.path.exists(f"{destination}.partial")


def test_a_server_that_ignores_range_sends_the_whole_file_again(site, tmp_path):
    destination = str(tmp_path / "test-1234.bin")
    site.drop_after = CUT
    with pytest.raises(DownloadError):
        download(f"{site.url}/models/test-1234.bin", destination, PINNED)
    site.ignore_range = True
    download(f"{site.url}/models/test-1234.bin", destination, PINNED)
    assert open(destination, "rb").read() == PAYLOAD  # the partial file restarted, not appended to
    assert site.ranges == [None, f"bytes={CUT}-"] and site.sent == CUT + len(PAYLOAD)


def test_a_whole_partial_file_is_checked_as_it_is(site, tmp_path):
    """Pinned size reached: no request; size not pinned: the server answers 416 (nothing after it). A whole partial
    file with another digest is deleted."""
    destination = str(tmp_path / "test-1234.bin")
    for expected, ranges in ((PINNED, []), (Checksum(PINNED.digest), [f"bytes={len(PAYLOAD)}-"])):
        site.ranges.clear()
        (tmp_path / "test-1234.bin.partial").write_bytes(PAYLOAD)
        download(f"{site.url}/models/test-1234.bin", destination, expected)
        assert open(destination, "rb").read() == PAYLOAD and site.ranges == ranges
    (tmp_path / "other.bin.partial").write_bytes(PAYLOAD[::-1])
    with pytest.raises(DownloadError, match=f"SHA-256 {sha256(PAYLOAD[::-1])} is not the pinned {PINNED.digest}"):
        download(f"{site.url}/models/test-1234.bin", str(tmp_path / "other.bin"), PINNED)
    assert not (tmp_path / "other.bin.partial").exists() and not (tmp_path / "other.bin").exists()


def test_more_than_the_pinned_size_is_refused(site, tmp_path):
    short = Checksum(sha256(PAYLOAD[:-10]), len(PAYLOAD) - 10)
    with pytest.raises(DownloadError, match=f"test-1234.bin: more, not the pinned {len(PAYLOAD) - 10} bytes$"):
        download(f"{site.url}/models/test-1234.bin", str(tmp_path / "test-1234.bin"), short)
    assert os.listdir(tmp_path) == []


def test_sources_that_cannot_be_reached_say_what_failed_and_how_to_work_offline(site, tmp_path):
    closed_port = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    closed_port.server_close()
    failures = [(f"{site.url}/missing.bin", "HTTP 404 Not Found"),
                (f"http://127.0.0.1:{closed_port.server_port}/x.bin", "Connection refused"),
                (f"file://{tmp_path}/missing.bin", "No such file or directory")]
    for url, cause in failures:
        with pytest.raises(DownloadError) as raised:
            download(url, str(tmp_path / "out.bin"), PINNED)
        assert str(raised.value).startswith(f"{url}: cannot download (") and cause in str(raised.value)
        assert str(raised.value).endswith(OFFLINE_HINT) and "\n" not in str(raised.value)
    site.stalling = True
    with pytest.raises(DownloadError, match=f"cannot download \\(timed out\\); {OFFLINE_HINT}"):
        download(f"{site.url}/models/test-1234.bin", str(tmp_path / "out.bin"), PINNED, timeout=0.2)
    assert os.listdir(tmp_path) == []


def test_file_urls_and_local_paths_download_and_resume(tmp_path):
    source = tmp_path / "mirror" / "test-1234.bin"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    for index, url in enumerate((f"file://{source}", str(source))):
        destination = tmp_path / f"copy{index}.bin"
        (tmp_path / f"copy{index}.bin.partial").write_bytes(PAYLOAD[:CUT])
        download(url, str(destination), PINNED)
        assert destination.read_bytes() == PAYLOAD
    os.mkfifo(tmp_path / "fifo.bin")
    with pytest.raises(DownloadError, match=f"^{tmp_path}/fifo.bin: not a regular file$"):
        download(str(tmp_path / "fifo.bin"), str(tmp_path / "copy.bin"), PINNED)


# fetch_weights, with a test catalog entry whose conversion (the bytes reversed) is cheap.

TEST_WEIGHTS = Weights("test_weights", "https://weights.invalid/models/test-1234.bin", PINNED, "reversed", 18)


def reverse(weights, published, output):
    """The test conversion: the published file's bytes reversed."""
    with open(published, "rb") as source, open(output, "wb") as file:
        file.write(source.read()[::-1])


REVERSED = conversions.Conversion(".weights.h5", reverse, {"preprocessing": "torch"})


@pytest.fixture
def test_weights(monkeypatch, tmp_path):
    """TEST_WEIGHTS in the catalog (its URL cannot be reached), a cache folder, and the conversions run."""
    runs = []

    def convert(weights, published, output):
        converted = os.path.join(os.path.dirname(output), "test_weights.weights.h5")  # beside it, not yet there
        assert output != converted and not os.path.exists(converted)
        runs.append(published)
        reverse(weights, published, output)

    monkeypatch.setitem(conversions.CONVERSIONS, "reversed", REVERSED._replace(convert=convert))
    monkeypatch.setitem(catalog.CATALOG, "test_weights", TEST_WEIGHTS)
    return str(tmp_path / "cache"), runs


def test_fetch_weights_downloads_converts_once_and_reuses(site, test_weights):
    cache, runs = test_weights
    path = pretrained.fetch_weights("test_weights", cache, base_url=f"{site.url}/models/")
    assert path == os.path.join(cache, "test_weights.weights.h5")
    assert open(path, "rb").read() == PAYLOAD[::-1]
    assert sorted(os.listdir(cache)) == ["test-1234.bin", "test_weights.weights.h5"]
    assert pretrained.fetch_weights("test_weights", cache, base_url=f"{site.url}/models") == path
    assert len(runs) == 1 and site.ranges == [None]
    os.remove(path)  # converted again from the download in the cache, not downloaded again
    assert pretrained.fetch_weights("test_weights", cache, base_url=site.url) == path
    assert len(runs) == 2 and site.ranges == [None]


def test_the_cache_is_the_environment_variable_else_the_home_cache(monkeypatch, site, test_weights, tmp_path):
    monkeypatch.setenv("KERAS_RETINANET_CACHE", str(tmp_path / "env_cache"))
    path = pretrained.fetch_weights("test_weights", base_url=f"{site.url}/models")
    assert path == str(tmp_path / "env_cache" / "test_weights.weights.h5") and os.path.isfile(path)
    monkeypatch.delenv("KERAS_RETINANET_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert pretrained.default_cache_dir() == str(tmp_path / "home" / ".cache" / "keras_retinanet")


def test_fetch_weights_refuses_a_corrupted_download(site, test_weights):
    cache, runs = test_weights
    site.files["/models/test-1234.bin"] = PAYLOAD[::-1]
    with pytest.raises(pretrained.WeightsFetchError) as raised:
        pretrained.fetch_weights("test_weights", cache, base_url=f"{site.url}/models")
    assert str(raised.value) == (f"{site.url}/models/test-1234.bin: SHA-256 {sha256(PAYLOAD[::-1])} is not the "
                                 f"pinned {PINNED.digest}")
    assert os.listdir(cache) == [] and runs == []


def test_source_dir_is_used_instead_of_downloading_and_checked_the_same_way(test_weights, tmp_path):
    cache, runs = test_weights  # its URL (weights.invalid) cannot be reached: nothing is downloaded
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "test-1234.bin").write_bytes(PAYLOAD)
    corrupted = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1])
    (bad / "test-1234.bin").write_bytes(corrupted)
    with pytest.raises(pretrained.WeightsFetchError) as raised:
        pretrained.fetch_weights("test_weights", cache, source_dir=str(bad))
    assert str(raised.value) == f"{bad}/test-1234.bin: SHA-256 {sha256(corrupted)} is not the pinned {PINNED.digest}"
    assert not os.path.exists(cache)
    path = pretrained.fetch_weights("test_weights", cache, source_dir=str(good))
    assert open(path, "rb").read() == PAYLOAD[::-1] and runs == [str(good / "test-1234.bin")]
    assert os.listdir(cache) == ["test_weights.weights.h5"]  # the local copy is not copied


def test_unknown_names_list_the_known_ones(test_weights):
    assert pretrained.is_known("test_weights") and pretrained.is_known("retinanet_resnet50_fpn_coco")
    assert not pretrained.is_known("resnet50")
    with pytest.raises(pretrained.WeightsFetchError, match=r"^unknown pretrained weights 'resnet50'; known: "
                                                           r"retinanet_resnet50_fpn_coco, .*, test_weights$"):
        pretrained.fetch_weights("resnet50", test_weights[0])


def test_a_failed_conversion_leaves_no_converted_file(monkeypatch, site, test_weights):
    cache, runs = test_weights

    def fail(weights, published, output):
        with open(output, "wb") as file:
            file.write(b"half")
        raise ValueError("'conv1.weight' has shape [1]")

    working = conversions.CONVERSIONS["reversed"]
    monkeypatch.setitem(conversions.CONVERSIONS, "reversed", working._replace(convert=fail))
    with pytest.raises(pretrained.WeightsFetchError, match=(
            f"^{cache}/test-1234.bin: cannot convert it to {cache}/test_weights.weights.h5 "
            r"\(ValueError: 'conv1.weight' has shape \[1\]\)$")):
        pretrained.fetch_weights("test_weights", cache, base_url=f"{site.url}/models")
    assert os.listdir(cache) == ["test-1234.bin"]  # the checked download, kept; no (partial) conversion
    monkeypatch.setitem(conversions.CONVERSIONS, "reversed", working)
    assert open(pretrained.fetch_weights("test_weights", cache, base_url=f"{site.url}/models"), "rb").read() == \
        PAYLOAD[::-1]
    assert site.ranges == [None] and len(runs) == 1


# The catalog.

def test_the_catalog_pins_full_digests_that_match_the_published_names():
    import keras.src.applications.resnet as keras_resnet

    assert catalog.KNOWN_NAMES == tuple(catalog.CATALOG)
    for name, weights in catalog.CATALOG.items():
        assert weights.name == name and weights.conversion in conversions.CONVERSIONS
        assert weights.url.endswith(f"/{weights.file_name}")
        digest_length = {"sha256": 64, "md5": 32}[weights.checksum.algorithm]
        assert re.fullmatch(f"[0-9a-f]{{{digest_length}}}", weights.checksum.digest), name
        if weights.url.startswith(catalog.TORCHVISION_MODELS):  # torch.hub's check: the name's 8 hex digits
            assert weights.checksum.algorithm == "sha256"
            assert re.search(r"-([0-9a-f]{8})\.pth$", weights.file_name).group(1) == weights.checksum.digest[:8]
        else:  # keras.applications: the MD5 Keras itself checks
            assert weights.checksum.digest == keras_resnet.WEIGHTS_HASHES[f"resnet{weights.depth}"][1]
            assert weights.url == f"{keras_resnet.BASE_WEIGHTS_PATH}{weights.file_name}"
    kinds = {name: weights.conversion for name, weights in catalog.CATALOG.items()}
    assert kinds == {"retinanet_resnet50_fpn_coco": "torchvision_retinanet",
                     "retinanet_resnet50_fpn_v2_coco": "torchvision_retinanet",
                     "torchvision_resnet50": "torchvision_resnet", "torchvision_resnet50_v2": "torchvision_resnet",
                     "torchvision_resnet101": "torchvision_resnet", "keras_resnet50": "keras_resnet",
                     "keras_resnet101": "keras_resnet", "keras_resnet152": "keras_resnet"}
    assert catalog.CATALOG["retinanet_resnet50_fpn_v2_coco"].url_under("https://mirror.example/w/") == \
        "https://mirror.example/w/retinanet_resnet50_fpn_v2_coco-5905b1c5.pth"


# The command line, through its `run` (run_program: our errors as one line), in a process of its own (absl's flags
# are global: other command lines' required flags, imported by other tests, would stop it).

COMMAND_LINE = """
import contextlib, io, json, sys
from absl import flags
import test_fetch_weights
from keras_retinanet.pretrained import catalog, conversions
from keras_retinanet.cli import fetch_weights

conversions.CONVERSIONS["reversed"] = test_fetch_weights.REVERSED
catalog.CATALOG["test_weights"] = test_fetch_weights.TEST_WEIGHTS
results = []
for argv in json.load(sys.stdin):
    flags.FLAGS.unparse_flags()
    sys.argv = ["fetch_weights", *argv]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            fetch_weights.run()
        except SystemExit as ended:
            results.append([ended.code, out.getvalue()])
json.dump(results, sys.__stdout__)
"""


def run_command_line(*cases):
    """[exit code or message, stdout] of `bin/fetch_weights` with each case's arguments, TEST_WEIGHTS known."""
    result = subprocess.run(
        [sys.executable, "-c", COMMAND_LINE], input=json.dumps(cases), capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
             "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def test_the_command_line_prints_the_path_or_says_what_failed_in_one_line(site, tmp_path):
    cache = tmp_path / "cache"
    path = str(cache / "test_weights.weights.h5")
    site.files["/corrupted/test-1234.bin"] = PAYLOAD[::-1]
    (tmp_path / "empty").mkdir()
    (fetched, listed, unknown, corrupted, missing) = run_command_line(
        ["test_weights", f"--cache_dir={cache}", f"--base_url={site.url}/models"],
        ["--list"],
        ["nothing_known", f"--cache_dir={cache}"],
        ["test_weights", f"--cache_dir={tmp_path / 'other'}", f"--base_url={site.url}/corrupted"],
        ["test_weights", f"--cache_dir={tmp_path / 'other'}", f"--source_dir={tmp_path / 'empty'}"])
    assert fetched == [None, f"{path}\ntrain from it with --set=model.backbone.depth=18 "
                             f"--set=model.backbone.weights={path} --set=model.backbone.preprocessing=torch\n"]
    assert open(path, "rb").read() == PAYLOAD[::-1]
    assert [line.split()[0] for line in listed[1].splitlines()] == list(catalog.CATALOG) + ["test_weights"]
    for (status, out), expected in (
            (unknown, "error: unknown pretrained weights 'nothing_known'; known: retinanet_resnet50_fpn_coco, "),
            (corrupted, f"error: {site.url}/corrupted/test-1234.bin: SHA-256 {sha256(PAYLOAD[::-1])} is not the "
                        f"pinned {PINNED.digest}"),
            (missing, f"error: {tmp_path / 'empty'}/test-1234.bin: cannot read: No such file or directory")):
        assert isinstance(status, str) and status.startswith(expected) and "\n" not in status, status
        assert out == ""


def test_the_printed_settings_are_the_backbones_the_weights_need():
    """What bin/fetch_weights prints for torchvision's and keras.applications' ResNets reads back, through --set,
    as the backbone that `load_torchvision_resnet_weights` / `load_keras_applications_weights` accept; detectors are
    models to predict with or to fine-tune from."""
    from keras_retinanet.cli.fetch_weights import how_to_use
    from keras_retinanet.config import load_config

    for name, expected in (("torchvision_resnet50", (50, False, "torch", 1e-5)),
                           ("torchvision_resnet101", (101, False, "torch", 1e-5)),
                           ("keras_resnet152", (152, True, "caffe", 1.001e-5))):
        hint = how_to_use(name, "/cache dir/x.weights.h5")
        assert hint.startswith("train from it with --set=model.backbone.depth=")
        overrides = [word.removeprefix("--set=") for word in shlex.split(hint.removeprefix("train from it with "))]
        config = load_config(os.path.join(ROOT, "configs", "retinanet_r50_fpn_1x_coco.yaml"), overrides)
        backbone = config.model.backbone
        assert (backbone.depth, backbone.stride_in_1x1, backbone.preprocessing, backbone.bn_epsilon) == expected
        assert backbone.weights == "/cache dir/x.weights.h5"
    assert pretrained.model_settings("retinanet_resnet50_fpn_coco", "/c/r.keras") == {"model.init_from": "/c/r.keras"}
    assert how_to_use("retinanet_resnet50_fpn_v2_coco", "/c/r.keras") == (
        "predict, evaluate or export with --model=/c/r.keras, or fine-tune from it with "
        "--set=model.init_from=/c/r.keras")


def test_the_help_names_every_known_weights():
    from keras_retinanet.cli import fetch_weights

    for name in catalog.KNOWN_NAMES:
        assert re.search(rf"\b{name}\b", fetch_weights.__doc__), name


# A real conversion: a keras.applications ResNet-50 file (legacy HDF5, as Keras publishes them) to our backbone.

def test_a_keras_applications_file_converts_to_our_backbone(monkeypatch, tmp_path):
    import h5py
    import keras
    import numpy as np
    from keras.src.legacy.saving import legacy_h5_format

    from keras_retinanet.backbones import ResNetBackbone, load_keras_applications_weights

    source = keras.applications.ResNet50(include_top=False, weights=None)
    rng = np.random.default_rng(0)
    for weight in source.weights:  # biases and BN statistics too: the conversion folds conv biases into the means
        low = 0.5 if "variance" in weight.path or "gamma" in weight.path else -0.1
        weight.assign(rng.uniform(low, low + 0.2, weight.shape).astype("float32"))
    published = tmp_path / "mirror" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    published.parent.mkdir()
    with h5py.File(published, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, source)
    md5 = hashlib.md5(published.read_bytes()).hexdigest()
    monkeypatch.setitem(catalog.CATALOG, "keras_resnet50", dataclasses.replace(
        catalog.CATALOG["keras_resnet50"], checksum=Checksum(md5, algorithm="md5")))

    path = pretrained.fetch_weights("keras_resnet50", str(tmp_path / "cache"), base_url=f"file://{published.parent}")
    assert path == str(tmp_path / "cache" / "keras_resnet50.weights.h5")
    expected = ResNetBackbone(50)
    load_keras_applications_weights(expected, source)
    converted = ResNetBackbone(50, weights=path)
    assert len(converted.weights) == len(expected.weights)
    for ours, theirs in zip(converted.weights, expected.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
