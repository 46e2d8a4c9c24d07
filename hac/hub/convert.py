"""Reading published weights in unsafe formats without running code from them.

Codecs only ever load safetensors (or weights-only torch files, see :mod:`hac.hub`);
weights published in another format are converted once, on a machine the user trusts,
and the converted file is what hac loads from then on. The format-specific converters
live beside their codecs (ComDefend's: :mod:`hac.codecs.comdefend_conversion`); this
module gives them the safe reader.

Lists of arrays in numpy files (:func:`read_weight_list`)
--------------------------------------------------------
Such a file (a zip despite its ``.npy`` suffix, or a plain ``.npy``) holds one member:
an *object* array of float arrays. ``np.load(allow_pickle=True)`` would unpickle that
member with Python's unrestricted unpickler, and a pickle can run arbitrary code
*while it loads*, so checking the result afterwards would come too late.
:func:`read_weight_list` therefore does the unpickling itself with an unpickler that
resolves only the four globals a numpy object array of plain arrays needs
(``numpy.ndarray``, ``numpy.dtype``, numpy's ``_reconstruct`` and ``_codecs.encode``)
and refuses anything else; then it checks that the result is exactly an object array
of float arrays of the expected shapes. What remains possible with a hostile file is
a ``MemoryError`` (a huge declared array), not code execution. The archive member's
size is capped before it is read.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from .specs import UnsafeWeightsError

__all__ = ["read_weight_list", "MAX_MEMBER_BYTES"]

MAX_MEMBER_BYTES = 64 << 20  # the official members are 4.7 MB each
# The only globals a pickled numpy object array of numeric arrays refers to.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),  # numpy 1.x pickles
    ("numpy._core.multiarray", "_reconstruct"),  # numpy 2.x pickles
    ("_codecs", "encode"),  # protocol-2 bytes
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED_GLOBALS`; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafeWeightsError(
                f"the pickle refers to {module}.{name}, which a numpy array of weights never needs; "
                "refusing to load it (the file is not a plain weights file, or it is hostile)"
            )
        if name == "_reconstruct":  # numpy 1.x and 2.x name its module differently
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return super().find_class(module, name)


def _npy_member(path: Path) -> bytes:
    """The bytes of the single ``.npy`` array in ``path`` (an ``.npz`` archive or a plain ``.npy``)."""
    if not zipfile.is_zipfile(path):
        if path.stat().st_size > MAX_MEMBER_BYTES:
            raise ValueError(f"{path} is {path.stat().st_size} bytes, more than weights of this kind can be")
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) != 1 or not members[0].filename.endswith(".npy"):
            names = ", ".join(member.filename for member in members) or "nothing"
            raise ValueError(f"{path} should hold exactly one array (w.npy); it holds {names}")
        if members[0].file_size > MAX_MEMBER_BYTES:
            raise ValueError(f"{path}: {members[0].filename} unpacks to {members[0].file_size} bytes, too many for these weights")
        return archive.read(members[0])


def _read_npy(stream: io.BytesIO, source: Path) -> object:
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(stream)
        reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran_order, dtype = reader(stream)
    except ValueError as error:
        raise ValueError(f"{source} is not a numpy array file: {error}") from error
    if not dtype.hasobject:
        # A plain numeric array needs no pickle at all (it is refused later for not being a list of arrays).
        stream.seek(0)
        return npy_format.read_array(stream, allow_pickle=False)
    try:
        return _NumpyOnlyUnpickler(stream, encoding="latin1").load()
    except UnsafeWeightsError as error:
        raise UnsafeWeightsError(f"{source}: {error}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{source} holds a malformed pickle: {type(error).__name__}: {error}") from error


def read_weight_list(path: str | Path, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """Read an official list-of-arrays weights file without running code from it.

    Args:
        path: ``.npy`` (or ``.npz``) file whose array is an object array of arrays.
        shapes: the exact shape of each array, in order.

    Returns:
        The arrays, as float32.

    Raises:
        FileNotFoundError: no such file.
        UnsafeWeightsError: the pickle refers to anything but numpy arrays.
        ValueError: the content is not exactly ``len(shapes)`` float arrays of ``shapes``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    obj = _read_npy(io.BytesIO(_npy_member(path)), path)
    if type(obj) is not np.ndarray or obj.dtype != object or obj.shape != (len(shapes),):
        what = f"a {obj.dtype} array of shape {obj.shape}" if isinstance(obj, np.ndarray) else type(obj).__name__
        raise ValueError(f"{path} should hold an object array of {len(shapes)} weight arrays; it holds {what}")
    arrays = []
    for index, (item, shape) in enumerate(zip(obj, shapes)):
        if type(item) is not np.ndarray or item.dtype.kind != "f":
            what = f"{item.dtype} array" if isinstance(item, np.ndarray) else type(item).__name__
            raise ValueError(f"{path}: entry {index} should be a float array of shape {shape}; it is a {what}")
        if item.shape != tuple(shape):
            raise ValueError(
                f"{path}: entry {index} has shape {item.shape}, expected {tuple(shape)} "
                "(is this the right network's file? enc* is ComCNN, dec* is RecCNN)"
            )
        arrays.append(np.ascontiguousarray(item, dtype=np.float32))
    return arrays
