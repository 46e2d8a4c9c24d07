"""Hostile use of the CLI and of the running app (issue 26), one table per kind of abuse.

Every row states the exact outcome: the command's exit status and its one ``error:`` line,
or the app's ``gradio.Error`` text. The app half runs a real server in this process and
calls it through ``gradio_client``, as a stranger on the internet would.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from hac.app import RunFiles, build_demo, launch_kwargs
from hac.app.batch import SAMPLE_DATASET
from hac.app.limits import AppLimits
from hac.app.serving import free_port, start_app, stop, wait_until_served
from hac.cli import main

pytestmark = pytest.mark.slow

TIME_LIMIT = 6
"""The test server's wall-clock limit per request, in seconds (the app's default is 300)."""


# --------------------------------------------------------------------------- hostile files


def _photo(size=(96, 64)) -> Image.Image:
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    return Image.fromarray(np.stack([x * 255 // size[0], y * 255 // size[1], (x + y) % 256], -1).astype(np.uint8))


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _animated() -> bytes:
    frames = [_photo().convert("P"), _photo().rotate(90).convert("P")]
    return _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    return _encoded(_photo(), "JPEG", exif=exif.tobytes())


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _evil_torch() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"weight": _Evil()}, buffer)
    return buffer.getvalue()


FILES = {  # name -> (file name, bytes)
    "empty": ("empty.png", lambda: b""),
    "fake": ("fake.png", lambda: b"this is a text file, not a picture"),
    "corrupt": ("corrupt.png", lambda: _encoded(_photo(), "PNG")[:60]),
    "bomb": ("bomb.png", lambda: _png_header_only(60_000, 60_000)),
    "16-bit": ("deep.png", lambda: _encoded(Image.fromarray((np.arange(96 * 64).reshape(64, 96) * 10).astype(np.uint16)), "PNG")),
    "cmyk": ("cmyk.jpg", lambda: _encoded(_photo().convert("CMYK"), "JPEG")),
    "rgba": ("rgba.png", lambda: _encoded(_photo().convert("RGBA"), "PNG")),
    "palette": ("palette.png", lambda: _encoded(_photo().convert("P"), "PNG")),
    "animated": ("animated.gif", _animated),
    "exif": ("exif.jpg", _exif_rotated),
    "1x1": ("dot.png", lambda: _encoded(Image.new("RGB", (1, 1), "red"), "PNG")),
    "panorama": ("panorama.png", lambda: _encoded(_photo((4000, 100)), "PNG")),
    "evil-pickle": ("evil.pt", _evil_torch),
    "pickle-as-safetensors": ("evil.safetensors", _evil_torch),
    "text-as-weights": ("notes.pt", lambda: b"root:x:0:0:root:/root:/bin/bash\n"),
}


def _file(tmp_path: Path, kind: str) -> Path:
    name, content = FILES[kind]
    path = tmp_path / name
    path.write_bytes(content())
    return path


IMAGE_ERRORS = [  # kind, what the one error line (CLI) and the gr.Error (app) must contain
    ("empty", "empty.png is empty", "empty.png is not an image file this app can read"),
    ("fake", "fake.png is not an image file", "fake.png is not an image file this app can read"),
    ("corrupt", "corrupt.png is corrupt or truncated", "corrupt.png is corrupt or truncated"),
    ("bomb", "bomb.png is too large", "bomb.png is too large: Image size (3600000000 pixels) exceeds limit"),
]
IMAGES_THAT_WORK = ["16-bit", "cmyk", "rgba", "palette", "animated", "exif", "1x1", "panorama"]


# --------------------------------------------------------------------------- the CLI


def _cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and stderr of ``python -m hac ARGV``."""
    try:
        code = main(list(argv))
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    return code, capsys.readouterr().err


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("kind,message,_", IMAGE_ERRORS)
def test_cli_refuses_bad_images_in_one_line(tmp_path, capsys, kind, message, _):
    code, err = _cli(capsys, "purify", "--image", str(_file(tmp_path, kind)), "--codec", "jpeg:q=50")
    assert code == 2 and message in _one_error(err)


