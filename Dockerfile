# Multi-stage build of the gateway. The same image also carries `stoney-slapd`, which
# runs the directory (`stoney-slapd slapd`) built from the ldif/ compiled into it.
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY ldif ./ldif
RUN cargo build --release --locked -p stoney-gateway -p stoney-slapd

# OpenLDAP 2.6.14 or newer from Debian's source package (bookworm's slapd 2.5.13
# crash-loops after a restart in replication); the launcher runs it from
# /var/cache/stoney-openldap/current.
FROM debian:bookworm AS openldap
COPY scripts/build-openldap /usr/local/bin/build-openldap
COPY scripts/openldap-patches /usr/local/bin/openldap-patches
RUN apt-get update && bash /usr/local/bin/build-openldap

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ldap-utils libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=openldap /var/cache/stoney-openldap /var/cache/stoney-openldap
COPY --from=build /src/target/release/stoney-gateway /usr/local/bin/stoney-gateway
COPY --from=build /src/target/release/stoney-slapd /usr/local/bin/stoney-slapd
EXPOSE 8080 389
ENTRYPOINT ["/usr/local/bin/stoney-gateway"]
CMD ["serve"]
