"""The policy guard implements every hook point the driver declares (driver/hooks.py), and the
driver calls nothing else on it."""

import ast
from pathlib import Path

from uvmlab.driver.hooks import DriverHooks
from uvmlab.policy.loader import build_hooks

ROOT = Path(__file__).resolve().parents[1]


def test_guard_is_a_driver_hooks():
    guard = build_hooks("lru")
    assert isinstance(guard, DriverHooks)


def test_driver_calls_only_declared_hook_points():
    declared = {n for n in dir(DriverHooks) if not n.startswith("_")}
    declared |= set(DriverHooks.__annotations__)
    called = set()
    for f in (ROOT / "uvmlab" / "driver").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            # drv.hooks.NAME
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "hooks"
            ):
                called.add(node.attr)
    assert called, "the driver reaches no hook point: the scan is broken"
    assert called <= declared, sorted(called - declared)
