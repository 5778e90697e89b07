# apiary-node in a container. `scripts/image` builds it with or without a registry; by hand:
#   docker build -t apiary .                      (the registry's rust and debian images)
#   docker build -t apiary --target prebuilt \
#     --build-arg RUNTIME_IMAGE=apiary-base:bookworm CONTEXT   (binaries from the host)
# Both base images are build arguments, so a local Debian base (debootstrap + docker import)
# stands in for the registry's. The image holds the six programs, Debian's RocksDB library
# and a non-root user; the data dir is the volume /data.
ARG BUILD_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# What every image runs on: Debian, its RocksDB, a user without a shell or password.
FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb7.8 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin apiary \
 && mkdir -p /data && chown apiary:apiary /data
USER apiary
# apiary-cli (and `docker exec … apiary-cli`) finds the node here without --datadir.
ENV APIARY_DATADIR=/data
VOLUME /data
# 9798: peers. 9799: /metrics, /healthy and /ready for Prometheus and orchestrators (no
# cookie). RPC (9797) stays on the container's loopback: use `docker exec … apiary-cli`,
# or add --rpc-addr 0.0.0.0:9797 knowing the cookie then crosses the network in clear.
EXPOSE 9798 9799
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s \
  CMD ["apiary-cli", "--probe", "healthy"]
ENTRYPOINT ["apiary-node", "--datadir", "/data", "--listen", "/ip4/0.0.0.0/tcp/9798"]
# Arguments given to `docker run` replace these.
CMD ["--metrics-addr", "0.0.0.0:9799"]

# Binaries built on the host (`scripts/image --prebuilt` puts them in the context's
# prebuilt/ folder): no compiler in any stage, nothing from a registry.
FROM runtime AS prebuilt
COPY prebuilt/ /usr/local/bin/

# Binaries compiled in a container. Extra CA certificates (a proxy that re-signs TLS) go
# in packaging/extra-ca/*.crt: trusted here, in the build stage only, never in the image.
FROM ${BUILD_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb-dev clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY packaging/extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
WORKDIR /src
COPY . .
# RocksDB is linked from Debian's package (as scripts/setup does), for this machine's arch.
RUN ROCKSDB_LIB_DIR="/usr/lib/$(gcc -dumpmachine)" CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked \
      -p apiary-node -p apiary-cli -p apiary-wallet -p apiary-genesis -p apiary-miner \
      -p apiary-pool \
 && mkdir /out && cp target/release/apiary-node target/release/apiary-cli \
      target/release/apiary-wallet target/release/apiary-genesis target/release/apiary-miner \
      target/release/apiary-pool /out/

FROM runtime
COPY --from=build /out/ /usr/local/bin/
