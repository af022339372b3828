# syntax=docker/dockerfile:1
#
# One image with all four services; the container's command picks one (order-svc, payment-svc, stock-svc or
# coordinator). Set HTTP_ADDR=0.0.0.0:<port>: the built-in defaults listen on 127.0.0.1, unreachable from outside
# the container. Build from the repository root:  docker build -t checkout:dev .

# --- build ------------------------------------------------------------------------------------------------------
# The toolchain of rust-toolchain.toml (scripts/check-deploy.sh checks that the two agree), so rustup in the image
# finds it installed and downloads nothing.
FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src

# Dependency layer: the workspace's manifests with empty sources, so the dependencies are compiled once and reused
# until Cargo.toml or Cargo.lock changes. Every workspace member must be listed here (scripts/check-deploy.sh
# checks that), since cargo refuses a workspace with a member missing.
COPY Cargo.toml Cargo.lock ./
COPY platform/Cargo.toml platform/
COPY shared-contracts/Cargo.toml shared-contracts/
COPY stock-svc/Cargo.toml stock-svc/
COPY payment-svc/Cargo.toml payment-svc/
COPY participant/Cargo.toml participant/
COPY order-svc/Cargo.toml order-svc/
COPY coordinator/Cargo.toml coordinator/
COPY sagactl/Cargo.toml sagactl/
COPY tests/Cargo.toml tests/
COPY bench/Cargo.toml bench/
ARG CRATES="platform shared-contracts stock-svc payment-svc participant order-svc coordinator sagactl tests bench"
# The four services, and sagactl, the operator's command line for the coordinator's admin API.
ARG BINARIES="order-svc payment-svc stock-svc coordinator sagactl"
RUN for crate in $CRATES; do \
        mkdir -p "$crate/src" && : >"$crate/src/lib.rs" && echo 'fn main() {}' >"$crate/src/main.rs"; \
    done \
    && cargo build --release --locked --bins $(printf -- '-p %s ' $BINARIES) \
    && rm -rf $CRATES

# The build context is what .dockerignore lets through: the crates, and docs/openapi/*.json, the committed copies
# of the OpenAPI documents the services derive. scripts/check-deploy.sh builds the workspace from exactly that set.
COPY . .
# The copied sources may carry modification times older than the stub build above; touching them makes cargo
# rebuild the workspace's own crates instead of keeping the empty stubs.
RUN find $CRATES -type f -exec touch {} + \
    && cargo build --release --locked --bins $(printf -- '-p %s ' $BINARIES) \
    && mkdir -p /out \
    && for binary in $BINARIES; do cp "target/release/$binary" /out/; done

# --- run --------------------------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# curl serves the HEALTHCHECK below (Docker and Compose); Kubernetes uses its own HTTP probes on /health.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin checkout
COPY --from=builder /out/ /usr/local/bin/
USER 10001:10001
ENV LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8001 8002 8003 8004
# /health answers 200 once the service's database answers; the port is the one in HTTP_ADDR.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${HTTP_ADDR##*:}/health" || exit 1
CMD ["order-svc"]
