"""The command line, as a user runs it: output, files, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hac.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_purify_prints_and_writes(photo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["purify", "--image", str(photo_dir / "coffee.png"), "--codec", "jpeg:q=25", "--rounds", "3", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "before     espresso" in printed and "after      espresso" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["chain"] == "jpeg:q=25" and len(result["per_round"]) == 3
    assert result["size"] == [224, 224]
    assert all(0 < r["bpp"] < 24 and 20 < r["psnr"] < 100 for r in result["per_round"])
    assert (out / "input.png").is_file() and (out / "purified.png").is_file()


def test_chain_from_repeated_flags(photo_dir, capsys):
    assert main(["purify", "--image", str(photo_dir / "chelsea.png"), "--codec", "jpeg:q=50", "--codec", "webp:q=60"]) == 0
    assert "jpeg:q=50+webp:q=60 x 1 round(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--codec", "jpeg:q=500"], "jpeg quality q must be an integer in [1, 95]"),
        (["--codec", "nocodec"], "unknown codec 'nocodec'; valid choices:"),
        (["--codec", "jpeg", "--classifier", "nonet"], "unknown classifier 'nonet'; valid choices:"),
        (["--codec", "jpeg", "--rounds", "0"], "rounds must be an integer in [1, 50]"),
    ],
)
def test_bad_settings_give_one_clear_line(photo_dir, capsys, args, message):
    assert main(["purify", "--image", str(photo_dir / "coffee.png"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_image_gives_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["purify", "--image", str(bad), "--codec", "jpeg"]) == 2
    assert "broken.jpg is corrupt or truncated" in capsys.readouterr().err


def test_weights_listing_shows_what_is_local(capsys):
    assert main(["weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lite0 = next(line for line in lines if line.startswith("efficientnet-lite0 "))
    assert " yes " in lite0 and "package" in lite0
    resnet50 = next(line for line in lines if line.startswith("resnet50 "))
    assert " no " in resnet50 and "python -m hac weights download resnet50" in resnet50


def test_download_offline_is_refused_clearly(capsys):
    assert main(["weights", "download", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert "weights for 'resnet50' are not available" in err and "timm/resnet50.tv2_in1k" in err


def test_python_dash_m_entry_point(photo_dir):
    done = subprocess.run(
        [sys.executable, "-m", "hac", "purify", "--image", str(photo_dir / "nope.png"), "--codec", "jpeg"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    assert "image file not found" in done.stderr and "Traceback" not in done.stderr


def test_train_passes_everything_on_to_hac_train(tmp_path, capsys, caplog):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "usage: hac train" in capsys.readouterr().out
    assert main(["train", "pack", str(tmp_path / "no-run"), "--out", str(tmp_path / "out")]) == 2
    assert "checkpoint not found" in caplog.text


def test_other_commands_still_refuse_unknown_options(photo_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["purify", "--image", str(photo_dir / "coffee.png"), "--codec", "jpeg:q=25", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
