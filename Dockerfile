# syntax=docker/dockerfile:1
# The operator image: a release build of `twilio-operator` on distroless, running as nonroot.
#
#   docker build -t twilio-operator:0.1.0 .
#
# The binary links glibc dynamically (aws-lc, rustls' crypto provider, is built from C), so the
# runtime image is distroless/cc, which also holds the CA certificates rustls verifies Twilio's
# and the API server's certificates against. The operator writes nothing to its filesystem: it
# runs with a read-only root filesystem.
#
# Without Docker, `hack/image.sh operator` writes an OCI image with the same layout: the binary
# as /twilio-operator, glibc, libgcc_s and the dynamic loader at the paths distroless/cc has them,
# the CA bundle at /etc/ssl/certs/ca-certificates.crt, user 65532:65532, the same entrypoint,
# cmd, port and labels. Keep the two in step.

ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other members (fake Twilio, test kit, bench) are needed for Cargo to read the
# workspace; only the operator package is built.
COPY crates ./crates
# Cache mounts keep the registry and compiled dependencies between builds; the binary is copied
# out of the cached target directory, which does not persist into the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p twilio-operator --bin twilio-operator \
    && cp target/release/twilio-operator /twilio-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="twilio-operator" \
      org.opencontainers.image.description="Twilio API keys as Kubernetes resources" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /twilio-operator /twilio-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/twilio-operator"]
CMD ["run"]
