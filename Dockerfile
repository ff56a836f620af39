# mcdata in a container: `docker run IMAGE show` runs one command (ENTRYPOINT is mcdata);
# docker-compose.yml runs the hourly job under supercronic, which logs to stdout.
# Where the database is: /etc/mcdata/config.toml (MCDATA_CONFIG) says sqlite:////data/mcdata.db; an
# MCDATA_DATABASE_URL or MCDATA_DATABASE_URL_FILE given to the container wins over it (flag > env > file).
# The base image is pinned to an exact release (a digest cannot be checked from our offline CI; pin one
# with `docker buildx imagetools inspect` where you build). Every dependency is installed from
# requirements.lock, pinned with SHA-256 hashes (pip --require-hashes; README, "Container", says how to
# regenerate it). Checked with hadolint (tests/test_deploy.py).

FROM python:3.12.12-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mcdata ./mcdata
COPY alembic ./alembic
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.12.12-slim-bookworm
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# supercronic: a cron for containers (never starts a job while its previous run is alive), per platform
ARG TARGETARCH=amd64
# (the SHA-256 digests GitHub's release API reports for the v0.2.49 assets)
ARG SUPERCRONIC_VERSION=v0.2.49
ARG SUPERCRONIC_SHA256_AMD64=a53ae236602c7338aba3fbaff40bda6300eae3b9fedb8261eb06cfe3724430c1
ARG SUPERCRONIC_SHA256_ARM64=02aa0cb229ba09050cba6638059dadb9eedc2276632ea43d6a57a2f8c1629dd5
# hadolint ignore=DL3008
RUN case "${TARGETARCH}" in \
      amd64) sum="${SUPERCRONIC_SHA256_AMD64}" ;; \
      arm64) sum="${SUPERCRONIC_SHA256_ARM64}" ;; \
      *) echo "no supercronic checksum for ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && curl -fsSLo /usr/local/bin/supercronic \
      "https://github.com/aptible/supercronic/releases/download/${SUPERCRONIC_VERSION}/supercronic-linux-${TARGETARCH}" \
 && echo "${sum}  /usr/local/bin/supercronic" | sha256sum -c - \
 && chmod 0755 /usr/local/bin/supercronic \
 && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

COPY requirements.lock /tmp/requirements.lock
COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock \
 && pip install --no-cache-dir --no-deps /tmp/dist/*.whl && rm -rf /tmp/dist /tmp/requirements.lock \
 && useradd --create-home --uid 10001 mcdata \
 && install -d -m 0700 -o mcdata /data && install -d -m 0755 /etc/mcdata \
 && echo '5 * * * * mcdata --quiet run' > /etc/mcdata/crontab \
 && printf 'database_url = "sqlite:////data/mcdata.db"\n' > /etc/mcdata/config.toml

USER 10001
ENV MCDATA_CONFIG=/etc/mcdata/config.toml \
    PYTHONUNBUFFERED=1
VOLUME /data
# healthy: the last run finished within 2 h without failing, and every pair has a sample newer than 2 h
# (`mcdata status` exits 1 otherwise, 4 when the database is down; it only reads, even during a run).
# The start period covers the first run's backfill.
HEALTHCHECK --interval=5m --timeout=30s --start-period=20m --retries=2 CMD ["mcdata", "--quiet", "status"]
ENTRYPOINT ["mcdata"]
CMD ["--help"]
