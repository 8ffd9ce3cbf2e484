"""Module parameters: names, defaults and load-time rules of nvidia-uvm 580 (its module parameters)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from uvmlab.core.errors import ParamError, UvmlabError
from uvmlab.driver.params import (
    MODELED_PARAMS,
    PARAM_SPECS,
    REPLAY_POLICY_NAMES,
    Params,
    describe,
    parse_param_assignment,
)

PROBES = Path(__file__).resolve().parents[1] / "uvmlab" / "validation" / "data" / "probes"


def _probe_params(gpu: str) -> dict[str, str]:
    return json.loads((PROBES / f"{gpu}-uvm-probe.json").read_text())["uvm_params"]


# The H200's /sys/module/nvidia_uvm/parameters as the project's probe read them (driver 580.159.04;
# the whole probe is uvmlab/validation/data/probes/h200-uvm-probe.json).
PROBE_H200 = {
    "uvm_ats_mode": "1",
    "uvm_block_cpu_to_cpu_copy_with_ce": "0",
    "uvm_channel_gpfifo_loc": "auto",
    "uvm_channel_gpput_loc": "auto",
    "uvm_channel_num_gpfifo_entries": "1024",
    "uvm_channel_pushbuffer_loc": "auto",
    "uvm_conf_computing_channel_iv_rotation_limit": "2147483648",
    "uvm_cpu_chunk_allocation_sizes": "2166784",
    "uvm_debug_enable_push_acquire_info": "0",
    "uvm_debug_enable_push_desc": "0",
    "uvm_debug_prints": "0",
    "uvm_disable_hmm": "N",
    "uvm_downgrade_force_membar_sys": "1",
    "uvm_enable_builtin_tests": "0",
    "uvm_enable_debug_procfs": "0",
    "uvm_enable_va_space_mm": "1",
    "uvm_exp_gpu_cache_peermem": "0",
    "uvm_exp_gpu_cache_sysmem": "0",
    "uvm_fault_force_sysmem": "0",
    "uvm_force_prefetch_fault_support": "0",
    "uvm_global_oversubscription": "1",
    "uvm_leak_checker": "0",
    "uvm_page_table_location": "(null)",
    "uvm_peer_copy": "phys",
    "uvm_perf_access_counter_batch_count": "256",
    "uvm_perf_access_counter_migration_enable": "-1",
    "uvm_perf_access_counter_threshold": "256",
    "uvm_perf_fault_batch_count": "256",
    "uvm_perf_fault_coalesce": "1",
    "uvm_perf_fault_max_batches_per_service": "20",
    "uvm_perf_fault_max_throttle_per_service": "5",
    "uvm_perf_fault_replay_policy": "2",
    "uvm_perf_fault_replay_update_put_ratio": "50",
    "uvm_perf_map_remote_on_eviction": "1",
    "uvm_perf_map_remote_on_native_atomics_fault": "0",
    "uvm_perf_migrate_cpu_preunmap_block_order": "2",
    "uvm_perf_migrate_cpu_preunmap_enable": "1",
    "uvm_perf_pma_batch_nonpinned_order": "6",
    "uvm_perf_prefetch_enable": "1",
    "uvm_perf_prefetch_min_faults": "1",
    "uvm_perf_prefetch_threshold": "51",
    "uvm_perf_reenable_prefetch_faults_lapse_msec": "1000",
    "uvm_perf_thrashing_enable": "1",
    "uvm_perf_thrashing_epoch": "2000",
    "uvm_perf_thrashing_lapse_usec": "500",
    "uvm_perf_thrashing_max_resets": "4",
    "uvm_perf_thrashing_nap": "1",
    "uvm_perf_thrashing_pin": "300",
    "uvm_perf_thrashing_pin_threshold": "10",
    "uvm_perf_thrashing_threshold": "3",
    "uvm_release_asserts": "1",
    "uvm_release_asserts_dump_stack": "0",
    "uvm_release_asserts_set_global_error": "0",
}


# ---- names and defaults ------------------------------------------------------------------------


def test_the_53_names_of_the_580_driver():
    assert len(PARAM_SPECS) == 53
    assert set(PARAM_SPECS) == set(PROBE_H200)


@pytest.mark.parametrize("name", sorted(PROBE_H200))
def test_every_default_equals_the_probe_value(name):
    assert Params.defaults().to_sysfs()[name] == PROBE_H200[name]
    assert PARAM_SPECS[name].sysfs_default() == PROBE_H200[name]


@pytest.mark.parametrize("gpu", ["h200", "h100"])
def test_defaults_equal_probe_files(gpu):
    probe = _probe_params(gpu)
    assert set(probe) == set(PARAM_SPECS)
    assert Params.defaults().to_sysfs() == probe
    assert Params.from_sysfs(probe) == Params.defaults()


def test_typed_defaults():
    p = Params.defaults()
    assert p.uvm_perf_fault_batch_count == 256
    assert p["uvm_perf_fault_replay_policy"] == 2
    assert REPLAY_POLICY_NAMES[p.uvm_perf_fault_replay_policy] == "BATCH_FLUSH"
    assert REPLAY_POLICY_NAMES == {0: "BLOCK", 1: "BATCH", 2: "BATCH_FLUSH", 3: "ONCE"}
    assert p.uvm_perf_prefetch_threshold == 51
    assert p.uvm_perf_thrashing_lapse_usec == 500
    assert p.uvm_perf_access_counter_migration_enable == -1
    assert p.uvm_disable_hmm is False
    assert p.uvm_page_table_location is None
    assert p.uvm_peer_copy == "phys"
    assert p.uvm_cpu_chunk_allocation_sizes == 0x211000
    assert len(p) == 53 and p.changed() == {}


def test_modeled_flags():
    assert "uvm_global_oversubscription" in MODELED_PARAMS
    for name, spec in PARAM_SPECS.items():
        assert spec.modeled == (name.startswith("uvm_perf_") or name == "uvm_global_oversubscription"), name
        assert spec.source.endswith(".c") and spec.meaning and spec.clamp


def test_describe_rows():
    rows = describe()
    assert len(rows) == 53
    by_name = {r[0]: r for r in rows}
    assert by_name["uvm_perf_prefetch_threshold"][1:3] == ("51", "0..100")
    assert by_name["uvm_perf_fault_replay_policy"][2] == "one of {0, 1, 2, 3}"
    assert all(len(r) == 4 and all(isinstance(x, str) and x for x in r) for r in rows)
    assert {r[0] for r in describe(modeled_only=True)} == set(MODELED_PARAMS)


# ---- unknown names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typo, expected",
    [
        ("uvm_perf_fault_batch_cnt", "uvm_perf_fault_batch_count"),
        ("uvm_perf_prefetch_treshold", "uvm_perf_prefetch_threshold"),
        ("uvm_perf_thrashing_lapse_us", "uvm_perf_thrashing_lapse_usec"),
        ("fault_replay_policy", "uvm_perf_fault_replay_policy"),
        ("UVM_PERF_FAULT_COALESCE", "uvm_perf_fault_coalesce"),
    ],
)
def test_unknown_name_suggests_close_match(typo, expected):
    with pytest.raises(ParamError, match=expected) as e:
        Params.defaults().replace(**{typo: 1})
    assert isinstance(e.value, UvmlabError)
    assert typo in str(e.value)
    with pytest.raises(ParamError, match=expected):
        parse_param_assignment(f"{typo}=1")
    with pytest.raises(ParamError, match=expected):
        Params.from_overrides({typo: 1})


def test_unknown_attribute_is_attribute_error_and_param_error():
    p = Params.defaults()
    with pytest.raises(AttributeError):
        _ = p.uvm_perf_prefetch_treshold
    with pytest.raises(ParamError, match="uvm_perf_prefetch_threshold"):
        _ = p.uvm_perf_prefetch_treshold
    assert getattr(p, "not_a_param", "x") == "x"
    with pytest.raises(ParamError):
        _ = p["nope"]


def test_no_suggestion_for_nonsense():
    with pytest.raises(ParamError) as e:
        Params.defaults().replace(zzzzqqq=1)
    assert "did you mean" not in str(e.value)


# ---- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, bad, range_text, driver_uses",
    [
        ("uvm_perf_fault_replay_policy", 4, "{0, 1, 2, 3}", "2"),
        ("uvm_perf_prefetch_threshold", 101, "0..100", "51"),
        ("uvm_perf_prefetch_min_faults", 0, "1..20", "1"),
        ("uvm_perf_prefetch_min_faults", 21, "1..20", "1"),
        ("uvm_perf_thrashing_threshold", 0, "1..7", "3"),
        ("uvm_perf_thrashing_threshold", 8, "1..7", "3"),
        ("uvm_perf_thrashing_pin_threshold", 256, "1..255", "10"),
        ("uvm_perf_thrashing_nap", 0, "1..100", "1"),
        ("uvm_perf_thrashing_nap", 101, "1..100", "1"),
        ("uvm_perf_thrashing_lapse_usec", 0, ">= 1", "500"),
        ("uvm_perf_thrashing_epoch", 0, ">= 1", "2000"),
        ("uvm_perf_thrashing_enable", 2, "{0, 1}", "1"),
        ("uvm_perf_access_counter_threshold", 0, "1..65535", "1"),
        ("uvm_perf_access_counter_threshold", 65536, "1..65535", "65535"),
        ("uvm_perf_fault_batch_count", 0, ">= 1", "1"),
        ("uvm_perf_fault_replay_update_put_ratio", 101, "0..100", "100"),
        ("uvm_perf_migrate_cpu_preunmap_block_order", 11, "0..10", "2"),
        ("uvm_channel_num_gpfifo_entries", 1000, "32..1048576", "1024"),
        ("uvm_channel_num_gpfifo_entries", 16, "32..1048576", "32"),
    ],
)
def test_out_of_range_states_range_and_driver_clamp(name, bad, range_text, driver_uses):
    with pytest.raises(ParamError) as e:
        Params.defaults().replace(**{name: bad})
    msg = str(e.value)
    assert name in msg and range_text in msg
    assert f"would use {driver_uses} instead" in msg


def test_unvalidated_zero_that_stops_the_driver_is_rejected():
    with pytest.raises(ParamError, match=">= 1") as e:
        Params.defaults().replace(uvm_perf_fault_max_batches_per_service=0)
    assert "not validated" in str(e.value)


def test_values_outside_the_c_type_would_fail_module_load():
    with pytest.raises(ParamError, match="refuse to load"):
        Params.defaults().replace(uvm_perf_thrashing_pin=-1)
    with pytest.raises(ParamError, match="refuse to load"):
        Params.defaults().replace(uvm_perf_access_counter_migration_enable=2**31)


@pytest.mark.parametrize(
    "name, good",
    [
        ("uvm_perf_fault_replay_policy", 0),
        ("uvm_perf_fault_replay_policy", 3),
        ("uvm_perf_prefetch_threshold", 0),
        ("uvm_perf_prefetch_threshold", 100),
        ("uvm_perf_prefetch_min_faults", 20),
        ("uvm_perf_thrashing_threshold", 7),
        ("uvm_perf_thrashing_pin_threshold", 255),
        ("uvm_perf_thrashing_nap", 100),
        ("uvm_perf_thrashing_pin", 0),
        ("uvm_perf_thrashing_max_resets", 0),
        ("uvm_perf_access_counter_threshold", 65535),
        ("uvm_perf_access_counter_migration_enable", -5),
        ("uvm_perf_access_counter_migration_enable", 1),
        ("uvm_perf_fault_batch_count", 1),
        ("uvm_perf_fault_batch_count", 4096),
        ("uvm_perf_fault_replay_update_put_ratio", 0),
        ("uvm_perf_prefetch_enable", 7),  # any nonzero value means on
        ("uvm_channel_num_gpfifo_entries", 32),
        ("uvm_cpu_chunk_allocation_sizes", 0x1000),
        ("uvm_peer_copy", "virt"),
        ("uvm_page_table_location", "sys"),
        ("uvm_page_table_location", None),
        ("uvm_disable_hmm", True),
    ],
)
def test_values_in_range_are_accepted(name, good):
    p = Params.defaults().replace(**{name: good})
    assert p[name] == good
    assert p.changed() == ({name: good} if good != PARAM_SPECS[name].default else {})


@pytest.mark.parametrize(
    "name, bad",
    [
        ("uvm_perf_fault_batch_count", "256"),
        ("uvm_perf_fault_batch_count", 2.0),
        ("uvm_perf_fault_batch_count", True),
        ("uvm_perf_fault_batch_count", None),
        ("uvm_peer_copy", 1),
        ("uvm_disable_hmm", "yes"),
        ("uvm_disable_hmm", 2),
    ],
)
def test_wrong_type_is_rejected(name, bad):
    with pytest.raises(ParamError, match=name):
        Params.defaults().replace(**{name: bad})


def test_string_choices():
    with pytest.raises(ParamError, match="'phys', 'virt'"):
        Params.defaults().replace(uvm_peer_copy="physical")
    with pytest.raises(ParamError, match="'auto', 'sys', 'vid'"):
        Params.defaults().replace(uvm_channel_gpput_loc="vram")
    with pytest.raises(ParamError, match="PAGE_SIZE"):
        Params.defaults().replace(uvm_cpu_chunk_allocation_sizes=0x200000)


# ---- immutability, equality, pickling -----------------------------------------------------------


def test_params_are_immutable_and_hashable():
    p = Params.defaults()
    with pytest.raises(AttributeError):
        p.uvm_perf_fault_batch_count = 3
    q = p.replace(uvm_perf_fault_batch_count=128)
    assert p.uvm_perf_fault_batch_count == 256 and q.uvm_perf_fault_batch_count == 128
    assert q == Params.from_overrides({"uvm_perf_fault_batch_count": 128})
    assert hash(q) == hash(Params({"uvm_perf_fault_batch_count": 128}))
    assert q != p
    assert pickle.loads(pickle.dumps(q)) == q
    assert "uvm_perf_fault_batch_count=128" in repr(q)
    d = q.to_dict()
    d["uvm_perf_fault_batch_count"] = 1
    assert q.uvm_perf_fault_batch_count == 128


# ---- TOML --------------------------------------------------------------------------------------


def test_toml_round_trip(tmp_path):
    p = Params.defaults().replace(
        uvm_perf_fault_batch_count=128,
        uvm_perf_fault_replay_policy=1,
        uvm_peer_copy="virt",
        uvm_disable_hmm=True,
        uvm_page_table_location="vid",
        uvm_perf_access_counter_migration_enable=1,
    )
    for only_changed in (False, True):
        f = tmp_path / f"p{only_changed}.toml"
        f.write_text(p.to_toml(only_changed=only_changed))
        assert Params.from_toml(f) == p
    f = tmp_path / "defaults.toml"
    f.write_text(Params.defaults().to_toml())
    assert Params.from_toml(f) == Params.defaults()


def test_toml_top_level_keys(tmp_path):
    f = tmp_path / "top.toml"
    f.write_text("uvm_perf_prefetch_enable = 0\nuvm_perf_thrashing_enable = 0\n")
    p = Params.from_toml(f)
    assert p.changed() == {"uvm_perf_prefetch_enable": 0, "uvm_perf_thrashing_enable": 0}


def test_toml_params_table_ignores_other_tables(tmp_path):
    f = tmp_path / "cfg.toml"
    f.write_text('[workload]\nname = "x"\n\n[params]\nuvm_perf_prefetch_threshold = 90\n')
    assert Params.from_toml(f).changed() == {"uvm_perf_prefetch_threshold": 90}


@pytest.mark.parametrize(
    "text, match",
    [
        ("uvm_perf_prefetch_threshold = 200\n", "0..100"),
        ("[params]\nuvm_perf_prefetch_treshold = 20\n", "uvm_perf_prefetch_threshold"),
        ('[params]\nuvm_perf_fault_batch_count = "256"\n', "expected an integer"),
        ("[params\nx=1", "not valid TOML"),
        ("params = 3\n", "must be a table"),
        ("[params]\nuvm_perf_fault_batch_count = [1, 2]\n", "plain value"),
    ],
)
def test_toml_errors_name_the_file(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ParamError, match=match) as e:
        Params.from_toml(f)
    assert "bad.toml" in str(e.value)


def test_toml_missing_file(tmp_path):
    with pytest.raises(ParamError, match="not found"):
        Params.from_toml(tmp_path / "nope.toml")


# ---- CLI assignments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("uvm_perf_fault_batch_count=128", ("uvm_perf_fault_batch_count", 128)),
        (" uvm_perf_fault_batch_count = 64 ", ("uvm_perf_fault_batch_count", 64)),
        ("uvm_cpu_chunk_allocation_sizes=0x201000", ("uvm_cpu_chunk_allocation_sizes", 0x201000)),
        ("uvm_perf_access_counter_migration_enable=-1", ("uvm_perf_access_counter_migration_enable", -1)),
        ("uvm_disable_hmm=Y", ("uvm_disable_hmm", True)),
        ("uvm_disable_hmm=false", ("uvm_disable_hmm", False)),
        ("uvm_peer_copy=virt", ("uvm_peer_copy", "virt")),
        ("uvm_page_table_location=(null)", ("uvm_page_table_location", None)),
    ],
)
def test_parse_param_assignment(text, expected):
    assert parse_param_assignment(text) == expected


@pytest.mark.parametrize(
    "text, match",
    [
        ("uvm_perf_fault_batch_count=abc", "not an integer"),
        ("uvm_perf_fault_batch_count=12.5", "not an integer"),
        ("uvm_perf_fault_batch_count=1e3", "not an integer"),
        ("uvm_perf_fault_batch_count=", "no value"),
        ("uvm_perf_fault_batch_count", "name=value"),
        ("=5", "name=value"),
        ("uvm_perf_fault_batch_count=0", ">= 1"),
        ("uvm_perf_fault_replay_policy=7", "{0, 1, 2, 3}"),
        ("uvm_perf_fault_batch_count=-3", "refuse to load"),
        ("uvm_disable_hmm=maybe", "not a boolean"),
    ],
)
def test_parse_param_assignment_errors(text, match):
    with pytest.raises(ParamError, match=match):
        parse_param_assignment(text)


def test_from_assignments():
    p = Params.from_assignments(["uvm_perf_prefetch_enable=0", "uvm_perf_fault_replay_policy=3"])
    assert p.changed() == {"uvm_perf_prefetch_enable": 0, "uvm_perf_fault_replay_policy": 3}


def test_from_sysfs_skips_other_driver_versions_when_not_strict():
    sysfs = dict(PROBE_H200, uvm_perf_lapse_vote_threshold="32")  # a 595.45.04 parameter
    with pytest.raises(ParamError):
        Params.from_sysfs(sysfs)
    assert Params.from_sysfs(sysfs, strict=False) == Params.defaults()
