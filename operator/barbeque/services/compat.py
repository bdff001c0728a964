"""Which Kubernetes API servers the operator runs on, asked once at start.

The operator watches unfinished JobExecutions with a field selector on ``status.phase``,
a CRD ``selectableField``: beta and on by default since Kubernetes 1.31 (alpha, off, in
1.30). An older server accepts the CRD but drops its selectable fields and answers every
such watch with 400, so the operator would start and then never see an execution. It
refuses such a server at start instead, naming the version it found and the one it needs.
The chart's ``kubeVersion`` says the same to helm (a test keeps the two equal).
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

MIN_KUBERNETES = (1, 31)

_GIT_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


class UnsupportedServer(Exception):
    """The API server is older than the operator supports; retrying will not help."""


def server_version(info: dict[str, Any]) -> tuple[int, int] | None:
    """(major, minor) of a ``GET /version`` answer, or None when it names none.

    ``gitVersion`` first ("v1.31.2-eks-7f9249a"); managed clusters may answer
    ``minor: "31+"``, so the digits of major/minor are the fallback.
    """
    found = _GIT_VERSION.match(str(info.get("gitVersion") or ""))
    if found:
        return int(found.group(1)), int(found.group(2))
    major = re.match(r"\d+", str(info.get("major") or ""))
    minor = re.match(r"\d+", str(info.get("minor") or ""))
    if major and minor:
        return int(major.group()), int(minor.group())
    return None


def require_supported(info: dict[str, Any]) -> None:
    """Raise :class:`UnsupportedServer` for a server older than :data:`MIN_KUBERNETES`.

    A server that names no version it can be judged by is let through with a warning:
    refusing a working cluster over its version string would be worse than a late error.
    """
    version = server_version(info)
    needed = ".".join(map(str, MIN_KUBERNETES))
    if version is None:
        logger.warning(
            "The API server's version %r says no major.minor; going on, but Barbeque needs "
            "Kubernetes %s or later",
            info,
            needed,
        )
        return
    if version < MIN_KUBERNETES:
        found = info.get("gitVersion") or ".".join(map(str, version))
        raise UnsupportedServer(
            f"the API server is Kubernetes {found}; Barbeque needs {needed} or later: it "
            "watches unfinished JobExecutions by the CRD's selectable field status.phase "
            "(selectableFields, on by default since 1.31). Upgrade the cluster, or run a "
            "Barbeque release made for this version"
        )
