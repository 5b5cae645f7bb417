# Multi-stage build of the gateway. The same image also runs the directory
# (`stoney-gateway slapd`), built from the ldif/ compiled into the binary.
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY ldif ./ldif
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd ldap-utils ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/stoney-gateway /usr/local/bin/stoney-gateway
EXPOSE 8080 389
ENTRYPOINT ["/usr/local/bin/stoney-gateway"]
CMD ["serve"]
