# IntentProof Gateway daemon image.
#
#   docker build -t intentproof .
#   docker run -d -p 127.0.0.1:9787:9787 -e INTENTPROOF_INGEST_TOKEN=change-me \
#       -v intentproof-data:/data intentproof
#
# The build step is the same `cargo build --locked` CI runs. Inside the
# container the daemon listens on 0.0.0.0 (the container's own network), so
# it refuses to start without INTENTPROOF_INGEST_TOKEN; reads always need the
# token in /data/token (`docker exec <id> cat /data/token`).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p intentproof-cli \
    && install -m 0755 target/release/intentproof /usr/local/bin/intentproof

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin intentproof \
    && mkdir -p /data \
    && chown intentproof:intentproof /data \
    && chmod 0700 /data
COPY --from=build /usr/local/bin/intentproof /usr/local/bin/intentproof
USER 10001:10001
ENV INTENTPROOF_DATA_DIR=/data \
    INTENTPROOF_LISTEN=0.0.0.0:9787
VOLUME ["/data"]
EXPOSE 9787
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["intentproof", "health", "--server", "http://127.0.0.1:9787"]
ENTRYPOINT ["intentproof"]
CMD ["serve"]
