# apiary-node in a container: docker build -t apiary . && docker run -v apiary:/data apiary
# Multi-stage: Rust and the build tools stay in the first stage; the image holds the
# binaries, Debian's RocksDB library and a non-root user. The data dir is the volume /data.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb-dev clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# RocksDB is linked from Debian's package (as scripts/setup does), for this machine's arch.
RUN ROCKSDB_LIB_DIR="/usr/lib/$(gcc -dumpmachine)" cargo build --release --locked \
      -p apiary-node -p apiary-cli -p apiary-wallet -p apiary-genesis -p apiary-miner \
      -p apiary-pool

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb7.8 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin apiary \
 && mkdir -p /data && chown apiary:apiary /data
COPY --from=build /src/target/release/apiary-node /src/target/release/apiary-cli \
     /src/target/release/apiary-wallet /src/target/release/apiary-genesis \
     /src/target/release/apiary-miner /src/target/release/apiary-pool /usr/local/bin/
USER apiary
VOLUME /data
# 9798: peers. 9799: /metrics, /healthy and /ready for Prometheus and orchestrators (no
# cookie). RPC (9797) stays on the container's loopback: use `docker exec … apiary-cli`,
# or add --rpc-addr 0.0.0.0:9797 knowing the cookie then crosses the network in clear.
EXPOSE 9798 9799
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["apiary-cli", "--datadir", "/data", "--raw", "chain_tip"]
ENTRYPOINT ["apiary-node", "--datadir", "/data", "--listen", "/ip4/0.0.0.0/tcp/9798"]
# Arguments given to `docker run` replace these.
CMD ["--metrics-addr", "0.0.0.0:9799"]
