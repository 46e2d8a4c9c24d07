"""ZeroGPU: every model-running handler runs inside ``spaces.GPU`` with a duration that grows with the work.

A stand-in ``spaces`` module (put in ``sys.modules`` by the test; the app imports the real one where it is
installed) records each decoration and each call.
"""

from __future__ import annotations

import sys
import types

import gradio as gr
import pytest

from hac.app import ModelCache, RunFiles, build_demo, gpu

MODEL_HANDLERS = {"attack": "run_attack", "codec_attack": "run_codec_attack", "batch": "run_batch", "audit": "run_audit"}


class StandInSpaces(types.ModuleType):
    """``spaces`` with a GPU decorator that records what it decorates and the durations asked for."""

    def __init__(self) -> None:
        super().__init__("spaces")
        self.decorated: list[object] = []  # the duration callables, one per decorated function
        self.calls: list[tuple[str, int]] = []

    def GPU(self, task=None, *, duration=None):  # noqa: N802 (the real name)
        def decorate(fn):
            def run(*args, **kwargs):
                seconds = duration(*args, **kwargs)
                self.calls.append((self._name_of(args), seconds))
                return fn(*args, **kwargs)

            self.decorated.append(duration)
            return run

        return decorate if task is None else decorate(task)

    @staticmethod
    def _name_of(args) -> str:
        return type(args[0]).__name__


@pytest.fixture
def demo_with_stand_in(monkeypatch, tmp_path):
    spaces = StandInSpaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    demo = build_demo(ModelCache("cpu"), RunFiles())
    events = {fn.api_name: fn.fn for fn in demo.fns.values() if fn.api_name in MODEL_HANDLERS}
    return spaces, events


def _handler(event):
    return event.func.__wrapped__


def test_every_model_running_handler_runs_inside_spaces_gpu(demo_with_stand_in):
    spaces, events = demo_with_stand_in
    assert set(events) == set(MODEL_HANDLERS)
    for api_name, event in events.items():
        assert _handler(event).__name__ == MODEL_HANDLERS[api_name]
    assert len(spaces.decorated) == len(MODEL_HANDLERS)  # one decoration per handler, when the demo was built
    attack = events["attack"]
    before = len(spaces.calls)
    with pytest.raises(gr.Error, match="Upload an image"):  # the handler itself ran, inside the GPU call
        attack(None)
    assert len(spaces.calls) == before + 1


def _duration(event, **fields) -> int:
    cache, files = event.args
    call = event.func
    handler = call.__wrapped__
    import inspect

    bound = inspect.signature(handler).bind(cache, files, **fields)
    bound.apply_defaults()
    return gpu.call_seconds(_work_of(handler)(bound.arguments))


def _work_of(handler):
    from hac.app import work

    return {"run_attack": work.attack_work, "run_codec_attack": work.codec_attack_work,
            "run_batch": work.batch_work, "run_audit": work.audit_work}[handler.__name__]


def test_the_duration_asked_for_grows_with_the_work(demo_with_stand_in, tmp_path):
    spaces, events = demo_with_stand_in
    attack = events["attack"]
    small = _duration(attack, image="x.png", steps=10)
    assert small < _duration(attack, image="x.png", steps=100) < _duration(attack, image="x.png", steps=100, rounds=4)
    assert _duration(attack, image="x.png", steps=100) < _duration(attack, image="x.png", steps=100, threat="eot")
    codec = events["codec_attack"]
    assert _duration(codec, image="x.png", steps=5) < _duration(codec, image="x.png", steps=50)
    batch = events["batch"]
    smoke = {**_smoke_fields(), "attacks": "pgd:steps=50"}  # FGSM's one step is too little work to show a change
    one = _duration(batch, dataset="sample", preset="smoke", **{**smoke, "limit": 1})
    assert one < _duration(batch, dataset="sample", preset="smoke", **{**smoke, "limit": 5})
    assert one < _duration(batch, dataset="sample", preset="smoke", **{**smoke, "limit": 1, "rounds": "1, 3"})
    audit = events["audit"]
    fields = dict(dataset="sample", classifier="efficientnet-lite0", codec="jpeg:q=25", rounds=1, eps_255=4)
    few = _duration(audit, **fields, images=2, checks=["bpda"])
    assert few < _duration(audit, **fields, images=2, checks=["bpda", "eot"]) < _duration(audit, **fields, images=5,
                                                                                          checks=["bpda", "eot"])


def _smoke_fields() -> dict:
    from hac.app import batch

    return batch.preset_fields("smoke")._asdict()


def test_the_stand_in_gets_the_estimate_and_too_much_work_is_refused_with_the_command(demo_with_stand_in, monkeypatch):
    spaces, events = demo_with_stand_in
    attack = events["attack"]
    with pytest.raises(gr.Error, match="Upload an image"):
        attack(None, steps=20)
    assert spaces.calls[-1][1] == _duration(attack, image=None, steps=20)
    monkeypatch.setenv(gpu.MAX_CALL_SECONDS_ENV, "11")
    calls = len(spaces.calls)
    with pytest.raises(gr.Error, match=r"more than one GPU call here may take \(11 s\).*python -m hac attack --image IMAGE"):
        attack("x.png", steps=200, threat="eot", rounds=10)
    assert len(spaces.calls) == calls  # refused before any GPU was asked for
    with pytest.raises(gr.Error, match=r"python -m hac eval --config CONFIG.yaml \(preset smoke with the tab.s fields\)"):
        events["batch"]("sample", "smoke", **{**_smoke_fields(), "limit": 200, "attacks": "pgd:steps=200"})


def test_off_zero_gpu_models_stay_where_they_are_and_on_it_they_load_on_the_cpu(monkeypatch):
    monkeypatch.delenv(gpu.ZERO_GPU_ENV, raising=False)
    assert not gpu.on_zero_gpu()
    monkeypatch.setenv(gpu.ZERO_GPU_ENV, "true")
    assert gpu.on_zero_gpu() and gpu.model_device() == "cpu"


def test_the_budget_check_and_the_gpu_duration_read_one_estimate():
    """Each tab refuses work over the app's budget with the very units and command its GPU call is sized by."""
    import inspect

    from hac.app import audit, batch, codec_attack, handlers, work
    from hac.app.limits import AppLimits

    cache, files, tiny_budget = ModelCache("cpu"), RunFiles(), AppLimits(max_work=1)
    cases = [
        (handlers.run_attack, work.attack_work, dict(image="x.png", steps=20, rounds=2)),
        (codec_attack.run_codec_attack, work.codec_attack_work, dict(image="x.png", steps=7)),
        (codec_attack.run_codec_attack, work.codec_attack_work, dict(image="x.png", steps=7, objective="rate")),
        (batch.run_batch, work.batch_work, dict(dataset=batch.SAMPLE_DATASET, preset="smoke",
                                                **{**_smoke_fields(), "limit": 3, "attacks": "pgd:steps=30"})),
        (audit.run_audit, work.audit_work, dict(dataset=batch.SAMPLE_DATASET, classifier="efficientnet-lite0",
                                                codec="jpeg:q=25", rounds=1, images=3, eps_255=4, checks=["bpda", "steps"])),
    ]
    for handler, gpu_work, fields in cases:
        bound = inspect.signature(handler).bind(cache, files, **fields)
        bound.apply_defaults()
        expected = gpu_work(bound.arguments)
        with pytest.raises(gr.Error) as refused:
            handler(cache, files, **fields, limits=tiny_budget)
        message = refused.value.message
        assert f"= {expected.units:,.0f} units, over its budget" in message, (handler.__name__, fields, message)
        assert expected.command in message, (handler.__name__, message)
