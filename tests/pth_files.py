"""torch.save archives written without torch, for tests: a protocol-2 pickle whose tensors name torch's globals and
their storages by persistent id, one member per storage (`Archive`)."""

import collections
import io
import pickle
import zipfile

import numpy as np


class Global:
    """A global by dotted name, pickled as a GLOBAL opcode without importing it (torch need not be installed)."""

    def __init__(self, dotted_name):
        self.module, _, self.name = dotted_name.rpartition(".")

    def __call__(self):  # pickle reduces only to callables
        raise AssertionError("never called")


class Call:
    """Pickles as `function(*args)`, `function` a dotted name."""

    def __init__(self, function, *args):
        self.function, self.args = Global(function), args

    def __reduce__(self):
        return self.function, self.args


class Opcodes(bytes):
    """Pickle opcodes written as they are."""


class Storage:
    """A storage's bytes, pickled as its persistent id ("storage", type, key, location, number of elements)."""

    def __init__(self, storage_type, key, data, numel):
        self.data = data
        self.pid = ("storage", Global(f"torch.{storage_type}"), key, "cpu", numel)


class Pickler(pickle._Pickler):
    """The Python pickler (its dispatch table can take our types), with storages as persistent ids."""

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[Global] = lambda self, obj: self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    dispatch[Opcodes] = lambda self, obj: self.write(obj)

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def pickled(obj):
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def deep_list(depth):
    """A list in a list ... `depth` deep."""
    return Opcodes(pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1))


STORAGE_TYPES = {np.dtype(dtype): name for dtype, name in [
    (np.float32, "FloatStorage"), (np.float64, "DoubleStorage"), (np.float16, "HalfStorage"),
    (np.int64, "LongStorage"), (np.int32, "IntStorage"), (np.uint8, "ByteStorage"), (np.bool_, "BoolStorage"),
]}


def view(storage, offset, size, stride, rebuild="torch._utils._rebuild_tensor_v2"):
    """A tensor of `storage`, as torch pickles it."""
    return Call(rebuild, storage, offset, tuple(size), tuple(stride), False, Call("collections.OrderedDict"))


class Archive:
    """A .pth file in the making: `tensor` and `storage` make what to put in the object `write` pickles."""

    def __init__(self):
        self.storages = []

    def storage(self, array, storage_type=None, byteorder="<"):
        array = np.ascontiguousarray(array).ravel()
        data = array.astype(array.dtype.newbyteorder(byteorder)).tobytes()
        storage = Storage(storage_type or STORAGE_TYPES[array.dtype], str(len(self.storages)), data, array.size)
        self.storages.append(storage)
        return storage

    def tensor(self, array, storage_type=None):
        """A contiguous tensor holding `array`."""
        array = np.asarray(array)
        strides = [step // array.itemsize for step in array.strides]
        return view(self.storage(array, storage_type), 0, array.shape, strides)

    def write(self, path, obj, skip=(), byteorder="little", members=None):
        """`obj` pickled into a torch.save archive at `path` (`obj` an `Opcodes`: that pickle), without the storage
        members whose keys are in `skip`, with `members` added."""
        with zipfile.ZipFile(path, "w") as archive:  # members stored, as torch writes them
            archive.writestr("archive/data.pkl", obj if isinstance(obj, Opcodes) else pickled(obj))
            archive.writestr("archive/byteorder", byteorder)
            for storage in self.storages:
                if storage.pid[2] not in skip:
                    archive.writestr(f"archive/data/{storage.pid[2]}", storage.data)
            archive.writestr("archive/version", "3\n")
            for name, data in (members or {}).items():
                archive.writestr(name, data)
        return str(path)


def write_state_dict(path, state):
    """`state` ({key: array}) written at `path` as `torch.save(state_dict, path)` writes it."""
    archive = Archive()
    return archive.write(path, collections.OrderedDict((key, archive.tensor(value)) for key, value in state.items()))
