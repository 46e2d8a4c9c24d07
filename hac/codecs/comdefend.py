"""ComDefend: a binary-code compression CNN trained as an adversarial purifier.

X. Jia, X. Wei, X. Cao, H. Foroosh: "ComDefend: An Efficient Image Compression
Model to Defend Adversarial Examples", CVPR 2019 (arXiv:1811.12673); official code
and CIFAR-10 weights: github.com/jiaxiaojunQAQ/Comdefend.

Two fully convolutional networks of nine 3x3 convolutions each (stride 1, 'same'
padding, so the code has the image's full resolution):

* ComCNN: ``x - 0.5``, channels 3→16→32→64→128→256→128→64→32→12, ELU after every
  convolution but the last, giving a real-valued 12-channel code;
* the code is binarised: ``b = sigmoid(code - noise) > 0.5`` (training adds
  ``noise ~ N(0, 20²)`` and keeps the soft sigmoid, which pushes the code away from
  0 so that thresholding loses little);
* RecCNN: channels 12→32→64→128→256→128→64→32→16→3, ELU between, sigmoid at the end.

**Rate.** The code is 12 binary channels at full resolution: 12 bits per pixel,
before any entropy coding (the paper speaks of compressing 24-bit RGB to a 12-bit
map). hac reports exactly that as the codec's ``bpp`` (a fixed-length code; with
tiling, the padded pixels are counted too). An entropy coder would spend fewer
bits; ComDefend's point is purification, not rate.

**Tiling.** The official weights were trained on 32x32 CIFAR-10 images, and the
official ImageNet pipeline cuts images into 32x32 patches, codes each on its own and
stitches the results. ``tile=32`` (the default) does the same: the image is
replicate-padded to a multiple of 32, all tiles of the batch go through the
networks as one big batch, and the result is stitched and cropped back.
``tile=0`` runs the networks on the whole image instead.

**Noise at inference.** ``noise=0`` (the default) makes the codec deterministic.
With ``noise > 0`` a fresh ``N(0, noise²)`` draw is subtracted from the code before
thresholding on every call and the codec is ``stochastic`` (the EOT threat model
averages over draws). The official inference scripts leave the noise variable at
its initial value, std 1.0, so ``noise=1`` reproduces them.

**Weights.** The codec only loads safetensors: ``comdefend-official`` (the official
weights, converted once by ``python -m hac convert comdefend``, see
:mod:`hac.codecs.comdefend_conversion`) or ``hac-comdefend-cifar10`` (trained by ``hac.training
--architecture comdefend``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import hub
from ..hub import ConvertedWeightSpec, WeightSpec
from .base import Codec, CodecOutput, check_image_batch, pad_to_multiple
from .factory import register_codec
from .info import CodecInfo

__all__ = [
    "COM_CHANNELS",
    "REC_CHANNELS",
    "CODE_CHANNELS",
    "BITS_PER_PIXEL",
    "TRAINING_NOISE",
    "DEFAULT_LAMBDA",
    "DEFAULT_TILE",
    "ComCNN",
    "RecCNN",
    "ComDefend",
    "ComDefendCodec",
    "OFFICIAL_ENC",
    "OFFICIAL_DEC",
    "OFFICIAL",
    "HAC_CIFAR10",
    "PRETRAINED",
    "INFO",
    "load_comdefend",
    "training_loss",
    "to_tiles",
    "from_tiles",
]

logger = logging.getLogger(__name__)

COM_CHANNELS = (3, 16, 32, 64, 128, 256, 128, 64, 32, 12)
REC_CHANNELS = (12, 32, 64, 128, 256, 128, 64, 32, 16, 3)
CODE_CHANNELS = 12
BITS_PER_PIXEL = float(CODE_CHANNELS)  # one bit per code channel and pixel, no entropy coding
TRAINING_NOISE = 20.0  # std of the Gaussian subtracted from the code in training (official value)
DEFAULT_LAMBDA = 1e-4  # weight of the code penalty in training (official value, "enc20_0.0001")
DEFAULT_TILE = 32
MAX_TILES_PER_PASS = 1024  # bounds the memory of one no-grad pass (1024 tiles ~ 1 GB at the widest layer)

PAPER = (
    "X. Jia, X. Wei, X. Cao, H. Foroosh: ComDefend: An Efficient Image Compression Model to Defend "
    "Adversarial Examples, CVPR 2019 (arXiv:1811.12673)"
)
_OFFICIAL_COMMIT = "91273edffc2385dffce993cb5fed6d13718942d3"
_OFFICIAL_RAW = f"https://raw.githubusercontent.com/jiaxiaojunQAQ/Comdefend/{_OFFICIAL_COMMIT}/checkpoints"


# --------------------------------------------------------------------------- weights

OFFICIAL_ENC = WeightSpec(
    name="comdefend-official-enc",
    filename="enc20_0.0001.npy",
    url=f"{_OFFICIAL_RAW}/enc20_0.0001.npy",
    sha256="14ad4726c517982d2c74b809bf1fd623f8abbe887d15e8b24f3a5dee2bb504d5",
    license="unspecified (the official repository has no licence file)",
    paper=PAPER,
    description="official ComDefend ComCNN, CIFAR-10 (numpy pickle: convert with `python -m hac convert comdefend`)",
)
OFFICIAL_DEC = WeightSpec(
    name="comdefend-official-dec",
    filename="dec20_0.0001.npy",
    url=f"{_OFFICIAL_RAW}/dec20_0.0001.npy",
    sha256="d2df77581e5913c126a30c943acb29bbada6beb942a189652c4f726d7a98ecf7",
    license=OFFICIAL_ENC.license,
    paper=PAPER,
    description="official ComDefend RecCNN, CIFAR-10 (numpy pickle: convert with `python -m hac convert comdefend`)",
)
OFFICIAL = ConvertedWeightSpec(
    name="comdefend-official",
    filename="comdefend-official.safetensors",
    license=OFFICIAL_ENC.license,
    paper=PAPER,
    description="official ComDefend CIFAR-10 weights (noise 20, lambda 1e-4), converted to safetensors",
    sources=(OFFICIAL_ENC, OFFICIAL_DEC),
    convert_command="python -m hac convert comdefend",
)
HAC_CIFAR10 = hub.own_weight_spec(
    "hac-comdefend-cifar10",
    "hac-comdefend-cifar10",
    license="MIT",
    paper=f"hac (this project), architecture of {PAPER}",
    description="ComDefend trained by hac.training on CIFAR-10 (python -m hac train --architecture comdefend)",
)
# `pretrained=` values of the codec -> weights.
PRETRAINED: dict[str, WeightSpec] = {"official": OFFICIAL, "hac": HAC_CIFAR10}
INFO = CodecInfo(
    description=f"ComDefend; {PAPER}",
    weights={None: OFFICIAL},
    weight_variants={"pretrained": {name: {None: spec} for name, spec in PRETRAINED.items()}},
)


# --------------------------------------------------------------------------- networks


class _ConvStack(nn.Module):
    """Nine 3x3 'same' convolutions with ELU between (the last one has no activation)."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, 3, padding=1) for cin, cout in zip(channels, channels[1:]))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.convs) - 1
        for index, conv in enumerate(self.convs):
            x = conv(x)
            if index < last:
                x = F.elu(x)
        return x


