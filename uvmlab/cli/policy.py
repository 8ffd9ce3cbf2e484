"""``uvmlab compare`` and ``uvmlab policy list | run | check`` (registered by uvmlab.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from uvmlab.cli.common import (
    IsolateOpt,
    MaxTouchesOpt,
    check_outputs,
    err,
    max_touches,
    out,
    parse_params,
    simulate_with_progress,
)
from uvmlab.core.units import fmt_bytes
from uvmlab.lab import compare as cmp
from uvmlab.policy.base import families, implemented_hooks, summary
from uvmlab.policy.guard import Guard
from uvmlab.policy.loader import build_hooks, builtin_policies, load_policies, parse_param_overrides

PolicyParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--policy-param",
        "-P",
        help="A policy's own parameter, POLICY.KEY=VALUE (repeatable), e.g. "
        "tree.threshold=30; or inline: 'tree(threshold=30)'.",
    ),
]
BudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-ms",
        help="Per-call time budget of a hook before the guard ejects its policy (default 50 ms).",
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Module parameter, e.g. uvm_perf_prefetch_enable=0 (repeatable)."),
]
MemOpt = Annotated[
    str | None,
    typer.Option("--gpu-memory", help="GPU memory: a size ('16GiB') or an oversubscription ratio ('150%')."),
]
GpuOpt = Annotated[str, typer.Option("--gpu", help="GPU model: h200 or h100.")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Cost profile name or JSON file.")]
ParamFileOpt = Annotated[
    Path | None, typer.Option("--params-file", help="TOML file of module parameters ([params] table).")
]
WorkloadArg = Annotated[str, typer.Argument(help="Built-in spec (llm:size=256MiB) or a .uvmw file.")]


def compare_cmd(
    workload: WorkloadArg,
    policies: Annotated[
        str,
        typer.Option(
            "--policies",
            help="Comma-separated policy specs, each NAME, NAME(k=v,...), "
            "file.py[:Class] or a composition a+b.",
        ),
    ],
    policy_param: PolicyParamOpt = None,
    gpu_memory: MemOpt = None,
    gpu: GpuOpt = "h200",
    param: ParamOpt = None,
    params_file: ParamFileOpt = None,
    profile: ProfileOpt = None,
    budget_ms: BudgetOpt = None,
    plot_file: Annotated[
        Path | None, typer.Option("--plot", help="Write a bar chart (PNG, SVG or PDF) of the comparison.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table as Markdown.")] = False,
    isolate: IsolateOpt = False,
    max_touches_: MaxTouchesOpt = None,
) -> None:
    """Run WORKLOAD under the driver's default and under each policy; compare them."""
    check_outputs(("--plot", plot_file), figures=("--plot",))
    specs = cmp.parse_policy_list(policies)
    rows = cmp.compare(
        workload,
        specs,
        policy_params=parse_param_overrides(policy_param or []),
        budget_ms=budget_ms,
        progress=None if as_json else (lambda s: err.print(f"[dim]running {s}[/dim]")),
        gpu=gpu,
        params=parse_params(param, params_file),
        profile=profile,
        gpu_memory=gpu_memory,
        isolate=isolate,
        max_touches=max_touches(max_touches_),
    )
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "policy": r.policy,
                        "speedup": r.speedup,
                        "totals": r.result.canonical(),
                        "ejected": r.result.meta.get("policy_ejected", []),
                        "fatal": r.result.fatal,
                    }
                    for r in rows
                ]
            )
        )
    elif markdown:
        print(cmp.markdown(rows))
    else:
        mem = rows[0].result.gpu_memory_bytes
        t = Table(title=f"{workload} on {gpu} with {fmt_bytes(mem)} of GPU memory", title_justify="left")
        for i, h in enumerate(("policy", "time", "speedup", *(c for c, _ in cmp.COLUMNS))):
            t.add_column(h, justify="left" if i == 0 else "right")
        for cells in cmp.table_rows(rows):
            t.add_row(*cells)
        out.print(t)  # each ejection was a warning line on stderr as it happened
    if plot_file is not None:
        cmp.plot(rows, plot_file, title=f"{workload}, GPU memory {gpu_memory or 'all'}")
        if not (as_json or markdown):
            out.print(f"wrote {plot_file}")


