# syntax=docker/dockerfile:1
# responder's image: the package and its dependencies in a virtualenv, installed from the
# hashed lock (requirements.lock, `make lock`), the shipped rule packs in /app/rules, run as
# an unprivileged user (uid 10001).
#
#   docker build -t responder .
#   docker run --rm -p 8080:8080 -e RESPONDER_ALERTMANAGER_TOKEN=... responder
#
# Kubernetes: deploy/kubernetes/ (the pods mount their packs from a ConfigMap instead).

# An exact release, so two builds start from the same Python and Debian: move it on purpose.
# (Pin the digest as well, python:<tag>@sha256:..., where your registry gives it.)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# pyproject.toml names README.md as the long description, so the build needs it
COPY pyproject.toml requirements.lock README.md ./
COPY responder/ responder/
# Every dependency, the build's setuptools included, from the lock: pinned, each file
# checked against its hashes, and the install fails if anything is missing from it. Then
# the package itself, built with those (no index, nothing else downloaded). Not editable:
# the package, its templates and Lua scripts are copied into the venv.
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock \
 && /opt/venv/bin/pip install --no-deps --no-build-isolation --no-index . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -c "from importlib.resources import files; \
d = files('responder.render') / 'defaults'; \
assert any(p.name.endswith('.j2') for p in d.iterdir()), 'message templates missing'" \
 && /opt/venv/bin/responder --help >/dev/null

# ------------------------------------------------------------------------------ final
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="responder" \
      org.opencontainers.image.description="Automated first responder for production alerts"
RUN groupadd --system --gid 10001 responder \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin responder
# root owns the code and the packs; the service only reads them
COPY --from=builder /opt/venv /opt/venv
COPY rules/*.yaml /app/rules/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RESPONDER_RULES=/app/rules
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# slim has no curl: the standard library asks /healthz (any answer but 2xx fails)
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RESPONDER_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["responder"]
CMD ["serve", "--host", "0.0.0.0"]