class ComCNN(_ConvStack):
    """The compression network. Shape: (N, 3, H, W) in [0, 1] -> real-valued code (N, 12, H, W)."""

    def __init__(self) -> None:
        super().__init__(COM_CHANNELS)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x - 0.5)


class RecCNN(_ConvStack):
    """The reconstruction network. Shape: code (N, 12, H, W) in [0, 1] -> image (N, 3, H, W) in (0, 1)."""

    def __init__(self) -> None:
        super().__init__(REC_CHANNELS)

    def forward(self, code: Tensor) -> Tensor:
        return torch.sigmoid(super().forward(code))


class ComDefend(nn.Module):
    """ComCNN + binarisation + RecCNN (state dict keys ``com.convs.<i>.*``, ``rec.convs.<i>.*``).

    ``compress``/``decompress``/``update`` follow CompressAI's interface so that
    hac's training evaluation can code images with it: the "bitstream" of an image
    is its binary code packed 8 bits to a byte (12 bits per pixel).
    """

    def __init__(self) -> None:
        super().__init__()
        self.com = ComCNN()
        self.rec = RecCNN()

    @staticmethod
    def soft_code(code: Tensor, noise: float = 0.0) -> Tensor:
        """``sigmoid(code - e)``, ``e ~ N(0, noise²)`` drawn from torch's global generator."""
        if noise > 0:
            code = code - noise * torch.randn_like(code)
        return torch.sigmoid(code)

    @classmethod
    def binarize(cls, code: Tensor, noise: float = 0.0, straight_through: bool = False) -> Tensor:
        """The binary code ``soft_code(code, noise) > 0.5`` as 0/1 floats.

        With ``straight_through`` the value is the same, but the gradient is the
        sigmoid's (the threshold's own gradient is zero almost everywhere).
        """
        soft = cls.soft_code(code, noise)
        hard = (soft > 0.5).to(soft.dtype)
        return soft + (hard - soft).detach() if straight_through else hard

    def reconstruct(self, x: Tensor, noise: float = 0.0, straight_through: bool = False) -> Tensor:
        """Binarised round trip of ``x`` (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in (0, 1)."""
        return self.rec(self.binarize(self.com(x), noise, straight_through))

    def forward(self, x: Tensor, noise: float = TRAINING_NOISE) -> dict[str, Tensor]:
        """The training pass: soft noisy code, no threshold. Returns ``x_hat`` and ``code`` (the soft code)."""
        code = self.soft_code(self.com(x), noise)
        return {"x_hat": self.rec(code), "code": code}

    # CompressAI-style coding (used by hac.training.evaluate_model and export).
    def update(self, force: bool = False) -> bool:
        """Nothing to update: the code is fixed-length. Returns ``False``."""
        return False

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """Per image, the 12 x H x W binary code packed into bytes (``np.packbits``)."""
        bits = self.binarize(self.com(x)).to(torch.uint8).cpu().numpy()
        return {"strings": [[np.packbits(b).tobytes() for b in bits]], "shape": tuple(x.shape[-2:])}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict[str, Tensor]:
        device = next(self.parameters()).device
        count = CODE_CHANNELS * shape[0] * shape[1]
        codes = [np.unpackbits(np.frombuffer(s, dtype=np.uint8), count=count) for s in strings[0]]
        code = torch.from_numpy(np.stack(codes)).view(-1, CODE_CHANNELS, *shape).to(device, torch.float32)
        return {"x_hat": self.rec(code)}


