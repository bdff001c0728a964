"""``python -m tests.cluster build|up|down|status|env``: the harness from a shell.

``up`` leaves a cluster running in a named workdir (default
``~/.cache/barbeque/run/local``) so a developer can point kubectl, helm or the
operator at it; ``down`` stops it by the pids recorded in ``cluster.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
from pathlib import Path

from tests.cluster import binaries, chartdocs, images, realnode
from tests.cluster.harness import (
    Cluster,
    ClusterError,
    default_workdir,
    pid_alive,
    read_state,
    stop_workdir,
)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _workdir(args: argparse.Namespace) -> Path:
    return Path(args.workdir).expanduser().resolve() if args.workdir else default_workdir(args.name)


def cmd_build(_args: argparse.Namespace) -> int:
    start = time.monotonic()
    missing = binaries.missing_binaries()
    path = binaries.ensure_binaries(_err)
    verb = "built" if missing else "already present"
    ready = [b.name for b in binaries.BINARIES if b.available()]
    _out(f"{verb}: {', '.join(missing or ready)} in {path} ({time.monotonic() - start:.1f} s)")
    for b in binaries.BINARIES:
        if not b.available():
            _err(f"not built: {binaries.unavailable_reason(b.name)}")
    return 0


def cmd_images(_args: argparse.Namespace) -> int:
    start = time.monotonic()
    built = images.ensure_images(_err)
    for ref in (built.app, built.job, built.pause):
        uncompressed, compressed = images.image_sizes(ref)
        _out(f"{ref:<48} {uncompressed:>8} ({compressed / 1e6:.0f} MB compressed)")
    _out(f"ready in {time.monotonic() - start:.1f} s (storage {images.images_dir()})")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    workdir = _workdir(args)
    cluster = Cluster(workdir, nodes=args.nodes, progress=_err, detach=True)
    cluster.start()
    if args.real_node:
        reason = realnode.unavailable_reason() or images.unavailable_reason()
        if reason:
            _err(f"no real node: {reason}")
        else:
            built = images.ensure_images(_err)
            cluster.start_real_node(built.archives, built.pause)
            _out(f"real node:  {realnode.NODE_NAME} (job image {built.job}, app {built.app})")
    _out(f"server:     {cluster.server}")
    _out(f"kubeconfig: {cluster.kubeconfig}")
    _out(f"logs:       {cluster.logs_dir}")
    _out(
        f"started in {cluster.timings['ready']:.1f} s; stop with: python -m tests.cluster down"
        + (
            f" --workdir {workdir}"
            if args.workdir
            else f" --name {args.name}"
            if args.name != "local"
            else ""
        )
    )
    _out(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = stop_workdir(_workdir(args))
    _out(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running in {_workdir(args)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    workdir = _workdir(args)
    state = read_state(workdir)
    if not state:
        _out(f"not running ({workdir} has no cluster.json)")
        return 1
    healthy = True
    for proc in state.get("processes", []):
        alive = pid_alive(int(proc["pid"]))
        healthy &= alive
        _out(f"{proc['name']:<24} pid {proc['pid']:<8} {'running' if alive else 'DEAD'}")
    cluster = Cluster(workdir, build=False)
    cluster.server = str(state["server"])
    cluster.admin_token = (workdir / "pki" / "admin.token").read_text().strip()
    try:
        ready = cluster.api("GET", "/readyz", raw=True).strip()
    except (OSError, urllib.error.URLError, ClusterError) as err:
        ready = f"unreachable ({err})"
        healthy = False
    _out(f"server {cluster.server}: {ready}")
    _out(f"kubeconfig {cluster.kubeconfig}")
    return 0 if healthy else 1


def cmd_env(args: argparse.Namespace) -> int:
    workdir = _workdir(args)
    _out(f"export KUBECONFIG={workdir / 'kubeconfig'}")
    _out(f'export PATH="{binaries.bin_dir()}:$PATH"')
    return 0


def cmd_chart_readme(args: argparse.Namespace) -> int:
    no_go = "helm-docs" in binaries.missing_binaries() and binaries.find_go() is None
    if no_go and not os.environ.get("CI"):
        _err("chart README not checked: helm-docs is not built and Go is not installed")
        return 0
    if args.write:
        _out(f"wrote {chartdocs.write()}")
        return 0
    problems = chartdocs.drift()
    for problem in problems:
        _err(problem)
    if problems:
        _err("run `python -m tests.cluster chart-readme --write` (after editing values.yaml)")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster",
        description="Local Kubernetes control plane (etcd, kube-apiserver, controller-manager, "
        "scheduler, kwok) "
        f"built from source, Kubernetes {binaries.KUBERNETES_VERSION}. See docs/cluster.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name not in ("build", "images", "chart-readme"):
            where = p.add_mutually_exclusive_group()
            where.add_argument(
                "--name", default="local", help="cluster name: workdir ~/.cache/barbeque/run/NAME"
            )
            where.add_argument("--workdir", help="explicit workdir (overrides --name)")
        return p

    add("build", "build or fetch the binaries into ~/.cache/barbeque/k8s-<version>/bin if missing")
    up = add("up", "start a cluster that keeps running after this command (fresh etcd each time)")
    up.add_argument("--nodes", type=int, default=1, help="number of fake kwok Nodes (default 1)")
    up.add_argument(
        "--real-node",
        action="store_true",
        help="also join a real node (containerd + kubelet, needs root) with the project's "
        "images imported; see docs/cluster.md",
    )
    add("images", "build the project's images (Dockerfile, job, sandbox) and print their sizes")
    add("down", "stop the cluster started by `up` (by the pids in cluster.json)")
    add("status", "show the processes and /readyz of a cluster started by `up`")
    add("env", "print shell exports: KUBECONFIG and PATH with the cached kubectl/helm")
    readme = add(
        "chart-readme",
        "check (default) or write charts/barbeque/README.md, made by helm-docs from values.yaml",
    )
    mode = readme.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if it differs (the default)")
    mode.add_argument("--write", action="store_true", help="write the README instead")
    args = parser.parse_args(argv)
    handlers = {
        "build": cmd_build,
        "images": cmd_images,
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "env": cmd_env,
        "chart-readme": cmd_chart_readme,
    }
    try:
        return handlers[args.command](args)
    except (ClusterError, binaries.BuildError, realnode.RealNodeError) as err:
        _err(f"error: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
