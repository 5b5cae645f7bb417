# Multi-stage build of the gateway. The same image also carries `stoney-slapd`, which
# runs the directory (`stoney-slapd slapd`) built from the ldif/ compiled into it.
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY ldif ./ldif
RUN cargo build --release --locked -p stoney-gateway -p stoney-slapd

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd ldap-utils ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/stoney-gateway /usr/local/bin/stoney-gateway
COPY --from=build /src/target/release/stoney-slapd /usr/local/bin/stoney-slapd
EXPOSE 8080 389
ENTRYPOINT ["/usr/local/bin/stoney-gateway"]
CMD ["serve"]
