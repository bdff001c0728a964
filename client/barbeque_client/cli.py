"""The client CLI: enqueue, status, retry, cancel, wait, executions, logs, completion.

Three names, one parser: ``barbeque <command>`` (the server distribution, beside
``operator`` and ``crds``), ``barbeque-client <command>`` and ``kubectl barbeque <command>``
(installed as ``kubectl-barbeque``). They talk to the Web API (``--url`` or
``BARBEQUE_URL``) with a bearer token (``--token`` or ``BARBEQUE_TOKEN``); the application
defaults to ``BARBEQUE_APPLICATION``, else the namespace of the kubeconfig's current
context (an application is a namespace).

Results go to stdout in the format of ``-o`` (``json``, ``yaml``, ``name``, ``wide``, or the
default table/word); progress of waits goes to stderr, so scripts capture the result alone.

Exit codes never mix outcomes: 0 done (or the execution succeeded), 1 the execution
failed or ended in error, 2 usage error (argparse), 3 gave up waiting, 4 the Web API
refused the request or could not be reached, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from barbeque_client.client import Client, Execution, ExecutionSummary

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_API = 4
EXIT_INTERRUPTED = 130
OUTPUTS = ("json", "yaml", "name", "wide")


def _client(args: argparse.Namespace) -> Client:
    # httpx is imported only when a client command runs, so `barbeque operator` does not need it.
    from barbeque_client.client import Client

    return Client(args.url, token=args.token or None)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def kube_namespace(kubeconfig: str | None = None, context: str | None = None) -> str | None:
    """The namespace of the kubeconfig's current (or named) context, as kubectl reads it."""
    paths = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
    import yaml

    for path in paths.split(os.pathsep):
        try:
            config = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        wanted = context or config.get("current-context")
        for entry in config.get("contexts") or []:
            if entry.get("name") == wanted:
                namespace = (entry.get("context") or {}).get("namespace")
                return str(namespace) if namespace else "default"
    return None


def _application(args: argparse.Namespace) -> str | None:
    explicit: str | None = getattr(args, "application", None)
    return (
        explicit
        or os.environ.get("BARBEQUE_APPLICATION")
        or kube_namespace(context=getattr(args, "context", None))
    )


def _dump(value: Any, output: str | None) -> str:
    if output == "yaml":
        import yaml

        return str(yaml.safe_dump(value, sort_keys=False)).rstrip("\n")
    return json.dumps(value, indent=2 if sys.stdout.isatty() else None)


def _show_execution(execution: Execution, output: str | None) -> None:
    if output in ("json", "yaml"):
        _out(_dump(execution.__dict__, output))
    elif output == "name":
        _out(execution.message_id)
    elif output == "wide":
        _out(f"{execution.message_id}\t{execution.status}\t{execution.html_url or ''}")
    else:
        _out(execution.status)


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
    from barbeque_client.client import WaitTimeout

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
    if args.output:
        _show_execution(execution, args.output)
    elif execution.html_url and not args.quiet:
        sys.stderr.write(f"{execution.html_url}\n")
    return EXIT_OK if execution.succeeded else EXIT_FAILED


def _message(raw: str | None) -> Any:
    if raw is None or raw == "-":
        raw = sys.stdin.read() if raw == "-" else "null"
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _Usage(f"MESSAGE must be JSON ({exc})") from None


class _Usage(Exception):
    """A usage error found after parsing (exit 2, as argparse's own)."""


def _created(message_id: str, output: str | None) -> None:
    if output in ("json", "yaml"):
        _out(_dump({"message_id": message_id, "status": "pending"}, output))
    else:
        _out(message_id)


def _enqueue(args: argparse.Namespace) -> int:
    application = _application(args)
    if not application:
        raise _Usage("no application: give -a, set BARBEQUE_APPLICATION or a kube context")
    with _client(args) as client:
        message_id = client.enqueue(
            args.job,
            _message(args.message),
            queue=args.queue,
            application=application,
            delay_seconds=args.delay,
        )
        _created(message_id, args.output)
        return _wait(client, message_id, args) if args.wait else EXIT_OK


def _show_after(action: Callable[[Client, str], Execution], args: argparse.Namespace) -> int:
    """Run ``action`` on the named execution and show the execution it answers."""
    with _client(args) as client:
        execution = action(client, args.message_id)
    _show_execution(execution, args.output)
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    return _show_after(lambda client, message_id: client.status(message_id), args)


