"""Client commands of the ``barbeque`` CLI: enqueue, status, retry, cancel, wait, executions.

They talk to the Web API (``--url`` or ``BARBEQUE_URL``) with a bearer token (``--token``
or ``BARBEQUE_TOKEN``). Results go to stdout (JSON with ``--json``); progress of waits
goes to stderr so scripts can capture the message id alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from barbeque.sdk.client import Client, Execution

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_TIMEOUT = 3


def _client(args: argparse.Namespace) -> Client:
    # httpx is imported only when a client command runs, so `barbeque operator` does not need it.
    from barbeque.sdk.client import Client

    return Client(args.url, token=args.token or None)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Progress:
    """One line per status change on stderr (rewritten in place on a terminal)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last: str | None = None

    def __call__(self, execution: Execution, elapsed: float) -> None:
        line = f"{execution.message_id}: {execution.status} ({elapsed:.0f}s)"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            if execution.finished:
                self.stream.write("\n")
        elif execution.status != self.last:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last = execution.status


def _wait(client: Client, message_id: str, args: argparse.Namespace) -> int:
    from barbeque.sdk.client import WaitTimeout

    try:
        execution = client.wait(
            message_id,
            timeout=args.timeout,
            interval=args.interval,
            progress=None if args.quiet else Progress(),
        )
    except WaitTimeout as exc:
        sys.stderr.write(f"timed out: {exc.message}\n")
        return EXIT_TIMEOUT
    if args.json:
        _out(json.dumps(execution.__dict__))
    elif execution.html_url and not args.quiet:
        sys.stderr.write(f"{execution.html_url}\n")
    return 0 if execution.succeeded else EXIT_FAILED


def _message(raw: str | None) -> Any:
    if raw is None or raw == "-":
        raw = sys.stdin.read() if raw == "-" else "null"
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SystemExit(f"barbeque: MESSAGE must be JSON ({exc})") from None


def _enqueue(args: argparse.Namespace) -> int:
    with _client(args) as client:
        message_id = client.enqueue(
            args.job,
            _message(args.message),
            queue=args.queue,
            application=args.application,
            delay_seconds=args.delay,
        )
        if args.json:
            _out(json.dumps({"message_id": message_id, "status": "pending"}))
        else:
            _out(message_id)
        return _wait(client, message_id, args) if args.wait else 0


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        execution = client.status(args.message_id)
    if args.json:
        _out(json.dumps(execution.__dict__))
    else:
        _out(execution.status)
    return 0


def _retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        message_id = client.retry(args.message_id, delay_seconds=args.delay)
        _out(json.dumps({"message_id": message_id}) if args.json else message_id)
        return _wait(client, message_id, args) if args.wait else 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        execution = client.cancel(args.message_id)
    _out(json.dumps(execution.__dict__) if args.json else execution.status)
    return 0


def _wait_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _wait(client, args.message_id, args)


def _table(rows: list[Any]) -> str:
    header = ("MESSAGE ID", "APPLICATION", "JOB", "STATUS", "ATTEMPT", "CREATED")
    lines = [header] + [
        (r.message_id, r.application, r.job, r.status, str(r.attempt), r.created_at or "")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _executions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        seen: dict[str, str] = {}
        while True:
            rows = client.executions(
                application=args.application,
                job=args.job,
                queue=args.queue,
                status=args.status,
                per_page=args.limit,
            )
            if args.json:
                for row in rows:
                    if not args.watch or seen.get(row.message_id) != row.status:
                        _out(json.dumps(row.raw))
            elif not args.watch:
                _out(_table(rows))
            else:
                changed = [r for r in reversed(rows) if seen.get(r.message_id) != r.status]
                for row in changed:
                    _out(f"{row.message_id}  {row.application}/{row.job}  {row.status}")
            for row in rows:
                seen[row.message_id] = row.status
            if not args.watch:
                return 0
            time.sleep(args.interval)


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("BARBEQUE_URL", DEFAULT_URL),
        help=f"Web API base URL (env BARBEQUE_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("BARBEQUE_TOKEN"),
        help="bearer token (env BARBEQUE_TOKEN)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def _waiting(parser: argparse.ArgumentParser, flag: bool = True) -> None:
    if flag:
        parser.add_argument("--wait", action="store_true", help="wait until it finishes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def _guard(func: Any) -> Any:
    """Turn SDK errors into one line on stderr and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            from barbeque.sdk.client import BarbequeError
        except ModuleNotFoundError as exc:
            sys.stderr.write(
                f"barbeque: the client commands need {exc.name}: "
                "pip install 'barbeque-k8s[dashboard]'\n"
            )
            return EXIT_ERROR
        try:
            result: int = func(args)
        except BarbequeError as exc:
            code = f" ({exc.status_code} {exc.error_code})" if exc.status_code else ""
            sys.stderr.write(f"barbeque: {exc.message}{code}\n")
            return EXIT_ERROR
        except KeyboardInterrupt:
            return 130
        return result

    return run


def register(commands: Any) -> None:
    """Add the client subcommands to the ``barbeque`` parser."""
    enqueue = commands.add_parser("enqueue", help="enqueue a message to a job (Web API)")
    enqueue.add_argument("job", help="job name (JobDefinition)")
    enqueue.add_argument(
        "message", nargs="?", help="message as JSON ('-' reads stdin; default null)"
    )
    enqueue.add_argument(
        "-a",
        "--application",
        default=os.environ.get("BARBEQUE_APPLICATION"),
        help="application (namespace; env BARBEQUE_APPLICATION)",
    )
    enqueue.add_argument("-Q", "--queue", default="default", help="JobQueue name (default)")
    enqueue.add_argument("--delay", type=int, default=None, help="delay in seconds")
    _connection(enqueue)
    _waiting(enqueue)
    enqueue.set_defaults(func=_guard(_enqueue))

    status = commands.add_parser("status", help="status of an execution by message id")
    status.add_argument("message_id")
    _connection(status)
    status.set_defaults(func=_guard(_status))

    retry = commands.add_parser("retry", help="retry a failed execution")
    retry.add_argument("message_id")
    retry.add_argument("--delay", type=int, default=0, help="delay in seconds")
    _connection(retry)
    _waiting(retry)
    retry.set_defaults(func=_guard(_retry))

    cancel = commands.add_parser("cancel", help="cancel a pending or running execution")
    cancel.add_argument("message_id")
    _connection(cancel)
    cancel.set_defaults(func=_guard(_cancel))

    wait = commands.add_parser("wait", help="wait for an execution to finish")
    wait.add_argument("message_id")
    _connection(wait)
    _waiting(wait, flag=False)
    wait.set_defaults(func=_guard(_wait_command))

    executions = commands.add_parser("executions", help="list executions, newest first")
    executions.add_argument("-a", "--application")
    executions.add_argument("-j", "--job")
    executions.add_argument("-Q", "--queue")
    executions.add_argument("-s", "--status", help="pending, running, success, failed, ...")
    executions.add_argument("--limit", type=int, default=20, help="rows (20)")
    executions.add_argument(
        "-w", "--watch", action="store_true", help="keep polling and print changes"
    )
    executions.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    _connection(executions)
    executions.set_defaults(func=_guard(_executions))
