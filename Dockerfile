# syntax=docker/dockerfile:1
# sigedge: one image with both binaries, /usr/local/bin/sigedge-proxy and /usr/local/bin/sigedge-forwarder.
#
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/sigedge/sigedge:v0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=v0.1.0 -t … --push .
#
# Static binaries (CGO_ENABLED=0) on distroless/static: CA certificates and tzdata, no shell, no
# package manager, running as the nonroot user 65532 that the Helm chart's securityContext expects.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# Cross-compiled on the build platform for the target platform (no emulation).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out && \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/ ./cmd/proxy ./cmd/forwarder && \
    mv /out/proxy /out/sigedge-proxy && mv /out/forwarder /out/sigedge-forwarder

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="sigedge" \
      org.opencontainers.image.description="Edge proxy for Statsig feature gates: proxy and forwarder" \
      org.opencontainers.image.source="https://github.com/sigedge/sigedge" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/sigedge-proxy /out/sigedge-forwarder /usr/local/bin/
# 8000: SDK-facing proxy; 8001: proxy admin (/healthz, /readyz, /metrics); 8002: forwarder admin.
EXPOSE 8000 8001 8002
# distroless' nonroot user, numeric so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sigedge-proxy"]
