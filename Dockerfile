# syntax=docker/dockerfile:1
#
# One image for both Deployments of the chart (charts/barbeque):
#   operator:  barbeque operator --liveness http://0.0.0.0:8081/healthz   (the default CMD)
#   dashboard: python -m barbeque_dashboard                               (listens on 8000)
#
# Build: docker build -t barbeque:0.1.0 .        (or: buildah build -t barbeque:0.1.0 .)
# The base image is pinned to an exact tag; bump it deliberately. Both stages use it. Any
# Debian-like image with python (3.11), pip, groupadd and useradd will do as a replacement:
# the tests build one from Debian packages, as no registry is reachable there
# (--build-arg PYTHON_IMAGE=localhost/barbeque-python:..., see tests/cluster/images.py).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- builder: wheels of the project and of every dependency ------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY operator/ operator/
COPY dashboard/ dashboard/
# The SDK and client CLI (barbeque_client): the `barbeque` command includes them.
COPY client/ client/

# The project's own wheel first (no dependencies), then the wheels of its dependencies,
# the dashboard extra included, all into /wheels, at the versions the tests ran with
# (constraints.txt, the same file scripts/bootstrap installs with).
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels -c constraints.txt "$(ls /wheels/barbeque_k8s-*.whl)[dashboard]"

# ---- runtime: the same slim base, no compilers, no build tools ---------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/barbeque \
    PATH=/opt/barbeque/bin:$PATH

# Install only from the builder's wheels: nothing is fetched or compiled here. The wheels
# are bind-mounted, so they take no layer of the final image. The venv gets no pip of its
# own (the base's pip installs into it): nothing installs packages at run time. The
# kubernetes client's asyncio copy (kubernetes.aio, ~70 MB with its bytecode) goes too:
# only its config loaders are used (the operator and console run from this image in
# tests/e2e/test_real_node.py).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv --without-pip "$VIRTUAL_ENV" \
 && pip --python "$VIRTUAL_ENV/bin/python" install --no-index --find-links=/wheels \
      "barbeque-k8s[dashboard]" \
 && rm -rf "$VIRTUAL_ENV"/lib/python3*/site-packages/kubernetes/aio \
 && groupadd --system --gid 10001 barbeque \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin barbeque

# A root-owned, read-only working directory: `python -m` puts the working directory first
# on sys.path, so it must not be a writable one such as /tmp (an emptyDir in the chart).
WORKDIR /opt/barbeque
USER 10001:10001

# 8080: operator /metrics; 8081: operator /healthz (kopf liveness); 8000: dashboard.
EXPOSE 8080 8081 8000

ENTRYPOINT ["barbeque"]
CMD ["operator"]