def training_loss(model: ComDefend, x: Tensor, lmbda: float = DEFAULT_LAMBDA, noise: float = TRAINING_NOISE) -> dict[str, Tensor]:
    """ComDefend's unified loss: reconstruction MSE plus a penalty on the code.

    ``loss = mean((RecCNN(b) - x)²) + lmbda * mean(b²)`` with the soft noisy code
    ``b = sigmoid(ComCNN(x) - e)``, ``e ~ N(0, noise²)``. The paper writes the
    penalty as λ·||ComCNN(x)||² (it favours zeros in the code); the authors'
    training code takes it on the sigmoid outputs, as here, with noise 20 and
    λ = 1e-4 for the published CIFAR-10 weights.

    Returns:
        ``loss``, ``mse``, ``code`` (the mean squared soft code) and ``bpp`` (the fixed 12).
    """
    out = model(x, noise=noise)
    mse = F.mse_loss(out["x_hat"], x)
    penalty = out["code"].pow(2).mean()
    return {"loss": mse + lmbda * penalty, "mse": mse, "code": penalty, "bpp": mse.new_tensor(BITS_PER_PIXEL)}


def load_comdefend(state: Mapping[str, Tensor], source: str = "state dict") -> ComDefend:
    """A :class:`ComDefend` (eval mode) from a state dict with exactly its keys and shapes.

    Raises:
        ValueError: missing or unexpected keys, or wrong shapes (all named).
    """
    model = ComDefend()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(tensor.shape)})"
        for key, tensor in expected.items()
        if key in state and tuple(state[key].shape) != tuple(tensor.shape)
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source} does not hold ComDefend weights: missing keys: {', '.join(missing) or 'none'}; "
            f"unexpected keys: {', '.join(unexpected) or 'none'}; wrong shapes: {', '.join(wrong) or 'none'}"
        )
    model.load_state_dict({key: value.float() for key, value in state.items()})
    return model.eval()


# --------------------------------------------------------------------------- tiling


