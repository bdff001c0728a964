"""Every benchmark in one environment: dispatch, throughput, writes, memory, console.

One local control plane, one moto server; the operator is restarted for each scenario and
every scenario works in namespaces and queues of its own. Prints each scenario's table
and the machine's details (load average at start and end). ``--quick`` is the smoke
version (tiny sizes, about a minute and a half) that tests/e2e/test_bench_smoke.py runs.

    python -m bench.run_all                 # the sizes of the goals (7.5-14 min on 2 cores)
    python -m bench.run_all --quick --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import console, dispatch, memory, throughput, writes
from bench.env import common_arguments, run_scenarios

FULL = {
    "dispatch_messages": 200,
    "dispatch_rate": 10.0,
    "throughput_messages": 1000,
    "write_messages": 50,
    "executions": 10_000,
    "repeat": 30,
    "receive_wait": 20,
}
QUICK = {
    "dispatch_messages": 10,
    "dispatch_rate": 5.0,
    "throughput_messages": 20,
    "write_messages": 5,
    "executions": 200,
    "repeat": 5,
    # A stopping operator waits for its blocked long poll; short polls keep restarts quick.
    "receive_wait": 2,
}
SCENARIOS = ("dispatch", "throughput", "writes", "memory", "console")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke sizes")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only these (repeatable)"
    )
    parser.add_argument("--dispatch-messages", type=int)
    parser.add_argument("--dispatch-rate", type=float)
    parser.add_argument(
        "--receive-wait", type=int, help="JobQueue receiveWaitSeconds (20; --quick: 2)"
    )
    parser.add_argument("--throughput-messages", type=int)
    parser.add_argument("--write-messages", type=int)
    parser.add_argument("--executions", type=int, help="retained executions (memory, console)")
    parser.add_argument("--repeat", type=int, help="requests per console page")
    parser.add_argument("--profile", type=Path, help="py-spy the operator during throughput")
    common_arguments(parser)
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    chosen = args.only or list(SCENARIOS)
    plan = {
        "dispatch": lambda env: dispatch.run(
            env, sizes["dispatch_messages"], sizes["dispatch_rate"], sizes["receive_wait"]
        ),
        "throughput": lambda env: throughput.run(
            env,
            sizes["throughput_messages"],
            profile=args.profile,
            receive_wait=sizes["receive_wait"],
        ),
        "writes": lambda env: writes.run(
            env, sizes["write_messages"], receive_wait=sizes["receive_wait"]
        ),
        "memory": lambda env: memory.run(env, sizes["executions"]),
        "console": lambda env: console.run(env, sizes["executions"], sizes["repeat"]),
    }
    return run_scenarios(args, [(name, plan[name]) for name in SCENARIOS if name in chosen])


if __name__ == "__main__":
    sys.exit(main())
