# qm-ingest service image: Python 3.11 + a Java runtime for the KCL MultiLangDaemon.
# The KCL jars are fetched at build time (amazon_kclpy's build), never at run time.

FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY processor ./processor
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels qm-ingest && rm -rf /wheels
RUN useradd --system --uid 10001 --home-dir /var/lib/qm-ingest --create-home qm
USER qm
WORKDIR /var/lib/qm-ingest
ENV QM_STATE_DIR=/var/lib/qm-ingest/state \
    PYTHONUNBUFFERED=1
EXPOSE 8080
# tini forwards SIGTERM to `qm-ingest run`, which stops the KCL gracefully.
ENTRYPOINT ["/usr/bin/tini", "--", "qm-ingest"]
CMD ["run"]