@pytest.mark.parametrize("kind", IMAGES_THAT_WORK)
def test_cli_reads_odd_images(tmp_path, capsys, kind):
    out = tmp_path / "out"
    code, err = _cli(capsys, "purify", "--image", str(_file(tmp_path, kind)), "--codec", "jpeg:q=50", "--out", str(out))
    assert code == 0, err
    assert Image.open(out / "purified.png").size == (224, 224)


BAD_SETTINGS = [  # (arguments after 'purify --image IMAGE', the one error line must contain)
    (["--codec", "jpeg:q=inf"], "parameter q in spec 'jpeg:q=inf': 'inf' is not a finite number"),
    (["--codec", "jpeg:q=nan"], "parameter q in spec 'jpeg:q=nan': 'nan' is not a finite number"),
    (["--codec", "webp:q=-inf"], "'-inf' is not a finite number"),
    (["--codec", "jpeg:q=1e999"], "'1e999' is not a finite number"),
    (["--codec", "jpeg:q=2.5"], "jpeg quality q must be an integer in [1, 95], got 2.5"),
    (["--codec", "hac-hyperprior:q=1,weights=/etc/passwd"], "/etc/passwd is not a readable torch checkpoint: it is neither "
                                                             "safetensors nor a torch checkpoint"),
    (["--codec", "jpeg:q=50", "--classifier-weights", "{pickle-as-safetensors}"],
     "evil.safetensors is not a safetensors file (Error while deserializing header: header too large); it is a zip archive"),
    (["--codec", "jpeg:q=50", "--classifier-weights", "{evil-pickle}"],
     "evil.pt: its pickle imports posix.system, and hac never unpickles arbitrary objects. Convert the checkpoint to "
     "safetensors on a trusted machine: `python -m hac convert`."),
    (["--codec", "hac-hyperprior:q=1,weights={text-as-weights}"], "notes.pt is not a readable torch checkpoint"),
    (["--codec", "jpeg:q=50", "--rounds", "x"], "argument --rounds: invalid int value: 'x'"),
]


@pytest.mark.parametrize("args,message", BAD_SETTINGS, ids=[" ".join(args) for args, _ in BAD_SETTINGS])
def test_cli_bad_settings_are_one_error_line(tmp_path, capsys, args, message):
    image = tmp_path / "photo.png"
    _photo().save(image)
    args = [arg.format(**{kind: _file(tmp_path, kind) for kind in FILES if "{" + kind + "}" in arg}) for arg in args]
    code, err = _cli(capsys, "purify", "--image", str(image), *args)
    assert code == 2
    line = err.strip().splitlines()[-1]  # argparse prints its usage first
    assert (line.startswith("error: ") or line.endswith(f"purify: error: {message}")) and message in line, err


@pytest.mark.parametrize("args,message", [
    (["--eps", "inf"], "'inf' is not a finite number"),
    (["--attack", "pgd:steps=2.5"], "steps must be a positive integer, got 2.5"),
    (["--attack", "pgd:eps=nan"], "parameter eps in spec 'pgd:eps=nan': 'nan' is not a finite number"),
])
def test_cli_attack_numbers(tmp_path, capsys, args, message):
    image = tmp_path / "photo.png"
    _photo().save(image)
    code, err = _cli(capsys, "attack", "--image", str(image), "--codec", "jpeg:q=50", *args)
    assert code == 2 and message in _one_error(err)


