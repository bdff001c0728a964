"""``bench.traced_operator`` still finds every method it times.

It wraps operator internals by name at run time; when one is renamed, ``--trace`` broke
only when someone ran a benchmark. Installed in a child process, so the test process's
classes stay unwrapped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
from bench import traced_operator
from barbeque.adapters import kube, s3, sqs
from barbeque.services import intake, poller, reconciler

originals = {
    "kube": kube.Kube._request, "sqs": sqs.Sqs._call, "s3": s3.S3._call,
    "poller": poller.Poller.handle, "intake": intake.Intake.record,
    "reconciler": reconciler.Reconciler.reconcile,
}
traced_operator.install()
now = {
    "kube": kube.Kube._request, "sqs": sqs.Sqs._call, "s3": s3.S3._call,
    "poller": poller.Poller.handle, "intake": intake.Intake.record,
    "reconciler": reconciler.Reconciler.reconcile,
}
unwrapped = [name for name in originals if originals[name] is now[name]]
assert not unwrapped, unwrapped
"""


def test_the_traced_operator_wraps_what_it_names() -> None:
    run = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