def list_cmd() -> None:
    """The built-in policies: name, what it decides, parameters, when it wins."""
    t = Table(title="built-in policies (--policy NAME or NAME(key=value,...))", title_justify="left")
    for c in ("name", "decides", "parameters", "what it does"):
        t.add_column(c)
    for name, cls in builtin_policies().items():
        fam = ", ".join(families(cls())) or "-"
        prm = ", ".join(
            [
                *(f"{k}={v!r}" for k, v in cls.params.items()),
                *(f"{k}={v}" for k, v in cls.module_params.items()),
            ]
        )
        t.add_row(name, fam, prm, summary(cls).replace("``", ""))
    out.print(t)


def run_cmd(
    workload: WorkloadArg,
    policy: Annotated[
        str, typer.Option("--policy", help="NAME, NAME(k=v,...), path/to/file.py[:Class], or a+b.")
    ],
    policy_param: PolicyParamOpt = None,
    gpu_memory: MemOpt = None,
    gpu: GpuOpt = "h200",
    param: ParamOpt = None,
    params_file: ParamFileOpt = None,
    profile: ProfileOpt = None,
    budget_ms: BudgetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print totals as JSON.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Save the result (JSON).")] = None,
    isolate: IsolateOpt = False,
    max_touches_: MaxTouchesOpt = None,
) -> None:
    """Run WORKLOAD with a policy (or a composition) and print its totals and ejections."""
    check_outputs(("--out", out_file), stdout=("--out",))
    bound = max_touches(max_touches_)
    hooks = build_hooks(
        policy, budget_ms=budget_ms, params=parse_param_overrides(policy_param or []), isolate=isolate
    )
    res = simulate_with_progress(
        workload,
        f"simulating {workload} with {policy}",
        quiet=as_json,
        gpu=gpu,
        params=parse_params(param, params_file),
        profile=profile,
        gpu_memory=gpu_memory,
        policies=hooks if hooks.slots else None,
        max_touches=bound,
    )
    if out_file is not None:
        res.save(out_file)
    if as_json:
        print(json.dumps({**res.canonical(), "policy_ejected": res.meta.get("policy_ejected", [])}))
    else:
        shown = ", ".join(hooks.labels) or "default (the driver's own)"
        out.print(f"policies: {shown}")
        out.print(res.summary())  # with a WARNING line per ejection
    if res.fatal:
        raise typer.Exit(1)


def check_cmd(
    policy: Annotated[
        str, typer.Argument(help="path/to/file.py[:Class] or a built-in name, with optional (k=v,...).")
    ],
    isolate: Annotated[
        bool,
        typer.Option("--isolate", help="Load the policy in a process of its own (loading runs its code)."),
    ] = False,
) -> None:
    """Load a policy and show what it hooks, without running anything. Loading a file runs its
    top-level code: --isolate does that in a process of its own (docs/security.md)."""
    if isolate:
        guard = build_hooks(policy, isolate=True)
        guard.close()
        pols = guard.policies
    else:
        pols = load_policies(policy)
        Guard(pols)  # composition rules
    for p in pols:
        label = getattr(p, "label", type(p).__name__)
        out.print(
            f"{label}: decides {', '.join(families(p)) or 'nothing'}; hooks "
            f"{', '.join(implemented_hooks(p)) or 'none'}"
        )
        prm = getattr(p, "params", {}) or {}
        if prm:
            out.print("  parameters: " + ", ".join(f"{k}={v!r}" for k, v in prm.items()))
        if getattr(p, "module_params", None):
            out.print("  module parameters: " + ", ".join(f"{k}={v}" for k, v in p.module_params.items()))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
    policy_app = typer.Typer(
        no_args_is_help=True, help="Programmable policies: list the built-ins, run one, check a policy file."
    )
    policy_app.command("list")(list_cmd)
    policy_app.command("run")(run_cmd)
    policy_app.command("check")(check_cmd)
    app.add_typer(policy_app, name="policy")
