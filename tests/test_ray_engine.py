"""The Ray engine: same numbers as the in-process runner, the driver alone writes the store, a dead worker loses nothing.

A real two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``, one CPU per node, one
worker per node) runs a tiny grid on six generated images in the Hub's parquet layout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hac.cli import main
from hac.evaluation.runner import evaluate
from hac.evaluation.store import STORE_FILENAME
from hub_layout import SYNSETS, write_hub_dataset

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
GRID = {
    "name": "ray-mechanics", "batch_size": 2, "codecs": ["jpeg:q=50"], "rounds": [1],
    "attacks": ["fgsm:eps=4/255"], "threats": ["oblivious", "bpda"], "ms_ssim": False,
}
CELLS, IMAGES = 3, 6  # baseline, oblivious, bpda; three batches


def _numbers(results) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "cpu_seconds")} for row in results.summary_rows()]


def _rows(out: Path) -> list[tuple[str, str]]:
    lines = [json.loads(line) for line in (out / STORE_FILENAME).read_text().splitlines()]
    return [(line["cell"], line["image"]) for line in lines if line["kind"] == "row"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    pytest.importorskip("datasets")
    return write_hub_dataset(tmp_path_factory.mktemp("hub"), SYNSETS, [0, 1, 2, 1, 0, 2], size=(64, 64))


@pytest.fixture(scope="module")
def reference(data, classifier):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield evaluate(GRID, None, data=data, models={"efficientnet-lite0": classifier})
    finally:
        torch.set_num_threads(threads)


@pytest.mark.gpu
def test_ray_workers_on_the_gpu_give_the_numbers_of_one_gpu_process(data, tmp_path):
    """Before the cluster tests: this one starts its own local Ray with the GPU."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from hac.evaluation.ray_engine import RayEngine

    single = evaluate(GRID, None, data=data, device="cuda")
    on_ray = evaluate(GRID, tmp_path, data=data, device="cuda", engine=RayEngine(workers=1, gpus_per_worker=1))
    assert on_ray.run["units_computed"] == CELLS * 3
    for a, b in zip(_numbers(single), _numbers(on_ray)):
        assert a["clean_acc"] == b["clean_acc"] and abs((a["psnr"] or 0) - (b["psnr"] or 0)) < 1e-3


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each on this machine; this process is connected to them."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}})
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_two_nodes_give_the_in_process_numbers_and_resume_from_the_store(cluster, data, reference, tmp_path):
    from hac.evaluation.ray_engine import RayEngine

    engine = RayEngine(workers=2, threads=1)
    results = evaluate(GRID, tmp_path, data=data, engine=engine)
    assert _numbers(results) == _numbers(reference)
    assert results.run["engine"] == "ray" and results.run["units_computed"] == CELLS * 3
    assert len({node["NodeID"] for node in ray.nodes() if node["Alive"]}) == 2 and len(set(engine.worker_pids)) == 2
    assert results.reuse()["attack_calls"] == reference.reuse()["attack_calls"]  # oblivious attacks still shared
    again = evaluate(GRID, tmp_path, data=data, engine=RayEngine(workers=2))
    assert again.run["units_computed"] == 0 and _numbers(again) == _numbers(reference)
    assert sorted(_rows(tmp_path)) == sorted(set(_rows(tmp_path))) and len(_rows(tmp_path)) == CELLS * IMAGES


def test_a_killed_worker_loses_no_row_and_a_rerun_completes_without_duplicates(cluster, data, reference, tmp_path):
    from hac.evaluation.ray_engine import RayEngine, UnitsLostError

    engine, killed = RayEngine(workers=2, threads=1), []

    def kill_one_worker(done, total, message):
        if done == 1 and not killed:  # one unit's first commit is in; both workers are busy
            os.kill(engine.worker_pids[-1], signal.SIGKILL)
            killed.append(engine.worker_pids[-1])

    try:
        evaluate(GRID, tmp_path, kill_one_worker, data=data, engine=engine)
    except UnitsLostError as error:  # the retry died too: the rest is left for the rerun
        assert "rerun the same command" in str(error)
    assert killed
    first = _rows(tmp_path)
    assert first and len(first) == len(set(first))  # what finished before and after the kill is kept, once
    rerun = evaluate(GRID, tmp_path, data=data, engine=RayEngine(workers=2, threads=1))
    rows = _rows(tmp_path)
    assert rows[: len(first)] == first and len(rows) == len(set(rows)) == CELLS * IMAGES
    assert _numbers(rerun) == _numbers(reference)


def test_without_an_engine_ray_is_not_imported():
    code = ("import sys; from hac.cli import main; from hac.evaluation import runner; "
            "import hac.cli.eval; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_ray_options_without_the_engine_and_bad_counts_are_refused(tmp_path, capsys):
    from hac.evaluation.ray_engine import RayEngine

    assert main(["eval", "--preset", "smoke", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--address", "auto"]) == 2
    assert "--address and --gpus-per-worker need --engine ray" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--workers must be at least 1, got 0"):
        RayEngine(workers=0)