def _retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        message_id = client.retry(args.message_id, delay_seconds=args.delay)
        _created(message_id, args.output)
        return _wait(client, message_id, args) if args.wait else EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    return _show_after(lambda client, message_id: client.cancel(message_id), args)


def _wait_command(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _wait(client, args.message_id, args)


def _table(rows: Sequence[ExecutionSummary], wide: bool = False) -> str:
    header: tuple[str, ...] = ("MESSAGE ID", "APPLICATION", "JOB", "STATUS", "ATTEMPT", "CREATED")
    if wide:
        header += ("QUEUE", "PHASE", "FINISHED", "URL")
    lines = [header]
    for r in rows:
        line: tuple[str, ...] = (
            r.message_id,
            r.application,
            r.job,
            r.status,
            str(r.attempt),
            r.created_at or "",
        )
        if wide:
            line += (r.queue, r.phase, r.finished_at or "", r.html_url or "")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _show_rows(rows: Sequence[ExecutionSummary], output: str | None) -> None:
    if output == "json" or output == "yaml":
        _out(_dump([row.raw for row in rows], output))
    elif output == "name":
        for row in rows:
            _out(row.message_id)
    else:
        _out(_table(rows, wide=output == "wide"))


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
            if not args.watch:
                _show_rows(rows, args.output)
                return EXIT_OK
            changed = [r for r in reversed(rows) if seen.get(r.message_id) != r.status]
            for row in changed:
                if args.output == "json":
                    _out(json.dumps(row.raw))  # one object per line, for jq
                elif args.output == "name":
                    _out(row.message_id)
                else:
                    _out(f"{row.message_id}  {row.application}/{row.job}  {row.status}")
            for row in rows:
                seen[row.message_id] = row.status
            time.sleep(args.interval)


def _logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.follow:
            for text in client.follow_logs(args.message_id, interval=args.interval):
                sys.stdout.write(text)
                sys.stdout.flush()
            return EXIT_OK
        chunk = client.logs(args.message_id)
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
    return EXIT_OK


# -- completion -------------------------------------------------------------------------------


def _words(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]]]:
    commands: dict[str, list[str]] = {}
    top: list[str] = []
    for action in parser._actions:  # argparse keeps them here and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                commands[name] = [o for a in sub._actions for o in a.option_strings]
        else:
            top += action.option_strings
    return top, commands


def completion_script(parser: argparse.ArgumentParser, shell: str, prog: str) -> str:
    """A bash or zsh completion script for ``prog`` (bash's, loaded by zsh's bashcompinit)."""
    top, commands = _words(parser)
    function = "_" + prog.replace("-", "_").replace(" ", "_")
    cases = "\n".join(
        f'        {name}) opts="{" ".join(options)}" ;;' for name, options in commands.items()
    )
    body = f"""# {shell} completion for {prog}; generated by `{prog} completion {shell}`.
{function}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" command="" opts="" word
    for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case "$word" in -*) ;; *) command="$word"; break ;; esac
    done
    case "$command" in
        "") opts="{" ".join([*commands, *top])}" ;;
{cases}
    esac
    case "${{COMP_WORDS[COMP_CWORD-1]}}" in
        -o|--output) opts="{" ".join(OUTPUTS)}" ;;
    esac
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}}
"""
    if shell == "zsh":
        body = "autoload -U +X bashcompinit && bashcompinit\n" + body
    # `kubectl barbeque` completes as the plugin's own command, kubectl-barbeque.
    return body + f"complete -F {function} {prog.replace(' ', '-')}\n"


# -- wiring -----------------------------------------------------------------------------------


def _connection(parser: argparse.ArgumentParser, output: bool = True) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("BARBEQUE_URL", DEFAULT_URL),
        help=f"Web API base URL (env BARBEQUE_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("BARBEQUE_TOKEN"),
        help="bearer token of the Web API (env BARBEQUE_TOKEN)",
    )
    if output:
        parser.add_argument(
            "-o",
            "--output",
            choices=OUTPUTS,
            default=None,
            help="output format: json, yaml, name (message ids only) or wide (more columns)",
        )
        parser.add_argument(
            "--json",
            dest="output",
            action="store_const",
            const="json",
            help="the same as -o json",
        )