def test_cli_same_named_images_get_their_own_folders(tmp_path, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _photo().save(tmp_path / "a" / "photo.jpg")
    _photo().rotate(180).save(tmp_path / "b" / "photo.png")
    out = tmp_path / "out"
    code, err = _cli(capsys, "attack", "--image", str(tmp_path / "a" / "photo.jpg"), "--image", str(tmp_path / "b" / "photo.png"),
                     "--attack", "fgsm", "--threat", "oblivious", "--codec", "jpeg:q=50", "--out", str(out))
    assert code == 0, err
    rows = json.loads((out / "result.json").read_text())["threats"]["oblivious"]["per_image"]
    assert [row["folder"] for row in rows] == ["oblivious/001-photo", "oblivious/002-photo"]
    assert sorted(p.name for p in (out / "oblivious").iterdir()) == ["001-photo", "002-photo"]
    clean = [Image.open(out / row["folder"] / "clean.png").tobytes() for row in rows]
    assert clean[0] != clean[1]  # the second image did not overwrite the first


def _tiny_imagenet(folder: Path, photo_dir: Path, count: int = 2) -> Path:
    from hac.app.files import EXAMPLE_PHOTOS

    for name, (synset, _) in list(EXAMPLE_PHOTOS.items())[:count]:
        (folder / synset).mkdir(parents=True, exist_ok=True)
        Image.open(photo_dir / name).convert("RGB").resize((160, 120)).save(folder / synset / Path(name).with_suffix(".png").name)
    return folder


OUT_COMMANDS = {  # command -> its arguments besides --out
    "attack": lambda d: ["attack", "--image", str(d / "photo.png"), "--attack", "fgsm", "--threat", "oblivious", "--codec", "jpeg:q=50"],
    "purify": lambda d: ["purify", "--image", str(d / "photo.png"), "--codec", "jpeg:q=50"],
    "codec-attack": lambda d: ["codec-attack", "--data", str(d / "images"), "--codecs", "jpeg:q=50", "--steps", "1",
                               "--objective", "distortion", "--starts", "zero", "--crop", "32"],
    "rd": lambda d: ["rd", "--data", str(d / "images"), "--codecs", "jpeg:q=50"],
    "eval": lambda d: ["eval", "--preset", "smoke", "--data", str(d / "imagenet"), "--limit", "1", "--quiet", "--no-plots"],
}


@pytest.mark.parametrize("command", OUT_COMMANDS)
def test_cli_refuses_a_non_empty_out_unless_overwrite(tmp_path, capsys, photo_dir, command):
    _photo().save(tmp_path / "photo.png")
    (tmp_path / "images").mkdir()
    _photo().save(tmp_path / "images" / "one.png")
    _tiny_imagenet(tmp_path / "imagenet", photo_dir, 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = OUT_COMMANDS[command](tmp_path)
    code, err = _cli(capsys, *args, "--out", str(out))
    assert code == 2
    assert _one_error(err) == (f"error: --out {out} already holds files (notes.txt); give a new folder, "
                               "or pass --overwrite to write into it")
    code, err = _cli(capsys, *args, "--out", str(out), "--overwrite")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) > 1


def test_cli_audit_refuses_a_non_empty_out(tmp_path, capsys, photo_dir):
    data = _tiny_imagenet(tmp_path / "imagenet", photo_dir, 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = _cli(capsys, "audit", "--codec", "jpeg:q=50", "--data", str(data), "--images", "1", "--out", str(out))
    assert code == 2
    assert _one_error(err) == (f"error: --out {out} already holds files (notes.txt); give a new folder, "
                               "or pass --overwrite to write into it")


def test_cli_eval_continues_its_own_run(tmp_path, capsys, photo_dir):
    data = _tiny_imagenet(tmp_path / "imagenet", photo_dir, 1)
    args = ["eval", "--preset", "smoke", "--data", str(data), "--limit", "1", "--quiet", "--no-plots", "--out", str(tmp_path / "run")]
    assert _cli(capsys, *args)[0] == 0
    code, err = _cli(capsys, *args)  # a run folder (rows.jsonl) is continued, not refused
    assert code == 0, err


# --------------------------------------------------------------------------- the running app


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, photo_dir):
    root = tmp_path_factory.mktemp("data-root")
    _tiny_imagenet(root / "mini", photo_dir)
    outside = tmp_path_factory.mktemp("outside")
    _tiny_imagenet(root / "leaky", photo_dir)
    secret = outside / "secret.png"
    _photo().save(secret)
    (root / "leaky" / "n02123159" / "secret.png").symlink_to(secret)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HAC_DATA_ROOT", str(root))
        yield root


@pytest.fixture(scope="module")
def server(cache, data_root):
    demo = build_demo(cache, RunFiles(), limits=AppLimits(time_limit=TIME_LIMIT))
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), **launch_kwargs(quiet=True))
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server, verbose=False, download_files=True)


