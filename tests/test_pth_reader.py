""".pth files read without torch (`keras_retinanet.convert.pth`): archives written here as torch.save writes them
(a protocol-2 pickle whose tensors name torch's globals and their storages by persistent id, one member per storage),
their arrays and dtypes, and the files refused, each in one line naming the file: above all, pickles naming any other
global, refused before anything is called."""

import collections
import pickle
import sys

import numpy as np
import pytest

from pth_files import Archive, Call, Global, Opcodes, Storage, deep_list, pickled, view

from keras_retinanet.convert import pth
from keras_retinanet.convert.pth import LEGACY_MAGIC, read_state_dict
from keras_retinanet.inference import MAX_MODEL_BYTES, ModelError


@pytest.fixture(autouse=True)
def no_torch(monkeypatch):
    """Importing torch fails in these tests: the reader must not need it."""
    monkeypatch.setitem(sys.modules, "torch", None)


def assert_refused(path, message):
    """Reading `path` is a ModelError whose message is `path: message...`."""
    with pytest.raises(ModelError) as raised:
        read_state_dict(path)
    assert str(raised.value).startswith(f"{path}: {message}"), str(raised.value)


def test_arrays_keep_their_dtypes_and_values(tmp_path):
    archive = Archive()
    generator = np.random.default_rng(0)
    arrays = {
        "conv.weight": generator.normal(size=[4, 3, 3, 3]).astype(np.float32),
        "double": generator.normal(size=[5]),
        "half": generator.normal(size=[2, 3]).astype(np.float16),
        "bn.num_batches_tracked": np.array(7, np.int64),
        "ints": np.array([-2**31, 2**31 - 1], np.int32),
        "bytes": np.array([0, 255], np.uint8),
        "mask": np.array([True, False, True]),
        "empty": np.zeros([0, 3], np.float32),
    }
    state = collections.OrderedDict((key, archive.tensor(value)) for key, value in arrays.items())
    # bfloat16: the top 16 bits of float32 values, which read back as those float32 values exactly
    bfloat16 = (generator.normal(size=[3, 2]).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
    state["bfloat16"] = archive.tensor((bfloat16.view(np.uint32) >> 16).astype(np.uint16), "BFloat16Storage")
    state["parameter"] = Call("torch._utils._rebuild_parameter", archive.tensor(arrays["conv.weight"]), True,
                              Call("collections.OrderedDict"))
    arrays |= {"bfloat16": bfloat16, "parameter": arrays["conv.weight"]}

    read = read_state_dict(archive.write(tmp_path / "weights.pth", state))
    assert list(read) == list(arrays)
    for key, expected in arrays.items():
        assert read[key].dtype == expected.dtype and read[key].shape == expected.shape, key
        np.testing.assert_array_equal(read[key], expected, err_msg=key)
        assert read[key].flags.writeable and read[key].flags.c_contiguous, key


def test_views_of_one_storage_are_read_by_offset_and_stride(tmp_path):
    archive = Archive()
    elements = np.arange(24, dtype=np.float32)
    storage = archive.storage(elements)
    state = {
        "transposed": view(storage, 0, [4, 6], [1, 4]),  # a [6, 4] tensor transposed
        "row": view(storage, 8, [4], [1]),
        "column": view(storage, 1, [6], [4]),
        "scalar": view(storage, 23, [], []),
        "expanded": view(storage, 2, [3, 2], [0, 1]),
    }
    read = read_state_dict(archive.write(tmp_path / "views.pth", state))
    np.testing.assert_array_equal(read["transposed"], elements.reshape(6, 4).T)
    np.testing.assert_array_equal(read["row"], elements[8:12])
    np.testing.assert_array_equal(read["column"], elements.reshape(6, 4)[:, 1])
    assert read["scalar"].shape == () and read["scalar"] == 23
    np.testing.assert_array_equal(read["expanded"], [[2, 3]] * 3)
    read["row"][0] = -1  # each array its own copy
    assert read["transposed"][0, 2] == 8


def test_big_endian_files_read_the_same(tmp_path):
    archive = Archive()
    values = np.array([1.5, -2.25, 3e38], np.float32)
    state = {"weight": view(archive.storage(values, byteorder=">"), 0, [3], [1])}
    read = read_state_dict(archive.write(tmp_path / "big.pth", state, byteorder="big"))
    assert read["weight"].dtype == np.float32
    np.testing.assert_array_equal(read["weight"], values)


def test_a_reference_script_checkpoint_gives_its_model(tmp_path):
    archive = Archive()
    weight = np.ones([2, 2], np.float32)
    checkpoint = {
        "model": collections.OrderedDict(weight=archive.tensor(weight)),
        "optimizer": {"state": {0: {"momentum_buffer": archive.tensor(weight * 2)}},
                      "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0]}]},
        "lr_scheduler": {"milestones": collections.OrderedDict([(16, 1), (22, 1)])},
        "args": ["--epochs", 26, None, True, 0.5, deep_list(100_000)],
        "epoch": 3,
    }
    read = read_state_dict(archive.write(tmp_path / "checkpoint.pth", checkpoint))
    assert list(read) == ["weight"]
    np.testing.assert_array_equal(read["weight"], weight)


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "posix.system", "subprocess.call",
                                  "numpy.core.multiarray._reconstruct", "torch.load", "collections.deque"])
