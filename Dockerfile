# syntax=docker/dockerfile:1.6
# Both binaries (dtp, taskpilot) in one slim image; the compose file picks which one runs.

# ---- build: the workspace, with the cargo registry and target dir cached across builds, so a
# code change recompiles our crates, not the dependencies.
# Pinned: the toolchain is the workspace's rust-version, the base the runtime's Debian.
FROM rust:1.89.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dtp -p taskpilot \
 && install -m 0755 target/release/dtp target/release/taskpilot /usr/local/bin/

# ---- run: no toolchain, no sources, a non-root user. curl is for the health checks.
FROM debian:12.11-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home taskpilot
COPY --from=build /usr/local/bin/dtp /usr/local/bin/taskpilot /usr/local/bin/
USER taskpilot:taskpilot
ENV RUST_LOG=info
EXPOSE 8080 8081
CMD ["dtp"]
