"""Fairness: one queue flooded with a backlog, nine quiet ones at a steady rate.

Ten applications with a JobQueue each, drained by one operator. In one run:

1. **quiet alone** (the baseline): nine quiet queues get ``--rate`` messages/s each for
   ``--seconds``; SendMessage returned -> Job seen by a watch, per message.
2. **flood + quiet**: ``--backlog`` messages are put in the tenth queue's SQS queue, its
   JobQueue is created, and the nine quiet queues get the same load as in 1 while it
   drains. Reported: the quiet queues' p50/p99 and Jobs/s against 1 (the ratio), and the
   flooded queue's drain rate (first receive -> last Job).
3. **flood alone** (unless ``--no-flood-alone``): the same backlog in a fresh queue with
   nothing else: the drain rate the flooded queue would have had by itself.

    python -m bench.fairness --backlog 10000 --rate 10 --seconds 60
    python -m bench.fairness --backlog 1000 --seconds 20          # quicker
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor

from barbeque.services.naming import execution_name
from bench.cli import bench_main, pod_ms_argument
from bench.env import App, Environment, Result, Watch, Window, log, message_body, percentile

QUIET = 9
GOAL_P99 = 1.0


def _spec(pod_ms: int) -> dict[str, str]:
    return {"barbeque.dev/kwok-duration-ms": str(pod_ms)}


def send_steadily(
    env: Environment, apps: list[App], rate: float, seconds: float
) -> dict[str, dict[str, float]]:
    """``rate`` messages/s to each app's queue for ``seconds`` (a thread per queue);
    returns {namespace: {execution name: time SendMessage returned}}."""
    sent: dict[str, dict[str, float]] = {}

    def sender(app: App) -> None:
        sent[app.namespace] = env.send_steadily(app, int(rate * seconds), rate)

    with ThreadPoolExecutor(len(apps)) as pool:
        list(pool.map(sender, apps))
    return sent


def quiet_figures(
    sent: dict[str, dict[str, float]], watches: dict[str, Watch], seconds: float
) -> tuple[list[float], float]:
    """Send -> Job latencies of every quiet message, and Jobs/s per quiet queue."""
    latencies: list[float] = []
    for namespace, names in sent.items():
        watch = watches[namespace]
        watch.wait_names(set(names), 120 + len(names), f"the Jobs of {namespace}")
        latencies += [watch.added[name] - at for name, at in names.items()]
    per_queue = sum(len(names) for names in sent.values()) / len(sent)
    last = max(watches[ns].added[name] for ns, names in sent.items() for name in names)
    first = min(at for names in sent.values() for at in names.values())
    return latencies, per_queue / max(last - first, seconds)


def flood(env: Environment, prefix: str, backlog: int, pod_ms: int) -> tuple[App, set[str]]:
    app = env.new_app(
        prefix,
        definition_spec={"podAnnotations": _spec(pod_ms)},
        create_queue=False,
    )
    log(f"fairness: {backlog} messages into {app.queue}")
    sent = env.send_batch(app, [message_body(app, "hello", {"i": i}) for i in range(backlog)])
    return app, {execution_name(m) for m, _ in sent}


def drain_rate(env: Environment, app: App, names: set[str], jobs: Watch, window: Window) -> float:
    jobs.wait_names(names, 300 + len(names) / 2, f"every Job of {app.queue}")
    window.close()
    t0 = window.aws("sqs").get("ReceiveMessage", {}).get("first_with_messages")
    if t0 is None:
        raise RuntimeError("moto saw no ReceiveMessage that returned messages")
    return len(names) / (max(jobs.added[n] for n in names) - t0)


def run(
    env: Environment,
    backlog: int = 10_000,
    rate: float = 10.0,
    seconds: float = 60.0,
    pod_ms: int = 1000,
    flood_alone: bool = True,
) -> Result:
    result = Result(
        "fairness",
        f"Fairness: {QUIET} quiet queues at {rate:g}/s, one with a backlog of {backlog}",
        {"backlog": backlog, "rate_per_queue": rate, "seconds": seconds, "pod_ms": pod_ms},
    )
    env.start_operator()
    quiet = [
        env.new_app(f"quiet{i}", definition_spec={"podAnnotations": _spec(pod_ms)})
        for i in range(QUIET)
    ]
    for app in quiet:
        env.wait_queue_ready(app)
    watches = {app.namespace: env.watch_jobs(app.namespace) for app in quiet}
    flooded: App | None = None
    try:
        # Warm-up, not counted: connections and the first reconciles.
        send_steadily(env, quiet, 2.0, 1.0)
        log("fairness: quiet queues alone")
        alone = send_steadily(env, quiet, rate, seconds)
        alone_latency, alone_rate = quiet_figures(alone, watches, seconds)

        flooded, names = flood(env, "flood", backlog, pod_ms)
        jobs = env.watch_jobs(flooded.namespace)
        window = Window(env).open()
        env.create_jobqueue(flooded)
        log("fairness: quiet queues while the flood drains")
        during = send_steadily(env, quiet, rate, seconds)
        flood_latency, flood_rate = quiet_figures(during, watches, seconds)
        drained_jobs = sum(1 for n in names if n in jobs.added)
        flooded_rate = drain_rate(env, flooded, names, jobs, window)
        jobs.stop()
        env.delete_jobqueue(flooded)
    finally:
        for watch in watches.values():
            watch.stop()
        for app in quiet:
            env.delete_jobqueue(app)

    alone_drain = None
    if flood_alone:
        env.start_operator()
        solo, solo_names = flood(env, "solo", backlog, pod_ms)
        solo_jobs = env.watch_jobs(solo.namespace)
        try:
            solo_window = Window(env).open()
            env.create_jobqueue(solo)
            alone_drain = drain_rate(env, solo, solo_names, solo_jobs, solo_window)
        finally:
            solo_jobs.stop()
            env.delete_jobqueue(solo)
    env.stop_operator()

    p99 = percentile(flood_latency, 99)
    result.add(
        "quiet send -> Job p50 during the flood",
        percentile(flood_latency, 50),
        "s",
        baseline=percentile(alone_latency, 50),
    )
    result.add(
        "quiet send -> Job p99 during the flood",
        p99,
        "s",
        baseline=percentile(alone_latency, 99),
        goal=f"<= {GOAL_P99:g} s",
        ok=p99 <= GOAL_P99,
    )
    result.add(
        "quiet Jobs/s per queue during the flood",
        flood_rate,
        "/s",
        baseline=alone_rate,
        note=f"ratio {100 * flood_rate / alone_rate:.0f} % of quiet alone",
    )
    result.add(
        "flooded queue drain, first receive -> last Job",
        flooded_rate,
        "Jobs/s",
        baseline=alone_drain,
        note=(
            f"{drained_jobs} of {backlog} Jobs made while the quiet queues sent"
            + (
                f"; {100 * flooded_rate / alone_drain:.0f} % of the flood alone"
                if alone_drain
                else ""
            )
        ),
    )
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backlog", type=int, default=10_000, help="messages in the flooded queue")
    parser.add_argument("--rate", type=float, default=10.0, help="messages/s per quiet queue")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long quiet queues send")
    pod_ms_argument(parser)
    parser.add_argument(
        "--no-flood-alone",
        dest="flood_alone",
        action="store_false",
        help="skip the flooded queue's solo drain",
    )


if __name__ == "__main__":
    sys.exit(bench_main("fairness", __doc__, arguments, run))
