# ldapgate: static binary on a minimal base, non-root, store on /data.
# The build stage runs the same `go build` as the e2e tests (e2e/ops_main_test.go).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ldapgate .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ldapgate /usr/local/bin/ldapgate
COPY config.example.yaml /etc/ldapgate/config.example.yaml
# The store (badger) lives here; mount a volume so users, sessions and the
# sync audit survive restarts. One container per volume: badger locks it.
VOLUME ["/data"]
# config.yaml should say data_dir: /data
# A soft heap limit: the Go GC works harder near it instead of letting
# garbage double the footprint (the store measured ~100 MiB live for 100k
# users). Raise it for very large directories; it is not a hard cap.
ENV GOMEMLIMIT=256MiB
USER nonroot:nonroot
# 8080: login, proxy, admin API; 9090: /metrics, /healthz, /readyz
EXPOSE 8080 9090
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/ldapgate", "healthcheck", "-url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/ldapgate"]
CMD ["serve", "-config", "/etc/ldapgate/config.yaml"]
