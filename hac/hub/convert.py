"""One-time conversion of published weights in unsafe formats into safetensors.

Codecs only ever load safetensors (or weights-only torch files, see :mod:`hac.hub`);
weights published in another format are converted once, here, on a machine the user
trusts, and the converted file is what hac loads from then on.

ComDefend (:func:`convert_comdefend`)
-------------------------------------
The official weights (``enc20_0.0001.npy`` for ComCNN, ``dec20_0.0001.npy`` for
RecCNN) are numpy archives (a zip despite the ``.npy`` suffix) holding one member,
``w.npy``: an *object* array of 18 float32 arrays, nine 3x3 convolution kernels in
TensorFlow's HWIO layout, each followed by its bias. ``np.load(allow_pickle=True)``
would unpickle that member with Python's unrestricted unpickler, and a pickle can
run arbitrary code *while it loads*, so checking the result afterwards would come
too late. :func:`read_weight_list` therefore does the unpickling itself with an
unpickler that resolves only the four globals a numpy object array of plain arrays
needs (``numpy.ndarray``, ``numpy.dtype``, numpy's ``_reconstruct`` and
``_codecs.encode``) and refuses anything else; then it checks that the result is
exactly an object array of 18 float arrays of the expected shapes. What remains
possible with a hostile file is a ``MemoryError`` (a huge declared array), not code
execution. The archive member's size is capped before it is read.
"""

from __future__ import annotations

import io
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.files import atomic_path
from .loading import sha256_of
from .specs import UnsafeWeightsError

__all__ = [
    "COMDEFEND_FORMAT",
    "comdefend_layer_shapes",
    "read_weight_list",
    "comdefend_state_dict",
    "convert_comdefend",
]

logger = logging.getLogger(__name__)

COMDEFEND_FORMAT = "hac-comdefend/1"
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


def comdefend_layer_shapes(network: str) -> list[tuple[int, ...]]:
    """The 18 shapes of the official ``network`` file ("com" or "rec"): HWIO kernel, bias, ..."""
    from ..codecs.comdefend import COM_CHANNELS, REC_CHANNELS

    channels = {"com": COM_CHANNELS, "rec": REC_CHANNELS}[network]
    shapes: list[tuple[int, ...]] = []
    for cin, cout in zip(channels, channels[1:]):
        shapes += [(3, 3, cin, cout), (cout,)]
    return shapes


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


def comdefend_state_dict(com: Sequence[np.ndarray], rec: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """Official HWIO kernel/bias lists -> the state dict of :class:`hac.codecs.comdefend.ComDefend` (OIHW)."""
    state = {}
    for prefix, arrays in (("com", com), ("rec", rec)):
        for layer in range(len(arrays) // 2):
            kernel, bias = arrays[2 * layer], arrays[2 * layer + 1]
            # TF conv2d and torch conv2d are both cross-correlations: only the layout changes.
            state[f"{prefix}.convs.{layer}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            state[f"{prefix}.convs.{layer}.bias"] = torch.from_numpy(bias.copy())
    return state


def convert_comdefend(enc: str | Path, dec: str | Path, out: str | Path) -> Path:
    """Convert the official ComDefend weights (ComCNN ``enc``, RecCNN ``dec``) to safetensors.

    The result loads with no missing or unexpected keys into
    :class:`hac.codecs.comdefend.ComDefend`; its metadata records the format and the
    sha256 of both sources (a source whose hash is not the published one is
    converted too, with a warning: e.g. weights trained with the authors' code).

    Returns:
        The path written (atomically).
    """
    from safetensors.torch import save_file

    from ..codecs.comdefend import OFFICIAL_DEC, OFFICIAL_ENC, load_comdefend

    enc, dec, out = Path(enc), Path(dec), Path(out)
    com = read_weight_list(enc, comdefend_layer_shapes("com"))
    rec = read_weight_list(dec, comdefend_layer_shapes("rec"))
    state = comdefend_state_dict(com, rec)
    load_comdefend(state, f"the conversion of {enc} and {dec}")  # exact keys and shapes
    digests = {"enc": sha256_of(enc), "dec": sha256_of(dec)}
    for (role, digest), spec in zip(digests.items(), (OFFICIAL_ENC, OFFICIAL_DEC)):
        if digest != spec.sha256:
            logger.warning("%s (%s) is not the published %s (sha256 %s...); converting it anyway", role, spec.filename, spec.name, digest[:12])
    metadata = {
        "format": COMDEFEND_FORMAT,
        "layout": "OIHW",
        "enc_file": enc.name,
        "enc_sha256": digests["enc"],
        "dec_file": dec.name,
        "dec_sha256": digests["dec"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    logger.info("converted %s + %s -> %s", enc, dec, out)
    return out