ATTACK = dict(classifier="efficientnet-lite0", attack="fgsm", eps_255=4, steps=1, threat="bpda", codec="jpeg", quality=25,
              chain="", rounds=1, seed=0)
LONG = dict(ATTACK, attack="pgd", steps=200, chain="jpeg:q=25", rounds=10)
"""Within the budget (201 steps x 10 passes) but far longer than the test server's time limit."""


def _attack_args(image: Path, **changes) -> list:
    return [handle_file(str(image)), *dict(ATTACK, **changes).values()]


def _app_error(call) -> str:
    with pytest.raises(AppError) as error:
        call()
    message = str(error.value)
    assert "/tmp" not in message and str(Path.home()) not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("kind,_,message", IMAGE_ERRORS)
def test_app_refuses_bad_images(client, tmp_path, kind, _, message):
    path = _file(tmp_path, kind)
    assert message in _app_error(lambda: client.predict(*_attack_args(path), api_name="/attack"))


@pytest.mark.parametrize("kind", IMAGES_THAT_WORK)
def test_app_reads_odd_images(client, tmp_path, kind):
    out = client.predict(*_attack_args(_file(tmp_path, kind)), api_name="/attack")
    assert Image.open(out[0]).size == (224, 224) and "Label attacked" in out[9]


HOSTILE_ATTACKS = [  # (settings changed, the gr.Error must contain)
    # issue row 2: the chain has a length limit
    (dict(chain="+".join(["jpeg:q=25"] * 100), rounds=10), "the chain has 100 codecs, the app runs at most 8"),
    (dict(rounds=11), "Purification rounds: Value 11 is greater than maximum value 10."),
    (dict(attack="pgd", steps=201), "Attack steps: Value 201 is greater than maximum value 200."),
    (dict(eps_255="abc"), "ε (L∞, in 1/255) must be a number, got 'abc'"),
    (dict(quality=2.5), "quality must be an integer in [1, 100], got 2.5"),
    # one budget: within every cap, over the work budget -> what to lower and the CLI command
    (dict(attack="pgd", steps=200, chain="+".join(["hac-hyperprior:q=1"] * 8), rounds=10),
     "This attack is too much work for this app: 1 image x 1 cell ((200 attack steps x restarts x EOT samples + 1) x "
     "240 codec passes) = 48,240 units, over its budget of 20,000 (about 23 min on one CPU core). Lower the codec "
     "chain's length or its rounds (learned codecs count for several passes), or run it on your own machine: "
     "`python -m hac attack --image IMAGE --classifier efficientnet-lite0 --attack 'pgd:eps=4/255,steps=200' --threat bpda "
     "--codec 'hac-hyperprior:q=1+hac-hyperprior:q=1+hac-hyperprior:q=1+hac-hyperprior:q=1+hac-hyperprior:q=1+"
     "hac-hyperprior:q=1+hac-hyperprior:q=1+hac-hyperprior:q=1' --rounds 10 --seed 0`"),
    # issue row 3: no server file can be named, whether it exists or not (no oracle, no home folder)
    (dict(chain="hac-hyperprior:q=1,weights=/etc/shadow"), "the app does not open server files, so hac-hyperprior takes no "
     "weights= here; pick the codec and quality by name (the command line accepts weights= for your own files)"),
    (dict(chain="hac-hyperprior:q=1,weights=/etc/nope"), "the app does not open server files, so hac-hyperprior takes no weights="),
    (dict(chain="hac-hyperprior:q=1,weights=~/.bashrc"), "the app does not open server files, so hac-hyperprior takes no weights="),
    (dict(chain="jpeg:q=25+comdefend:weights=/etc/passwd"), "so comdefend takes no weights="),
    # issue row 5: numbers
    (dict(chain="jpeg:q=inf"), "parameter q in spec 'jpeg:q=inf': 'inf' is not a finite number"),
    (dict(chain="jpeg:q=nan"), "parameter q in spec 'jpeg:q=nan': 'nan' is not a finite number"),
    (dict(seed="abc"), "Seed must be a number, got 'abc'"),
    (dict(seed=-1), "Seed: Value -1 is less than minimum value 0."),
    (dict(seed=1.5), "Seed must be a whole number, got 1.5"),
]


