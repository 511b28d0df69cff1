# Builds the Sluice programs on Debian 12 and runs them on a slim image.
# librdkafka is built from Debian 13's source and linked statically
# (scripts/build-librdkafka says why), so the image needs its libraries'
# own dependencies (zstd, Cyrus SASL) instead of a librdkafka package.
FROM debian:12 AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      gcc make pkg-config curl ca-certificates libzstd-dev libsasl2-dev libpq-dev \
      libcurl4-openssl-dev libjansson-dev libmicrohttpd-dev libcjose-dev uuid-dev libssl-dev \
      && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make all

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libzstd1 libsasl2-2 libpq5 libcurl4 libjansson4 libcjose0 libmicrohttpd12 libuuid1 libssl3 ca-certificates \
      && rm -rf /var/lib/apt/lists/* && useradd --system --home /app sluice
WORKDIR /app
COPY --from=build /src/build/bin/ /usr/local/bin/
COPY migrations/ /app/migrations/
COPY examples/ /app/examples/
USER sluice
ENV SLUICE_MIGRATIONS=/app/migrations SLUICE_AGENTS=/app/examples/agents.json
