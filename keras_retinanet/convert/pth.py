"""torchvision `.pth` files read without torch: the state dict in the zip archive `torch.save` writes, as NumPy arrays.

The archive (PyTorch 1.6 and later) holds `<name>/data.pkl`, a pickle of the state dict whose tensors name their
storages by persistent id, and one member `<name>/data/<key>` of raw bytes per storage. Unpickling may call only the
globals a state dict needs (an OrderedDict, torch's tensor and parameter rebuilders, its storage types), each taken
to a NumPy builder of ours; any other global is refused before it is called, so a file cannot run code.
"""

import collections
import io
import math
import os
import pickle
import zipfile

import numpy as np

from keras_retinanet.config import cut, shown
from keras_retinanet.inference import MAX_MODEL_BYTES, ModelError, one_line, open_bounded_zip

# How files of torch.save before PyTorch 1.6 (not zip archives) begin: its magic number, pickled with protocol 2.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
MAX_DIMENSIONS = 32  # NumPy 1's limit; a state dict's tensors have at most 5


def _widen_bfloat16(bits):
    """bfloat16 bit patterns (uint16) as the float32 values they stand for: the top half of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _to_bool(values):
    """Bytes as bools: any but 0 is True (a NumPy bool must be 0 or 1)."""
    return values != 0


class StorageType(collections.namedtuple("StorageType", "name stored_dtype convert")):
    """A torch storage type: the dtype of its bytes, and how they become the values they stand for (or None).
    Immutable, as a pickle could otherwise edit what it finds."""

    __slots__ = ()

    def __repr__(self):
        return f"torch.{self.name}"


STORAGE_TYPES = {
    storage_type.name: storage_type
    for storage_type in (
        StorageType("FloatStorage", np.float32, None),
        StorageType("DoubleStorage", np.float64, None),
        StorageType("HalfStorage", np.float16, None),
        StorageType("BFloat16Storage", np.uint16, _widen_bfloat16),
        StorageType("LongStorage", np.int64, None),
        StorageType("IntStorage", np.int32, None),
        StorageType("ShortStorage", np.int16, None),
        StorageType("CharStorage", np.int8, None),
        StorageType("ByteStorage", np.uint8, None),
        StorageType("BoolStorage", np.uint8, _to_bool),
    )
}
# A storage as the pickle names it, read only when a tensor of the state dict needs it.
StorageRef = collections.namedtuple("StorageRef", "type key numel")
# A tensor as `_rebuild_tensor_v2` describes it: elements of its storage from `offset`, `size` of them by `stride`.
TensorRef = collections.namedtuple("TensorRef", "storage offset size stride")


def _is_index(value):
    return type(value) is int and value >= 0


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a torch.save archive's data.pkl into plain containers of `TensorRef`s; only the globals a state
    dict needs are found, and only storage persistent ids are loaded."""

    def __init__(self, path, data):
        super().__init__(io.BytesIO(data))
        self.path = path
        self.storages = {}  # key -> the StorageRef first given for it
        # What a pickle finds takes no attributes (OrderedDict, StorageType) or is made for this file alone, so that
        # nothing its BUILD opcodes set outlives it.
        self.globals = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): lambda *args: self.rebuild_tensor(*args),
            ("torch._utils", "_rebuild_parameter"): lambda *args: self.rebuild_parameter(*args),
            **{("torch", name): storage_type for name, storage_type in STORAGE_TYPES.items()},
        }

    def find_class(self, module, name):
        try:
            return self.globals[module, name]
        except KeyError:
            dotted_name = cut(repr(f"{module}.{name}"), limit=100)
            raise ModelError(f"{self.path}: its pickle names the global {dotted_name}, which a weights file does "
                             "not need: refused") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str) and isinstance(pid[3], str)
                and _is_index(pid[4])):
            raise ModelError(f"{self.path}: its pickle refers to {shown(pid)}, not to a storage ('storage', type, "
                             "key, location, size)")
        storage = StorageRef(pid[1], pid[2], pid[4])
        if self.storages.setdefault(storage.key, storage) != storage:
            raise ModelError(f"{self.path}: its pickle gives storage {shown(storage.key)} two types or sizes")
        return storage

    def rebuild_tensor(self, storage, offset, size, stride, requires_grad, backward_hooks, metadata=None):
        del requires_grad, backward_hooks, metadata  # what training needs, not the values
        if not isinstance(storage, StorageRef):
            raise ModelError(f"{self.path}: its pickle rebuilds a tensor from a {type(storage).__name__}, not from a "
                             "storage")
        if not (_is_index(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
                and len(size) == len(stride) <= MAX_DIMENSIONS and all(map(_is_index, size + stride))):
            raise ModelError(f"{self.path}: its pickle gives a tensor the offset, size and stride "
                             f"{shown((offset, size, stride))}, not integers >= 0 for at most {MAX_DIMENSIONS} "
                             "dimensions")
        return TensorRef(storage, offset, size, stride)

    def rebuild_parameter(self, data, requires_grad, backward_hooks):
        del requires_grad, backward_hooks
        if not isinstance(data, TensorRef):
            raise ModelError(f"{self.path}: its pickle makes a parameter of {shown(data)}, not of a tensor")
        return data


def read_state_dict(path):
    """{key: NumPy array} of the state dict in the torchvision `.pth` file `path` (or of the one under "model" in a
    checkpoint of torchvision's reference scripts), read without torch; a `ModelError` naming the file otherwise.

    Arrays keep the storage's dtype (float32, float16, int64, ...), except bfloat16, widened to float32 exactly
    (NumPy has none). The file must be the zip archive torch.save writes (PyTorch 1.6 and later), within the bounds
    of a model file (`keras_retinanet.inference.open_bounded_zip`), its tensors inside their storages."""
    if not os.path.isfile(path):  # links followed: a FIFO or a device is not read
        raise ModelError(f"no weights file at {path}")
    try:
        archive = open_bounded_zip(path)
    except ModelError:
        if _is_legacy(path):
            raise ModelError(f"{path}: written by torch.save before PyTorch 1.6, not a zip archive: save it again "
                             "with a newer torch") from None
        raise
    with archive:
        records = [name for name in archive.namelist() if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(records) != 1:
            raise ModelError(f"{path}: not a torch.save archive (it holds {len(records)} <name>/data.pkl members, "
                             "not one)")
        prefix = records[0].split("/")[0]
        unpickler = _StateDictUnpickler(path, _read_member(path, archive, records[0]))
        try:
            state = unpickler.load()
        except ModelError:
            raise
        except Exception as error:  # the pickle module's errors vary by cause (EOFError when cut, ...)
            raise ModelError(f"{path}: its {records[0]} cannot be unpickled ({type(error).__name__}: "
                             f"{one_line(error)})") from None
        if not isinstance(state, dict):
            raise ModelError(f"{path}: holds a {type(state).__name__}, not a state dict")
        if isinstance(state.get("model"), dict):
            state = state["model"]
        return _arrays(path, archive, prefix, state)


def _is_legacy(path):
    """Whether the file `path` begins as torch.save wrote files before PyTorch 1.6."""
    try:
        with open(path, "rb") as file:
            return file.read(len(LEGACY_MAGIC)) == LEGACY_MAGIC
    except OSError:
        return False


def _read_member(path, archive, name):
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ModelError(f"{path}: member {shown(name)} cannot be read ({one_line(error)})") from None


def _arrays(path, archive, prefix, state):
    """`state`'s tensors as NumPy arrays, each copied out of its storage; a `ModelError` for any other value, a tensor
    outside its storage, or more bytes than a model file holds in all."""
    byteorder_member = f"{prefix}/byteorder"  # older torch wrote none, and only little-endian files
    byteorder = _read_member(path, archive, byteorder_member) if byteorder_member in archive.namelist() else b"little"
    if byteorder not in (b"little", b"big"):
        raise ModelError(f"{path}: its byteorder is {shown(byteorder)}, not b'little' or b'big'")
    storages = {}  # key -> its elements, a 1-D array
    arrays = {}
    total_bytes = 0
    for key, tensor in state.items():
        if not isinstance(key, str):
            raise ModelError(f"{path}: its state dict has the key {shown(key)}, not a string")
        if not isinstance(tensor, TensorRef):
            raise ModelError(f"{path}: its state dict maps {shown(key)} to a {type(tensor).__name__}, not a tensor")
        storage = storages.get(tensor.storage.key)
        if storage is None:
            storage = storages[tensor.storage.key] = _storage(path, archive, prefix, byteorder.decode(), tensor.storage)
        extent = 0 if 0 in tensor.size else 1 + sum((n - 1) * step for n, step in zip(tensor.size, tensor.stride))
        if tensor.offset + extent > storage.size:
            raise ModelError(f"{path}: tensor {shown(key)} ends at element {tensor.offset + extent} of its storage "
                             f"{shown(tensor.storage.key)}, which holds {storage.size}")
        total_bytes += math.prod(tensor.size) * storage.itemsize
        if total_bytes > MAX_MODEL_BYTES:
            raise ModelError(f"{path}: its tensors up to {shown(key)} hold {total_bytes} bytes, more than the "
                             f"{MAX_MODEL_BYTES} of a model file")
        arrays[key] = np.lib.stride_tricks.as_strided(
            storage[tensor.offset:], tensor.size, [step * storage.itemsize for step in tensor.stride], writeable=False
        ).copy()
    return arrays


def _storage(path, archive, prefix, byteorder, storage):
    """The elements of `storage`, read from its member in native byte order and converted to the dtype it stands for;
    a `ModelError` if the member is missing or not of the size the pickle gives."""
    name = f"{prefix}/data/{storage.key}"
    try:
        size = archive.getinfo(name).file_size
    except KeyError:
        raise ModelError(f"{path}: storage {shown(storage.key)} has no member {shown(name)}") from None
    stored_dtype = np.dtype(storage.type.stored_dtype)
    expected_size = storage.numel * stored_dtype.itemsize
    if size != expected_size:
        raise ModelError(f"{path}: member {shown(name)} holds {size} bytes, not the {expected_size} of the "
                         f"{storage.numel} {storage.type.name} elements its pickle gives")
    order = "<" if byteorder == "little" else ">"
    elements = np.frombuffer(_read_member(path, archive, name), stored_dtype.newbyteorder(order))
    elements = elements.astype(stored_dtype, copy=False)
    return elements if storage.type.convert is None else storage.type.convert(elements)