def test_pickles_naming_other_globals_are_refused_before_any_call(tmp_path, name):
    marker = tmp_path / "ran"
    argument = f"open({str(marker)!r}, 'w')" if name == "builtins.eval" else f"touch {marker}"
    archive = Archive()
    state = {"weight": archive.tensor(np.ones(2, np.float32)), "bias": Call(name, argument)}
    path = archive.write(tmp_path / "evil.pth", state)
    with pytest.raises(ModelError) as raised:
        read_state_dict(path)
    assert str(raised.value) == (f"{path}: its pickle names the global {name!r}, which a weights file does not need: "
                                 "refused")
    assert not marker.exists()


@pytest.mark.parametrize("state", [{"__defaults__": (5,), "x": 1}, (None, {"__defaults__": (5,), "x": 1})])
@pytest.mark.parametrize("target, takes_attributes", [
    ("torch._utils._rebuild_tensor_v2", True), ("torch._utils._rebuild_parameter", True),
    ("torch.FloatStorage", False), ("collections.OrderedDict", False),
])
def test_what_a_pickle_sets_on_the_globals_it_finds_stays_in_its_file(tmp_path, state, target, takes_attributes):
    """BUILD opcodes on the globals a file may use (a __dict__ update, or setattr of slot state) either fail or
    change only objects made for that file."""
    module, _, name = target.rpartition(".")
    archive = Archive()
    weight = np.arange(3, dtype=np.float32)
    setting = pickle.GLOBAL + f"{module}\n{name}\n".encode() + pickle.dumps(state, 2)[2:-1] + pickle.BUILD + pickle.POP
    data = Opcodes(pickle.PROTO + b"\x02" + setting + pickled({"weight": archive.tensor(weight)})[2:])
    path = archive.write(tmp_path / "setting.pth", data)
    if takes_attributes:
        np.testing.assert_array_equal(read_state_dict(path)["weight"], weight)
    else:
        assert_refused(path, "its archive/data.pkl cannot be unpickled (")
    for function in (pth._StateDictUnpickler.rebuild_tensor, pth._StateDictUnpickler.rebuild_parameter):
        assert vars(function) == {}
    assert pth._StateDictUnpickler.rebuild_tensor.__defaults__ == (None,)
    np.testing.assert_array_equal(read_state_dict(archive.write(tmp_path / "next.pth", {"weight": archive.tensor(
        weight)}))["weight"], weight)


def test_tensors_must_lie_inside_their_storages(tmp_path):
    for key, size, offset, stride, message in [
        ("past_the_end", [7], 0, [1], "tensor 'past_the_end' ends at element 7 of its storage '0', which holds 6"),
        ("offset", [2, 2], 4, [2, 1], "tensor 'offset' ends at element 8 of its storage '0', which holds 6"),
        ("stride", [2, 3], 0, [4, 1], "tensor 'stride' ends at element 7 of its storage '0', which holds 6"),
        ("negative", [3], 2, [-1],
         "its pickle gives a tensor the offset, size and stride (2, (3,), (-1,)), not integers >= 0 for at most 32 "
         "dimensions"),
        ("expanded", [2**20, 2**20], 0, [0, 0],
         f"its tensors up to 'expanded' hold {2**42} bytes, more than the {MAX_MODEL_BYTES} of a model file"),
    ]:
        archive = Archive()
        state = {key: view(archive.storage(np.arange(6, dtype=np.float32)), offset, size, stride)}
        assert_refused(archive.write(tmp_path / f"{key}.pth", state), message)


