# Builds the Sluice programs on Debian 12 and runs them on a slim image.
FROM debian:12 AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      gcc make pkg-config librdkafka-dev libpq-dev libcurl4-openssl-dev libjansson-dev \
      libmicrohttpd-dev uuid-dev libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make all

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      librdkafka1 libpq5 libcurl4 libjansson4 libmicrohttpd12 libuuid1 libssl3 ca-certificates \
      && rm -rf /var/lib/apt/lists/* && useradd --system --home /app sluice
WORKDIR /app
COPY --from=build /src/build/bin/ /usr/local/bin/
COPY migrations/ /app/migrations/
COPY examples/ /app/examples/
USER sluice
ENV SLUICE_MIGRATIONS=/app/migrations SLUICE_AGENTS=/app/examples/agents.json
