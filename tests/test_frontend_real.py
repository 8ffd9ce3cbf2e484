"""The stored real traces (captured on a GPU machine, uvmlab/frontend/data/traces/): naming
coverage, the handle tree model against the real driver's answers, replay against the IR twin."""

import json
from pathlib import Path

import pytest

from uvmlab.frontend.decode import decode
from uvmlab.frontend.modules import ModuleStack
from uvmlab.frontend.programs.probe_model import model_answers
from uvmlab.frontend.programs.twins import managed_advise_ir
from uvmlab.frontend.replay import canonical, effective, host_calls, replay_records
from uvmlab.frontend.trace import read_trace

DATA = Path(__file__).resolve().parent.parent / "uvmlab" / "frontend" / "data" / "traces"
TRACES = ["cuda_init", "managed_advise", "cupy_program", "torch_program"]
# The traces come from one GPU session (python -m uvmlab.frontend.programs.run_gpu_session OUT on
# a GPU machine); until they are stored these tests cannot run, like the GPU-only tests.
pytestmark = pytest.mark.skipif(
    not (DATA / "managed_advise.ioctl.gz").exists(), reason="no real ioctl traces stored yet"
)


@pytest.mark.parametrize("name", TRACES)
def test_real_trace_calls_are_named(name):
    dec = decode(read_trace(DATA / f"{name}.ioctl.gz"))
    assert len(dec.calls) > 50
    assert dec.named_fraction() >= 0.95, dec.unnamed().most_common(10)
    # the RM model answers every alloc/free/dup of the real program as the driver did
    assert dec.model_checked > 10 and dec.model_agreed == dec.model_checked, dec.disagreements[:5]


def test_replay_of_the_real_managed_program_matches_its_ir_twin():
    rep = replay_records(read_trace(DATA / "managed_advise.ioctl.gz"))
    assert rep.checked > 0 and rep.agreed == rep.checked, rep.disagreements
    real_calls = host_calls(rep.workload())
    got = canonical(effective(real_calls))
    want = canonical(effective(host_calls(managed_advise_ir())))
    assert got == want
    # libcuda's own resets were there and were left out as without effect, not lost
    assert len(canonical(real_calls)) > len(got) >= 5
    assert [c[0] for c in got].count("prefetch") == 2


def test_models_answer_the_probed_refusals_as_the_real_driver():
    real = json.loads((DATA / "rm_probe.json").read_text())
    model = model_answers(real)
    for case, r in real.items():
        m = model[case]
        assert (m["ret"], m["errno"]) == (r["ret"], r["errno"]), case
        if r["ret"] == 0 and case != "alloc_client":
            assert m["status"] == r["status"], case


def test_the_capture_machines_device_files_are_the_modelled_ones():
    machine = json.loads((DATA / "machine.json").read_text())
    mods, devs = machine["modules"], machine["device_files"]
    stack = ModuleStack()
    for m in mods:  # what the machine loaded, loaded in the model with its dependencies
        stack.modprobe(m.replace("_", "-"))
    made = {f.rstrip("/") for f in stack.device_files()}
    assert set(devs) <= made, set(devs) - made
    # nvidiactl and nvidia0 share nvidia's major; the control device is its minor 255 (nv.c)
    assert devs["/dev/nvidiactl"]["major"] == devs["/dev/nvidia0"]["major"]
    assert devs["/dev/nvidiactl"]["minor"] == 255 and devs["/dev/nvidia0"]["minor"] == 0
    # nvidia-uvm's two minors on one major of its own (uvm.c)
    uvm, tools = devs["/dev/nvidia-uvm"], devs["/dev/nvidia-uvm-tools"]
    assert uvm["major"] == tools["major"] != devs["/dev/nvidia0"]["major"]
    assert (uvm["minor"], tools["minor"]) == (0, 1)
