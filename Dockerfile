# syntax=docker/dockerfile:1
# qm-ingest service image: Python 3.11 + a Java 17 runtime for the KCL MultiLangDaemon.
#
# Stage 1 builds every wheel, amazon_kclpy's included: its build downloads the KCL jars from
# Maven Central into the package, so they are baked into the image and nothing is fetched
# at run time. Stage 2 is the slim runtime: no compiler, no pip cache, a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/qm-ingest
COPY requirements.lock pyproject.toml README.md ./
COPY schemas ./schemas
COPY processor ./processor
# The runtime dependencies only (no moto, no test tools), each at its locked version and
# hash, the build tools too: the builds run without isolation, so nothing unhashed is
# fetched. The jars land in /opt/qm-ingest/lib/python3.11/site-packages/amazon_kclpy/jars.
# The server only: qm-desktop (the agent PC's recorder) and the development tools (the
# embedded emulator, the simulator, the demo, the fault proxy) are left out of the image.
RUN rm -rf processor/desktop processor/devtools \
    && /opt/qm-ingest/bin/pip install --require-hashes -r requirements.lock \
    && /opt/qm-ingest/bin/pip install --no-deps --no-build-isolation . \
    && /opt/qm-ingest/bin/python -c "from processor.adapters.kcl.daemon import jars_dir; \
from processor.platform.settings import Settings; print('KCL jars:', jars_dir(Settings()))"

FROM ${PYTHON_IMAGE} AS runtime
# Versions are Debian bookworm's (security updates arrive through the base image tag).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/qm-ingest --create-home qm
COPY --from=build /opt/qm-ingest /opt/qm-ingest
ENV PATH=/opt/qm-ingest/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    QM_STATE_DIR=/var/lib/qm-ingest/state \
    QM_HEALTH_HOST=0.0.0.0 \
    QM_HEALTH_PORT=8080 \
    QM_LOG_FORMAT=json
WORKDIR /var/lib/qm-ingest
USER 10001:10001
EXPOSE 8080
# Liveness: /healthz on the service's own port (standard library only, no curl in the image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "processor.entrypoints.probe", "healthz"]
# tini is PID 1: it forwards SIGTERM to `qm-ingest run` (which asks the KCL to checkpoint and
# release its leases, then exits within 10 s) and reaps the record processors the Java
# daemon leaves behind.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "qm-ingest"]
CMD ["run"]
