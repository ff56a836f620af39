# mcdata in a container: `docker run IMAGE show` runs one command (ENTRYPOINT is mcdata);
# docker-compose.yml runs the hourly job under supercronic, which logs to stdout.

# The base image is pinned to an exact release (a digest cannot be checked from our offline CI; pin one
# with `docker buildx imagetools inspect` where you build).
FROM python:3.12.12-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mcdata ./mcdata
COPY alembic ./alembic
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.12.12-slim-bookworm
# supercronic: a cron for containers (never starts a job while its previous run is alive)
ARG SUPERCRONIC_VERSION=v0.2.32
ARG SUPERCRONIC_SHA1SUM=7da26ce6ab48d75e97f7204554afe7c80779d4e0
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && curl -fsSLo /usr/local/bin/supercronic \
      "https://github.com/aptible/supercronic/releases/download/${SUPERCRONIC_VERSION}/supercronic-linux-amd64" \
 && echo "${SUPERCRONIC_SHA1SUM}  /usr/local/bin/supercronic" | sha1sum -c - \
 && chmod 0755 /usr/local/bin/supercronic \
 && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist \
 && useradd --create-home --uid 10001 mcdata \
 && install -d -m 0700 -o mcdata /data && install -d -m 0755 /etc/mcdata \
 && echo '5 * * * * mcdata --quiet run' > /etc/mcdata/crontab

USER mcdata
ENV MCDATA_DATABASE_URL=sqlite:////data/mcdata.db \
    PYTHONUNBUFFERED=1
VOLUME /data
ENTRYPOINT ["mcdata"]
CMD ["--help"]
