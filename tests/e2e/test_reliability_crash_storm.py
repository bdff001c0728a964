"""Crash storm: messages keep arriving while the operator is SIGKILLed again and again.

The operator runs as its own process (``python -m barbeque operator``) against the real
local control plane and a moto server of its own. While N messages are sent (SendMessage
Batch, spread over the first half of the storm), the process is SIGKILLed at random
moments at least ten times, and started again each time. Then one last life runs until
the queue is drained, and the outcome is checked against the ids SQS gave the sent
messages: exactly N JobExecutions (one per id, none for an id never sent), N Jobs, one pod
each, every execution Succeeded, nothing left in SQS.

``BARBEQUE_CRASH_STORM_MESSAGES`` (default 1000), ``..._KILLS`` (default 10) and
``..._SEED`` (default: time) change the run; the figures are printed and kept in
``artifacts/reliability/crash-storm.json``.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import DURATION_ANNOTATION, Cluster
from tests.support import reliability
from tests.support.aws import MotoProcess
from tests.support.operator import OPERATOR_NAMESPACE, cleanup_app, local_operator, make_app

pytestmark = pytest.mark.e2e

MESSAGES = int(os.environ.get("BARBEQUE_CRASH_STORM_MESSAGES") or 1000)
KILLS = int(os.environ.get("BARBEQUE_CRASH_STORM_KILLS") or 10)
SEED = int(os.environ.get("BARBEQUE_CRASH_STORM_SEED") or time.time_ns() % 2**31)
# One kill in five comes during start-up (kopf's login, priming the store), the others at
# a random moment of up to 6 s after the poller started draining the queue.
STARTUP_KILLS = 0.2
WORKING_LIFE = (0.3, 6.0)
SEND_SECONDS = 25.0
CONVERGE_SECONDS = float(os.environ.get("BARBEQUE_CRASH_STORM_CONVERGE_SECONDS") or 600)


@pytest.mark.timeout(CONVERGE_SECONDS + 300)
def test_a_crash_storm_loses_nothing_and_doubles_nothing(
    cluster: Cluster, crds: None, moto: MotoProcess, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    app = make_app(cluster, moto.aws)
    operator = local_operator(
        cluster, moto.url, tmp_path / "operator.log", BARBEQUE_RESYNC_SECONDS="30"
    )
    try:
        app.define("storm", podAnnotations={DURATION_ANNOTATION: "300"})
        bodies = [
            json.dumps(
                {"Type": "JobExecution", "Application": app.namespace, "Job": "storm", "Message": i}
            )
            for i in range(MESSAGES)
        ]
        sent: list[str] = []
        send_errors: list[BaseException] = []

        def send() -> None:
            sqs = moto.aws.sqs()
            batches = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]
            pause = SEND_SECONDS / max(1, len(batches))
            try:
                for batch in batches:
                    sent.extend(reliability.send_batch(sqs, app.queue_url, batch))
                    time.sleep(pause)
            except BaseException as exc:
                send_errors.append(exc)

        started, started_wall = time.monotonic(), time.time()
        sender = threading.Thread(target=send, name="sender", daemon=True)
        sender.start()
        kills: list[dict[str, Any]] = []
        while len(kills) < KILLS:
            before = reliability.count(cluster, reliability.executions_path(app.namespace))
            born = time.monotonic()
            operator.start(wait=False)
            if rng.random() < STARTUP_KILLS:
                moment = "start-up"
                time.sleep(rng.uniform(0.2, 3.0))
            else:
                moment = "working"
                operator.wait_log("Draining JobQueue")
                time.sleep(rng.uniform(*WORKING_LIFE))
            assert operator.alive(), f"the operator died by itself: {operator.tail()}"
            recorded = reliability.count(cluster, reliability.executions_path(app.namespace))
            succeeded = len(
                reliability.list_all(
                    cluster,
                    reliability.executions_path(app.namespace),
                    fieldSelector="status.phase=Succeeded",
                )
            )
            operator.kill()
            kills.append(
                {
                    "at_seconds": round(time.monotonic() - started, 1),
                    "life_seconds": round(time.monotonic() - born, 2),
                    "moment": moment,
                    "messages_sent": len(sent),
                    "executions": recorded,
                    "succeeded": succeeded,
                    "created_in_life": recorded - before,
                }
            )
        sender.join(120)
        assert not send_errors, send_errors
        assert len(sent) == MESSAGES == len(set(sent))
        storm_seconds = time.monotonic() - started

        final_life_wall = time.time()
        operator.start(wait=True)
        sqs = moto.aws.sqs()
        deadline = time.monotonic() + CONVERGE_SECONDS
        executions: list[dict[str, Any]] = []
        converged = False
        while time.monotonic() < deadline and not converged:
            assert operator.alive(), f"the operator died by itself: {operator.tail()}"
            if reliability.queue_counts(sqs, app.queue_url) == (0, 0):
                executions = reliability.list_all(
                    cluster, reliability.executions_path(app.namespace)
                )
                converged = len(executions) >= MESSAGES and all(
                    reliability.phase_of(e) == "Succeeded" for e in executions
                )
            time.sleep(0 if converged else 2)
        converged_seconds = time.monotonic() - started
        # One visibility timeout (5 s) more: a message still hidden somewhere would come
        # back now and show up as an extra object.
        time.sleep(7)
        assert operator.alive(), f"the operator died by itself: {operator.tail()}"

        executions = reliability.list_all(cluster, reliability.executions_path(app.namespace))
        jobs = reliability.list_all(cluster, f"/apis/batch/v1/namespaces/{app.namespace}/jobs")
        pods = reliability.list_all(
            cluster,
            f"/api/v1/namespaces/{app.namespace}/pods",
            labelSelector=reliability.LABEL_EXECUTION,
        )
        strays = [
            e
            for e in reliability.list_all(cluster, reliability.executions_path(OPERATOR_NAMESPACE))
            if e["spec"].get("queue") == app.queue
        ]
        ids = Counter(e["spec"]["messageId"] for e in executions)
        sent_ids = set(sent)
        phases = Counter(reliability.phase_of(e) or "None" for e in executions)
        execution_uids = {e["metadata"]["name"]: e["metadata"]["uid"] for e in executions}
        job_owners = {
            j["metadata"]["name"]: [o["uid"] for o in j["metadata"].get("ownerReferences", [])]
            for j in jobs
        }
        pods_per_execution = Counter(
            p["metadata"]["labels"][reliability.LABEL_EXECUTION] for p in pods
        )
        log = operator.log_text()
        created_at = sorted(
            datetime.fromisoformat(
                e["metadata"]["creationTimestamp"].replace("Z", "+00:00")
            ).timestamp()
            for e in executions
        )
        created_in_final_life = [t for t in created_at if t >= final_life_wall - 1]
        finished_at = sorted(
            datetime.fromisoformat(e["status"]["finishedAt"]).timestamp()
            for e in executions
            if (e.get("status") or {}).get("finishedAt")
        )
        figures = {
            "messages": MESSAGES,
            "kills": len(kills),
            "lives": operator.lives,
            "seed": SEED,
            "executions": len(executions),
            "jobs": len(jobs),
            "pods": len(pods),
            "duplicates": sum(n - 1 for n in ids.values() if n > 1),
            "lost": len(sent_ids - set(ids)),
            "unexpected": len(set(ids) - sent_ids),
            "phases": dict(phases),
            "error_records_in_operator_namespace": len(strays),
            "redeliveries_absorbed_409": log.count("was already recorded as"),
            "storm_seconds": round(storm_seconds, 1),
            "last_finished_seconds": round(finished_at[-1] - started_wall, 1)
            if finished_at
            else None,
            "converged": converged,
            "final_life": {
                "executions_created": len(created_in_final_life),
                "all_created_after_seconds": (
                    round(created_in_final_life[-1] - final_life_wall, 1)
                    if created_in_final_life
                    else None
                ),
                "all_finished_after_seconds": (
                    round(finished_at[-1] - final_life_wall, 1) if finished_at else None
                ),
            },
            "wall_seconds": round(converged_seconds, 1),
            "kill_log": kills,
        }
        reliability.record_figures("crash-storm", figures)

        assert converged, f"not converged within {CONVERGE_SECONDS:.0f} s: {figures}"

        assert figures["lost"] == 0, sorted(sent_ids - set(ids))[:20]
        assert figures["duplicates"] == 0, [i for i, n in ids.items() if n > 1][:20]
        assert figures["unexpected"] == 0, sorted(set(ids) - sent_ids)[:20]
        assert len(executions) == MESSAGES
        assert phases == Counter({"Succeeded": MESSAGES}), phases
        assert not strays, [s["status"] for s in strays[:5]]
        assert sorted(job_owners) == sorted(execution_uids), "one Job per execution, same name"
        assert all(job_owners[n] == [uid] for n, uid in execution_uids.items())
        assert len(pods) == MESSAGES
        assert set(pods_per_execution.values()) == {1}, "every execution ran exactly one pod"
        assert reliability.queue_counts(sqs, app.queue_url) == (0, 0)
        assert "Traceback" not in log.split("===== life")[-1], operator.tail()
        # Every kill interrupted work: messages to record or executions to finish.
        mid_flow = [k for k in kills if k["succeeded"] < MESSAGES]
        assert len(mid_flow) == len(kills), f"kills came after the work was done: {kills}"
        assert any(k["created_in_life"] > 0 for k in kills), f"no life got to work: {kills}"
    finally:
        operator.stop()
        cleanup_app(app)
