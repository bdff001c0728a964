"""Processes the test cluster starts: free ports, liveness, stopping by pid, log tails.

Shared by the control plane (harness.py) and the real node (realnode.py); standard
library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) counts as dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def pid_exe(pid: int) -> str:
    try:
        # A binary rebuilt while it runs reads "<path> (deleted)": still the same program.
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return ""


def set_pdeathsig() -> None:
    """In the child: SIGTERM when the parent dies, so a killed test run leaves no etcd behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(
    args: list[str], log: Path, cwd: Path, env: dict[str, str], detach: bool
) -> subprocess.Popen[bytes]:
    """Start one component in a session of its own, its output appended to ``log``; unless
    ``detach`` (a cluster that outlives this process), it dies with its parent."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else set_pdeathsig,
        )


def terminate(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, and SIGKILL if it still runs ``grace`` seconds later; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_pids(pids: Iterable[tuple[str, int, str]], grace: float = 10.0) -> None:
    """SIGTERM each (name, pid, exe) whose /proc exe still matches, wait, then SIGKILL."""
    live: list[int] = []
    for _name, pid, exe in pids:
        if not pid_alive(pid):
            continue
        if exe and pid_exe(pid) and os.path.realpath(pid_exe(pid)) != os.path.realpath(exe):
            continue  # the pid was recycled by an unrelated process
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        live.append(pid)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        for pid in list(live):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not pid_alive(pid):
                live.remove(pid)
        time.sleep(0.1)
    for pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
