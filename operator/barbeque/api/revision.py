"""The revision lock: cookpad/barbeque's ``POST /v1/apps/:name/revision_lock``, on definitions.

barbeque kept one image per application and the lock rewrote that image's tag. Here each
JobDefinition has its own image, so the lock is an annotation on every definition of the
application; the Job builder runs ``image`` with its tag replaced by the annotation's
revision. ``spec.image`` stays as the application's manifests say, so a later
``kubectl apply`` of them neither undoes the lock nor fights with it, and releasing the
lock (deleting the annotation) returns each definition to its own tag.
"""

from __future__ import annotations

import re

from barbeque.api.models import GROUP, JobDefinition

REVISION_LOCK = f"{GROUP}/revision-lock"

# A Docker tag (distribution's reference grammar): what barbeque's DockerImage accepted
# as a tag ([\w.-]+), bounded as registries bound it.
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def pinned_image(image: str, revision: str) -> str:
    """``image`` with its tag (and digest, which would win over a tag) set to ``revision``.

    A colon before the last ``/`` is a registry's port (``registry:5000/app``), not a tag.
    """
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return f"{name}:{revision}"


def locked_revision(definition: JobDefinition) -> str | None:
    """The revision the definition is locked to, if any (an unusable value is ignored)."""
    value = definition.metadata.annotations.get(REVISION_LOCK)
    return value if value and TAG.match(value) else None


def effective_image(definition: JobDefinition) -> str:
    """The image a Job of ``definition`` runs: its own, or pinned to the locked revision."""
    revision = locked_revision(definition)
    image = definition.spec.image
    return pinned_image(image, revision) if revision else image
