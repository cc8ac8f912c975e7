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
# Memory: a sync of 100k users holds ~100 MiB live, and badger's mapped
# files add ~80 MiB of RSS the Go runtime does not count. GOGC=50 lets
# garbage grow to half the live heap instead of all of it: peak RSS of a
# 100k first sync 229-232 MiB instead of 285-293, for 5-8% more sync CPU
# (BENCHMARKS.md, bench/e2e-sync.sh VARIANTS="docker gogc=50"). The soft
# limit makes the GC work harder near it; it is not a hard cap: raise it
# for very large directories.
ENV GOMEMLIMIT=256MiB
ENV GOGC=50
USER nonroot:nonroot
# 8080: login, proxy, admin API; 9090: /metrics, /healthz, /readyz
EXPOSE 8080 9090
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/ldapgate", "healthcheck", "-url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/ldapgate"]
CMD ["serve", "-config", "/etc/ldapgate/config.yaml"]