def to_tiles(x: Tensor, tile: int) -> tuple[Tensor, tuple[int, int, int, int, int]]:
    """Cut a replicate-padded batch into ``tile`` x ``tile`` tiles.

    Returns:
        tiles (N * rows * cols, C, tile, tile), image by image, each in raster order,
        and the layout ``(N, padded H, padded W, H, W)`` that :func:`from_tiles` needs.
    """
    padded, (height, width) = pad_to_multiple(x, tile)
    n, c, hp, wp = padded.shape
    tiles = padded.view(n, c, hp // tile, tile, wp // tile, tile).permute(0, 2, 4, 1, 3, 5)
    return tiles.reshape(-1, c, tile, tile), (n, hp, wp, height, width)


def from_tiles(tiles: Tensor, layout: tuple[int, int, int, int, int]) -> Tensor:
    """Stitch :func:`to_tiles` output (possibly with another channel count) back and crop."""
    n, hp, wp, height, width = layout
    tile, c = tiles.shape[-1], tiles.shape[1]
    grid = tiles.view(n, hp // tile, wp // tile, c, tile, tile).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(n, c, hp, wp)[..., :height, :width]


# --------------------------------------------------------------------------- codec


def _check_tile(tile: object) -> int:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0:
        raise ValueError(f"comdefend tile must be 0 (whole image) or a positive tile side (32 as in the paper), got {tile!r}")
    return tile


def _check_noise(noise: object) -> float:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < float("inf"):
        raise ValueError(f"comdefend noise must be a finite standard deviation >= 0 (0: deterministic), got {noise!r}")
    return float(noise)


@register_codec("comdefend", info=INFO)
class ComDefendCodec(Codec):
    """ComDefend (Jia et al., CVPR 2019) as a hac codec.

    Args:
        pretrained: ``"official"`` (the authors' CIFAR-10 weights, converted by
            ``python -m hac convert comdefend``) or ``"hac"`` (hac's own,
            ``hac/hub/shipped/hac-comdefend-cifar10.safetensors``).
        weights: explicit local ``.safetensors`` file instead (numpy pickles are refused).
        noise: std of the Gaussian subtracted from the code before thresholding
            at inference; 0 (default) is deterministic, > 0 makes the codec stochastic.
        tile: 32 (default, as the official pipeline): code 32x32 tiles separately;
            0: the whole image at once.

    Shape:
        (N, 3, H, W) in [0, 1], any H and W -> x_hat (N, 3, H, W) in (0, 1) and
        bpp (N,): 12 bits per (padded) pixel, the size of the binary code without
        entropy coding.
    """

    pass_cost = 2.0  # two small convolutional nets on 32x32 tiles (estimated, not timed)

    def __init__(
        self, pretrained: str = "official", weights: str | Path | None = None, noise: float = 0.0, tile: int = DEFAULT_TILE
    ) -> None:
        super().__init__()
        if pretrained not in PRETRAINED:
            raise ValueError(f"comdefend pretrained must be one of {', '.join(PRETRAINED)}, got {pretrained!r}")
        self.noise = _check_noise(noise)
        self.tile = _check_tile(tile)
        self.stochastic = self.noise > 0
        spec = PRETRAINED[pretrained]
        if weights is not None and Path(weights).suffix.lower() in (".npy", ".npz"):
            raise ValueError(
                f"{weights} is a numpy pickle; hac never loads those in a codec. Convert it once with "
                f"`python -m hac convert comdefend --enc ENC.npy --dec DEC.npy --out FILE.safetensors` "
                f"and pass the .safetensors file"
            )
        self.model = load_comdefend(hub.load_weights(spec, weights), f"the {spec.name} weights")
        self.weight_spec = spec
        self.params = {}
        if pretrained != "official":
            self.params["pretrained"] = pretrained
        if weights is not None:
            self.params["weights"] = str(weights)
        if self.noise:
            self.params["noise"] = self.noise
        if self.tile != DEFAULT_TILE:
            self.params["tile"] = self.tile

    def bits_per_pixel(self, height: int, width: int) -> float:
        """12 bits per coded pixel, per pixel of the ``height`` x ``width`` input (padding included)."""
        if not self.tile:
            return BITS_PER_PIXEL
        coded = (-(-height // self.tile) * self.tile) * (-(-width // self.tile) * self.tile)
        return BITS_PER_PIXEL * coded / (height * width)

    def _run(self, x: Tensor, straight_through: bool) -> Tensor:
        x = x.clamp(0, 1)
        if not self.tile:
            return self.model.reconstruct(x, self.noise, straight_through)
        tiles, layout = to_tiles(x, self.tile)
        if straight_through or tiles.shape[0] <= MAX_TILES_PER_PASS:
            out = self.model.reconstruct(tiles, self.noise, straight_through)
        else:
            out = torch.cat([self.model.reconstruct(chunk, self.noise) for chunk in tiles.split(MAX_TILES_PER_PASS)])
        return from_tiles(out, layout)

    def forward(self, x: Tensor) -> CodecOutput:
        """Binarised round trip of ``x`` (N, 3, H, W) in [0, 1]; returns x_hat and bpp (N,)."""
        check_image_batch(x)
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            x_hat = self._run(x.to(dtype), straight_through=False)
        bpp = torch.full((x.shape[0],), self.bits_per_pixel(*x.shape[-2:]), device=x.device)
        return CodecOutput(x_hat.to(x.dtype).contiguous(), bpp)

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable ``forward(x).x_hat``: straight-through binarisation.

        The forward value is the hard-thresholded code's reconstruction (equal to
        ``forward`` for ``noise=0``; a new noise draw otherwise); the gradient
        passes through the sigmoid before the threshold.

        Shape:
            x (N, 3, H, W) in [0, 1] -> x_hat (N, 3, H, W) in (0, 1); gradients flow to x.
        """
        check_image_batch(x)
        return self._run(x, straight_through=True)


hub.register_weights([OFFICIAL_ENC, OFFICIAL_DEC, OFFICIAL, HAC_CIFAR10])