def test_storage_members_must_be_there_with_their_sizes(tmp_path):
    archive = Archive()
    archive.write(tmp_path / "missing.pth", {"weight": archive.tensor(np.ones(4, np.float32))}, skip={"0"})
    assert_refused(tmp_path / "missing.pth", "storage '0' has no member 'archive/data/0'")

    archive = Archive()
    storage = archive.storage(np.ones(3, np.float32))
    storage.pid = storage.pid[:4] + (4,)
    archive.write(tmp_path / "short.pth", {"weight": view(storage, 0, [3], [1])})
    assert_refused(tmp_path / "short.pth",
                   "member 'archive/data/0' holds 12 bytes, not the 16 of the 4 FloatStorage elements its pickle gives")

    archive = Archive()
    storage = archive.storage(np.ones(4, np.float32))
    retyped = Storage("IntStorage", "0", storage.data, 4)
    archive.write(tmp_path / "retyped.pth", {"weight": view(storage, 0, [4], [1]), "ints": view(retyped, 0, [4], [1])})
    assert_refused(tmp_path / "retyped.pth", "its pickle gives storage '0' two types or sizes")


def test_persistent_ids_must_be_storages(tmp_path):
    for name, pid, message in [
        ("module", ("module", Global("torch.FloatStorage"), "0", "cpu", 1), "its pickle refers to ('module', "),
        ("size", ("storage", Global("torch.FloatStorage"), "0", "cpu", -1), "its pickle refers to ('storage', "),
        ("type", ("storage", "FloatStorage", "0", "cpu", 1), "its pickle refers to ('storage', 'FloatStorage'"),
        ("untyped", ("storage", Global("torch.UntypedStorage"), "0", "cpu", 4),
         "its pickle names the global 'torch.UntypedStorage'"),
    ]:
        archive = Archive()
        storage = archive.storage(np.ones(1, np.float32))
        storage.pid = pid
        assert_refused(archive.write(tmp_path / f"{name}.pth", {"weight": view(storage, 0, [1], [1])}), message)


def test_files_that_are_not_state_dict_archives_are_one_line_errors(tmp_path):
    legacy = tmp_path / "legacy.pth"  # torch.save before PyTorch 1.6: pickles one after another
    legacy.write_bytes(LEGACY_MAGIC + pickle.STOP + pickle.dumps({"weight": [1.0, 1.0]}, protocol=2))
    assert_refused(legacy, "written by torch.save before PyTorch 1.6, not a zip archive: save it again with a newer "
                           "torch")
    raw_pickle = tmp_path / "raw.pth"
    raw_pickle.write_bytes(pickle.dumps({"weight": [1.0, 1.0]}, protocol=2))
    assert_refused(raw_pickle, "not a zip archive")
    with pytest.raises(ModelError, match="^no weights file at "):
        read_state_dict(str(tmp_path / "absent.pth"))

    archive = Archive()
    weight = archive.tensor(np.ones(2, np.float32))
    whole = pickled({"weight": weight})
    for name, obj, members, message in [
        ("list", [weight], None, "holds a list, not a state dict"),
        ("string", {"weight": "ones"}, None, "its state dict maps 'weight' to a str, not a tensor"),
        ("deep", {"weight": deep_list(100_000)}, None, "its state dict maps 'weight' to a list, not a tensor"),
        ("key", {1: weight}, None, "its state dict has the key 1, not a string"),
        ("no_storage", {"weight": view("0", 0, [2], [1])}, None,
         "its pickle rebuilds a tensor from a str, not from a storage"),
        ("cut", Opcodes(whole[:-8]), None, "its archive/data.pkl cannot be unpickled ("),
        ("unfinished", Opcodes(whole[:-1]), None, "its archive/data.pkl cannot be unpickled ("),
        ("two", {}, {"other/data.pkl": pickled({})},
         "not a torch.save archive (it holds 2 <name>/data.pkl members, not one)"),
    ]:
        assert_refused(archive.write(tmp_path / f"{name}.pth", obj, members=members), message)
    assert_refused(archive.write(tmp_path / "byteorder.pth", {"weight": weight}, byteorder="middle"),
                   "its byteorder is b'middle', not b'little' or b'big'")