def _waiting(parser: argparse.ArgumentParser, flag: bool = True) -> None:
    if flag:
        parser.add_argument("--wait", action="store_true", help="wait until it finishes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls (1)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn SDK errors into one line on stderr and exit 4, usage errors into exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            from barbeque_client.client import BarbequeError
        except ModuleNotFoundError as exc:
            sys.stderr.write(
                f"barbeque: the client commands need {exc.name}: pip install barbeque-client\n"
            )
            return EXIT_API
        try:
            return func(args)
        except _Usage as exc:
            sys.stderr.write(f"barbeque: {exc}\n")
            return EXIT_USAGE
        except BarbequeError as exc:
            code = f" ({exc.status_code} {exc.error_code})" if exc.status_code else ""
            sys.stderr.write(f"barbeque: {exc.message}{code}\n")
            return EXIT_API
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    return run


def _application_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a",
        "--application",
        default=None,
        help="application (namespace; env BARBEQUE_APPLICATION, else the kube context's)",
    )


def _one_execution(
    commands: Any, name: str, help: str, func: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """A subcommand on one execution, named by its SQS message id."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help)
    parser.add_argument("message_id", help="the execution's SQS message id")
    _connection(parser)
    parser.set_defaults(func=_guard(func))
    return parser


def register(commands: Any) -> None:
    """Add the client subcommands to a parser's subcommands."""
    enqueue = commands.add_parser("enqueue", help="enqueue a message to a job (Web API)")
    enqueue.add_argument("job", help="job name (JobDefinition)")
    enqueue.add_argument(
        "message", nargs="?", help="message as JSON ('-' reads stdin; default null)"
    )
    _application_option(enqueue)
    enqueue.add_argument("-Q", "--queue", default="default", help="JobQueue name (default)")
    enqueue.add_argument("--delay", type=int, default=None, help="delay in seconds")
    enqueue.add_argument("--context", help="kubeconfig context whose namespace is the application")
    _connection(enqueue)
    _waiting(enqueue)
    enqueue.set_defaults(func=_guard(_enqueue))

    _one_execution(commands, "status", "status of an execution by message id", _status)
    retry = _one_execution(commands, "retry", "retry a failed execution", _retry)
    retry.add_argument("--delay", type=int, default=0, help="delay in seconds (0)")
    _waiting(retry)
    _one_execution(commands, "cancel", "cancel a pending or running execution", _cancel)
    wait = _one_execution(commands, "wait", "wait for an execution to finish", _wait_command)
    _waiting(wait, flag=False)

    executions = commands.add_parser(
        "executions", aliases=["list"], help="list executions, newest first"
    )
    executions.add_argument("-a", "--application", help="only this application (namespace)")
    executions.add_argument("-j", "--job", help="only this job")
    executions.add_argument("-Q", "--queue", help="only this JobQueue")
    executions.add_argument("-s", "--status", help="pending, running, success, failed, ...")
    executions.add_argument("--limit", type=int, default=20, help="rows (20)")
    executions.add_argument(
        "-w", "--watch", action="store_true", help="keep polling and print changes"
    )
    executions.add_argument("--interval", type=float, default=2.0, help="seconds between polls (2)")
    _connection(executions)
    executions.set_defaults(func=_guard(_executions))

    logs = commands.add_parser(
        "logs", help="an execution's log: the pod's while it runs, S3's afterwards"
    )
    logs.add_argument("message_id", help="the execution's message id")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until the execution ends"
    )
    logs.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls with -f (1)"
    )
    _connection(logs, output=False)
    logs.set_defaults(func=_guard(_logs))


def build_parser(prog: str = "barbeque-client") -> argparse.ArgumentParser:
    """The standalone client's parser (``barbeque-client`` and ``kubectl barbeque``)."""
    from barbeque_client import __version__

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Client of the Barbeque on Kubernetes Web API.",
        epilog="exit codes: 0 ok, 1 execution failed, 2 usage, 3 wait timed out, "
        "4 Web API refused or unreachable",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(commands)
    add_completion(commands, parser, prog)
    return parser


def add_completion(commands: Any, parser: argparse.ArgumentParser, prog: str) -> None:
    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell")

    def run(args: argparse.Namespace) -> int:
        _out(completion_script(parser, args.shell, prog).rstrip("\n"))
        return EXIT_OK

    completion.set_defaults(func=run)


def _prog(argv0: str) -> str:
    name = Path(argv0).name
    return "kubectl barbeque" if name == "kubectl-barbeque" else "barbeque-client"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(_prog(sys.argv[0]))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
