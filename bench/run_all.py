"""Every benchmark in one environment: dispatch, throughput, writes, memory, console,
end to end, growth, fairness (and, behind flags, growth at 100,000, container start
on the real node, and KEDA side by side).

One local control plane, one moto server; the operator is restarted for each scenario and
every scenario works in namespaces and queues of its own (end_to_end restarts
kube-controller-manager with each profile's flags and then with the cluster's own).
Prints each scenario's table and the machine's details (load average at start and end).
``--quick`` is the smoke version (tiny sizes) that tests/e2e/test_bench_smoke.py runs.

    python -m bench.run_all                 # the sizes of the goals (about an hour on 2 cores)
    python -m bench.run_all --large         # growth also at 100,000 (~25 min more)
    python -m bench.run_all --real-node     # also container start on the real node
    python -m bench.run_all --keda          # also KEDA (first: python -m bench.keda --build)
    python -m bench.run_all --quick --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import (
    console,
    container_start,
    dispatch,
    end_to_end,
    fairness,
    growth,
    keda,
    memory,
    throughput,
    writes,
)
from bench.cli import common_arguments, run_scenarios

FULL = {
    "dispatch_messages": 200,
    "dispatch_rate": 10.0,
    "throughput_messages": 1000,
    "write_messages": 50,
    "executions": 10_000,
    "repeat": 30,
    "receive_wait": 20,
    "e2e_messages": 1000,
    "growth_sizes": (1_000, 10_000),
    "backlog": 10_000,
    "fair_seconds": 60.0,
    "keda_messages": 200,
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
    "e2e_messages": 20,
    "growth_sizes": (100, 300),
    "backlog": 100,
    "fair_seconds": 5.0,
    "keda_messages": 20,
}
# growth before memory and console, whose 10,000 would leave it no smaller size to measure;
# container_start before end_to_end and fairness, whose backlogs the Job controller is still
# working off when they end (after them, the operator primed 28,917 unfinished executions
# for 100 s and the real node's warm-up execution timed out behind them).
SCENARIOS = (
    "dispatch", "throughput", "writes", "growth", "memory", "console", "container_start",
    "end_to_end", "fairness", "keda",
)  # fmt: skip
# Run only when asked: the real node is one per machine (and its owner's); KEDA's operator
# is a build of its own (bench/keda.py).
OPT_IN = {"container_start": "real_node", "keda": "keda"}


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
    parser.add_argument("--e2e-messages", type=int, help="end_to_end messages (1000)")
    parser.add_argument("--backlog", type=int, help="fairness: the flooded queue's backlog")
    parser.add_argument(
        "--large", action="store_true", help=f"growth also at {growth.LARGE} executions"
    )
    parser.add_argument(
        "--real-node", action="store_true", help="also container_start on the real node"
    )
    parser.add_argument(
        "--keda", action="store_true", help="also KEDA ScaledJob side by side (bench/keda.py)"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the operator during throughput")
    common_arguments(parser)
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for key in sizes:
        if getattr(args, key, None) is not None:
            sizes[key] = getattr(args, key)
    if args.large:
        sizes["growth_sizes"] = (*sizes["growth_sizes"], growth.LARGE)
    chosen = args.only or [s for s in SCENARIOS if s not in OPT_IN or getattr(args, OPT_IN[s])]
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
        "end_to_end": lambda env: end_to_end.run(
            env, sizes["e2e_messages"], receive_wait=sizes["receive_wait"]
        ),
        "growth": lambda env: growth.run(env, sizes["growth_sizes"], sizes["repeat"]),
        "fairness": lambda env: fairness.run(env, sizes["backlog"], seconds=sizes["fair_seconds"]),
        "container_start": lambda env: container_start.run(env),
        "keda": lambda env: keda.run(
            env, sizes["keda_messages"], receive_wait=sizes["receive_wait"]
        ),
    }
    return run_scenarios(args, [(name, plan[name]) for name in SCENARIOS if name in chosen])


if __name__ == "__main__":
    sys.exit(main())