@pytest.mark.parametrize("changes,message", HOSTILE_ATTACKS, ids=[str(c)[:60] for c, _ in HOSTILE_ATTACKS])
def test_app_attack_refusals(client, photo_dir, changes, message):
    error = _app_error(lambda: client.predict(*_attack_args(photo_dir / "coffee.png", **changes), api_name="/attack"))
    assert message in error


def test_app_weights_refusal_is_the_same_for_any_path(client, photo_dir):
    """Existing, missing and home-folder files give one answer: nothing to learn about the server."""
    answers = {_app_error(lambda: client.predict(*_attack_args(photo_dir / "coffee.png", chain=f"hac-hyperprior:q=1,weights={path}"),
                                                 api_name="/attack"))
               for path in ("/etc/shadow", "/etc/nope", "~/.bashrc", "weights/hac-hyperprior-q2.safetensors")}
    assert len(answers) == 1


BATCH = dict(dataset=SAMPLE_DATASET, preset="smoke", limit=1, attacks="fgsm", eps="4", codecs="jpeg:q=50", rounds="1",
             threats=["oblivious"], compare_to="")
HOSTILE_BATCHES = [
    # issue row 1, as reported: one field over its cap is refused before any work
    (dict(attacks="pgd:steps=100000", codecs="jpeg:q=50"),
     "attacks: steps=100000 in pgd:eps=0.01568627450980392,steps=100000 is over the app's cap of 200; lower it, or run it "
     "with the command line (`python -m hac attack` or `python -m hac eval`)"),
    (dict(attacks="pgd:steps=200,restarts=10", limit=5),
     "This batch is too much work for this app: 5 images x 2 cells, the costliest ((2,000 attack steps x restarts x EOT "
     "samples + 1) x 1 codec passes) = 20,010 units, over its budget of 20,000"),
    (dict(attacks="apgd:eot_iter=1000"), "attacks: eot_iter=1000 in apgd:eot_iter=1000"),
    (dict(codecs="hac-hyperprior:q=1,weights=/etc/shadow"), "codec chains: the app does not open server files"),
    (dict(codecs="+".join(["jpeg:q=25"] * 9)), "codec chains: the chain has 9 codecs, the app runs at most 8"),
    (dict(rounds="11"), "rounds must be an integer in [1, 10], got 11"),
    (dict(eps="nan"), "every eps must be in (0, 64] (units of 1/255), got 'nan'"),
    (dict(limit="abc"), "Images (at most 200; 0 = the preset's) must be a number, got 'abc'"),
    (dict(limit=2.5), "Images (at most 200; 0 = the preset's) must be a whole number, got 2.5"),
    # issue row 6 and the traversal rows: only folders under the data root, only files inside it
    (dict(dataset="../.."), "'../..' is not a dataset folder under HAC_DATA_ROOT"),
    (dict(dataset="/etc"), "'etc' is not a dataset folder under HAC_DATA_ROOT"),  # server paths never echoed
    (dict(dataset="nope"), "no dataset folder 'nope' under HAC_DATA_ROOT"),
    (dict(dataset="leaky"), "dataset folder 'leaky' holds 1 link(s) leading outside HAC_DATA_ROOT "
                            "(e.g. n02123159/secret.png); the app reads only files inside it"),
]


@pytest.mark.parametrize("changes,message", HOSTILE_BATCHES, ids=[str(c)[:60] for c, _ in HOSTILE_BATCHES])
def test_app_batch_refusals(client, changes, message):
    args = dict(BATCH, **changes).values()
    assert message in _app_error(lambda: client.predict(*args, api_name="/batch"))


