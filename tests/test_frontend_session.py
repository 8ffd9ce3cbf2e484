"""The GPU session's tarball is stored where the repo keeps each file."""

import json
import tarfile

from uvmlab.frontend.client import managed_advise_session
from uvmlab.frontend.programs.probe_model import model_answers
from uvmlab.frontend.programs.run_gpu_session import store
from uvmlab.frontend.trace import read_trace, write_trace


def test_store_unpacks_a_session(tmp_path):
    sess = tmp_path / "frontend_capture"
    (sess / "traces").mkdir(parents=True)
    recs = managed_advise_session().records
    write_trace(recs, sess / "traces" / "managed_advise.ioctl.gz")
    (sess / "machine.json").write_text(json.dumps({"driver_version": "580.159.04"}))
    (sess / "rm_probe.out").write_text("warning: noise\n" + json.dumps(model_answers()) + "\n")
    (sess / "device_attributes.json").write_text(
        json.dumps({"name": "NVIDIA H200", "PageableMemoryAccess": 0})
    )
    tar = tmp_path / "s.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(sess, arcname="frontend_capture")
    repo = tmp_path / "repo"
    (repo / "uvmlab" / "cuda" / "data").mkdir(parents=True)
    assert store(tar, repo) == 0
    traces = repo / "uvmlab" / "frontend" / "data" / "traces"
    assert read_trace(traces / "managed_advise.ioctl.gz") == recs
    assert json.loads((traces / "rm_probe.json").read_text()) == model_answers()
    attrs = json.loads((repo / "uvmlab" / "cuda" / "data" / "device_attributes_h200.json").read_text())
    assert attrs["PageableMemoryAccess"] == 0
