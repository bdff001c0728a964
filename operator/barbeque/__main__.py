"""Command line of Barbeque on Kubernetes: ``python -m barbeque <command>`` or ``barbeque``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO_CRD_DIRS = [Path("crds"), Path("charts/barbeque/crds")]


def _crds(args: argparse.Namespace) -> int:
    from barbeque.api import crdgen

    directories = [Path(d) for d in args.dir] if args.dir else REPO_CRD_DIRS
    if args.check:
        problems = crdgen.drift(directories)
        for problem in problems:
            sys.stderr.write(problem + "\n")
        if problems:
            sys.stderr.write(
                "CRDs drifted from the models; run `python -m barbeque crds --write`\n"
            )
            return 1
        return 0
    if args.write:
        for path in crdgen.write(directories):
            sys.stdout.write(f"wrote {path}\n")
        return 0
    for name, text in crdgen.render_all().items():
        sys.stdout.write(f"---\n# {name}\n{text}")
    return 0


def _grafana(args: argparse.Namespace) -> int:
    from barbeque import grafana

    if args.check:
        problems = grafana.drift()
        for problem in problems:
            sys.stderr.write(problem + "\n")
        if problems:
            sys.stderr.write("run `python -m barbeque grafana --write`\n")
        return 1 if problems else 0
    if args.write:
        sys.stdout.write(f"wrote {grafana.write()}\n")
        return 0
    sys.stdout.write(grafana.render())
    return 0


def _import(args: argparse.Namespace) -> int:
    import os

    from barbeque.adapters import mysql
    from barbeque.services import importer

    url = args.database or os.environ.get("BARBEQUE_IMPORT_DATABASE")
    if not url:
        sys.stderr.write(
            "barbeque import: give --database mysql://user:password@host:3306/barbeque "
            "(or BARBEQUE_IMPORT_DATABASE)\n"
        )
        return 2
    try:
        tables = mysql.read_tables(mysql.Dsn.parse(url))
    except mysql.SourceError as exc:
        sys.stderr.write(f"barbeque import: {exc}\n")
        return 2
    result = importer.build(tables)
    text = result.render()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    for note in (*result.comments, *result.problems):
        sys.stderr.write(note + "\n")
    kinds = ", ".join(
        f"{sum(1 for _, body in result.documents if body['kind'] == kind)} {kind}"
        for kind in ("Namespace", "JobQueue", "JobDefinition", "SNSSubscription")
    )
    sys.stderr.write(f"barbeque import: {kinds}; {len(result.problems)} skipped\n")
    return 1 if result.problems else 0


def _operator(args: argparse.Namespace) -> int:
    import kopf

    import barbeque.handlers  # noqa: F401  (registers the handlers)
    from barbeque import logs
    from barbeque.config import get_settings, secret_values

    settings = get_settings()  # fail fast on bad settings, before connecting anywhere
    logs.configure(
        settings.log_format,
        logging.DEBUG if args.verbose else logging.INFO,
        secrets=secret_values(settings),
    )
    # kopf says "Handler 'x' succeeded." at INFO for every watch event (~15 per execution);
    # formatting them cost 15 % of the event loop under load.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=True,
        standalone=settings.standalone,
        liveness_endpoint=args.liveness,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="barbeque",
        description="Barbeque on Kubernetes: a job queue run as a Kubernetes operator.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    operator = commands.add_parser(
        "operator",
        help="run the operator (settings from BARBEQUE_* environment variables)",
    )
    operator.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz",
    )
    operator.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    operator.set_defaults(func=_operator)

    crds = commands.add_parser("crds", help="print, write or check the generated CRD YAML")
    mode = crds.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write crds/ and charts/barbeque/crds/")
    mode.add_argument("--check", action="store_true", help="exit 1 if the checked-in YAML drifted")
    crds.add_argument(
        "--dir", action="append", help="directory to write or check (repeatable; default both)"
    )
    crds.set_defaults(func=_crds)

    dashboard = commands.add_parser(
        "grafana",
        help="print, write or check the chart's Grafana dashboard (needs grafana-foundation-sdk)",
    )
    mode = dashboard.add_mutually_exclusive_group()
    mode.add_argument(
        "--write", action="store_true", help="write charts/barbeque/files/grafana-dashboard.json"
    )
    mode.add_argument("--check", action="store_true", help="exit 1 if the checked-in JSON drifted")
    dashboard.set_defaults(func=_grafana)

    migrate = commands.add_parser(
        "import",
        help="write manifests (namespaces, JobQueues, JobDefinitions) from a cookpad/barbeque "
        "MySQL database, for kubectl apply (needs barbeque-k8s[import])",
        description="Reads apps, job_definitions, retry_configs, slack_notifications, "
        "job_queues and sns_subscriptions and writes YAML for kubectl apply. Rows that cannot "
        "be imported are listed on stderr and as comments, and the exit status is 1.",
    )
    migrate.add_argument(
        "--database",
        metavar="URL",
        help="mysql://user:password@host:3306/barbeque (default: $BARBEQUE_IMPORT_DATABASE)",
    )
    migrate.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="where to write the YAML (default -)"
    )
    migrate.set_defaults(func=_import)

    from barbeque import __version__
    from barbeque_client.cli import add_completion, register

    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    register(commands)
    add_completion(commands, parser, "barbeque")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