AUDIT = dict(dataset=SAMPLE_DATASET, classifier="efficientnet-lite0", codec="jpeg:q=25", rounds=1, images=1, eps_255=4,
             checks=["bpda"], steps=1, restarts=1, apgd_steps=20, square_queries=500, surrogate_steps=150,
             steps_multipliers="5, 20", eps_sweep="8, 16")
LONG_AUDIT = dict(AUDIT, images=2, steps=200)
"""Within the budget (2 images x 401 steps) but far longer than the test server's time limit."""
HOSTILE_AUDITS = [
    # one budget: every field within its cap, the whole over the budget -> refused with what to lower and the command
    (dict(images=50, steps=200),
     "This audit is too much work for this app: 50 images x 1 cell ((400 attack steps x restarts x EOT samples + 1) x 1 "
     "codec passes) = 20,050 units, over its budget of 20,000 (about 23 min on one CPU core). Lower the attack steps "
     "(PGD steps x restarts, APGD steps, Square queries, the checks ticked), or run it on your own machine: "
     "`python -m hac audit --classifier efficientnet-lite0 --codec 'jpeg:q=25' --rounds 1 --data FOLDER --images 50 "
     "--eps 4/255 --steps 200 --restarts 1 --apgd-steps 20 --square-queries 500 --surrogate-steps 150 "
     "--steps-multipliers 5,20 --eps-sweep 8/255,16/255 --checks bpda --out runs/audit`"),
    (dict(images=20, checks=["bpda", "steps", "eps-sweep"], steps=100, restarts=10, steps_multipliers="5, 10, 15, 20"),
     "This audit is too much work for this app: 20 images x 1 cell ((57,000 attack steps"),
    # every field has a cap, named in the refusal
    (dict(steps=100000), "PGD steps (at most 200): Value 100000 is greater than maximum value 200."),
    (dict(restarts=11), "PGD restarts (at most 10): Value 11 is greater than maximum value 10."),
    (dict(apgd_steps=201), "APGD steps (at most 200): Value 201 is greater than maximum value 200."),
    (dict(square_queries=10**6), "Square queries (at most 5000): Value 1000000 is greater than maximum value 5000."),
    (dict(surrogate_steps=501), "Surrogate training steps (at most 500): Value 501 is greater than maximum value 500."),
    (dict(images=51), "Images (at most 50): Value 51 is greater than maximum value 50."),
    (dict(rounds=6), "Rounds: Value 6 is greater than maximum value 5."),
    (dict(steps_multipliers="5, 1000"), "Steps multipliers: every value must be in (1, 20], got 1000 (the app's cap; "
                                         "`python -m hac audit` has none)"),
    (dict(steps_multipliers="2,3,4,5,6"), "Steps multipliers: 5 values, the app runs at most 4"),
    (dict(eps_sweep="8, 16, 24, 32, 48"), "ε sweep: 5 values, the app runs at most 4"),
    (dict(eps_sweep="nan"), "ε sweep: every value must be in (4, 64], got nan"),
    (dict(codec="+".join(["jpeg:q=25"] * 9)), "Codec chain: the chain has 9 codecs, the app runs at most 8"),
    (dict(checks=[]), "tick at least one check"),
    # no server file can be named or shown
    (dict(codec="hac-hyperprior:q=1,weights=/etc/shadow"), "Codec chain: the app does not open server files, so "
                                                           "hac-hyperprior takes no weights= here"),
    (dict(dataset="/etc"), "Value: /etc is not in the list of choices: ['sample: 5 scikit-image photos', 'leaky', 'mini']"),
]


@pytest.mark.parametrize("changes,message", HOSTILE_AUDITS, ids=[str(c)[:60] for c, _ in HOSTILE_AUDITS])
def test_app_audit_refusals(client, changes, message):
    args = dict(AUDIT, **changes).values()
    started = time.monotonic()
    error = _app_error(lambda: client.predict(*args, api_name="/audit"))
    assert message in error
    assert time.monotonic() - started < TIME_LIMIT  # refused before any work (the time limit would have said "stopped")


