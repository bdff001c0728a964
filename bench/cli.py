"""The command line every benchmark script shares: the common flags, the flags several
scenarios take, and :func:`bench_main`, which parses them and runs the scenario in a fresh
:class:`bench.env.Environment`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.env import (
    Environment,
    Result,
    loadavg,
    log,
    machine_info,
    out,
    render,
    render_machine,
    wait_for_quiet_machine,
)


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=4, help="kwok nodes (default 4)")
    parser.add_argument(
        "--ref", help="run the operator (and dashboard) of this git ref instead of the work tree"
    )
    parser.add_argument("--workers", type=int, help="BARBEQUE_WORKERS of the operator")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the operator (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run the operator under bench.traced_operator (adapter call and loop timings)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs)")
    parser.add_argument(
        "--wait-load",
        type=float,
        metavar="LOAD",
        help="before starting, wait up to 10 min for the 1-minute load average to fall below LOAD",
    )


def receive_wait_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--receive-wait", type=int, default=20, help="JobQueue receiveWaitSeconds")


def pod_ms_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pod-ms", type=int, default=1000, help="how long each pod runs")


def run_scenarios(args: Any, scenarios: list[tuple[str, Callable[[Environment], Result]]]) -> int:
    """Start an environment, run the scenarios in order, print tables and machine info."""
    # SIGTERM unwinds like Ctrl-C, so that everything started is stopped by pid.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.wait_load:
        log(f"waiting for the load average to fall below {args.wait_load}: {loadavg()}")
        wait_for_quiet_machine(args.wait_load, 600)
    info = machine_info()
    load_start = loadavg()
    started = time.monotonic()
    results: list[Result] = []
    failures: list[str] = []
    operator_env = dict(item.split("=", 1) for item in args.operator_env)
    with Environment(
        nodes=args.nodes,
        ref=args.ref,
        keep=args.keep,
        workers=args.workers,
        operator_env=operator_env,
        trace=args.trace,
    ) as env:
        info["operator source"] = env.source
        for name, scenario in scenarios:
            log(f"scenario {name}: load average {loadavg()}")
            try:
                result = scenario(env)
            except Exception as exc:
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                log(f"scenario {name} failed: {exc}")
                if env.operator is not None:
                    log("operator log tail:\n" + env.operator.tail())
                continue
            results.append(result)
            out(render(result))
        if args.keep:
            log(f"logs kept in {env.scratch}")
    load_end = loadavg()
    out(render_machine(info, load_start, load_end))
    out(f"total wall time {time.monotonic() - started:.0f} s")
    for failure in failures:
        out(f"FAILED {failure}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "load_start": load_start,
                    "load_end": load_end,
                    "results": [r.to_json() for r in results],
                    "failures": failures,
                },
                indent=2,
            )
        )
    return 1 if failures else 0


def bench_main(
    name: str,
    description: str | None,
    arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[..., Result],
    argv: list[str] | None = None,
) -> int:
    """The command line of a one-scenario script, ``python -m bench.<name>``: its own flags
    (``arguments``), then the common ones; ``run(env, **own flags by dest)`` is the scenario,
    run by :func:`run_scenarios`."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    arguments(parser)
    own = list(vars(parser.parse_args([])))  # the dests of the script's own flags
    common_arguments(parser)
    args = parser.parse_args(argv)
    return run_scenarios(args, [(name, lambda env: run(env, **{k: getattr(args, k) for k in own}))])