def test_app_stops_an_audit_at_its_time_limit_and_serves_the_next(client):
    started = time.monotonic()
    message = _app_error(lambda: client.predict(*LONG_AUDIT.values(), api_name="/audit"))
    assert f"over the time limit of {TIME_LIMIT} s; the worker has moved on to the next request" in message
    assert time.monotonic() - started < 2 * 200 * 0.05  # far sooner than its two 200-step attacks on 2 images
    card, steps, _, archive = client.predict(*AUDIT.values(), api_name="/audit")
    assert card.startswith("### Verdict: efficientnet-lite0 + jpeg:q=25 x1 at ε = 4/255") and archive.endswith(".zip")


def test_app_lists_data_folders_added_while_it_runs(client, data_root, photo_dir):
    _tiny_imagenet(data_root / "added-later", photo_dir, 1)
    *_, status, _ = client.predict(*dict(BATCH, dataset="added-later").values(), api_name="/batch")
    assert status.startswith("Done: 2 cells on 1 images")


def test_app_stops_a_request_at_its_time_limit_and_serves_the_next(client, photo_dir):
    started = time.monotonic()
    message = _app_error(lambda: client.predict(*_attack_args(photo_dir / "coffee.png", **LONG), api_name="/attack"))
    assert f"over the time limit of {TIME_LIMIT} s; the worker has moved on to the next request" in message
    assert time.monotonic() - started < 200 * 0.05  # far sooner than its 200 steps x 10 JPEG passes
    out = client.predict(*_attack_args(photo_dir / "chelsea.png"), api_name="/attack")
    assert "Label attacked" in out[9]


def test_app_stops_a_request_whose_client_went_away(server, client, photo_dir, caplog):
    gone = Client(server, verbose=False)
    job = gone.submit(*_attack_args(photo_dir / "coffee.png", **LONG), api_name="/attack")
    while job.status().code.name != "PROCESSING":
        time.sleep(0.05)
    time.sleep(0.5)
    job.cancel()
    out = client.predict(*_attack_args(photo_dir / "chelsea.png"), api_name="/attack")
    assert "Label attacked" in out[9]
    deadline = time.monotonic() + TIME_LIMIT
    while not any("the client disconnected" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = [r.getMessage() for r in caplog.records if "stopped after" in r.getMessage()]
    assert stopped and "the client disconnected" in stopped[0], stopped


def test_app_serves_concurrent_requests(client, photo_dir):
    jobs = [client.submit(*_attack_args(photo_dir / name), api_name="/attack")
            for name in ("chelsea.png", "coffee.png", "rocket.jpg", "camera.png")]
    assert all("Label attacked" in job.result(timeout=300)[9] for job in jobs)


def test_app_refuses_uploads_over_the_size_limit(server, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20))
    with big.open("rb") as handle:
        response = httpx.post(f"{server}gradio_api/upload", files={"files": ("../../big.png", handle, "image/png")}, timeout=60)
    assert response.status_code == 413


def test_app_upload_names_cannot_traverse(server, tmp_path):
    path = tmp_path / "photo.png"
    _photo().save(path)
    with path.open("rb") as handle:
        response = httpx.post(f"{server}gradio_api/upload", files={"files": ("../../../../etc/evil.png", handle, "image/png")})
    assert response.status_code == 200
    (stored,) = response.json()
    assert Path(stored).name == "evil.png" and ".." not in Path(stored).parts and not Path("/etc/evil.png").exists()


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_app_removes_its_temporary_folders_on_signals(tmp_path, monkeypatch, photo_dir, signal_number):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    port = free_port()
    with open(tmp_path / "app.log", "wb") as log:
        process = start_app(port, log, threads=1)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_served(url, process, timeout=240)
            Client(url, verbose=False).predict(*_attack_args(photo_dir / "chelsea.png"), api_name="/attack")
            assert [p.name[:8] for p in scratch.glob("hac-app-*")] == ["hac-app-"]
            process.send_signal(signal_number)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                stop(process)
    assert not list(scratch.glob("hac-app-*")), (tmp_path / "app.log").read_text()[-2000:]
