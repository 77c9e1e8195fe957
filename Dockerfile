# Build:  docker build -t eventtap .
# Run:    docker run -p 8080:8080 -p 9090:9090 -e EVENTTAP_ADMIN_TOKEN=change-me \
#           -v "$PWD/docs/examples/container.yaml:/etc/eventtap/config.yaml:ro" -v eventtap-data:/data eventtap
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/eventtap . \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/eventtap /usr/local/bin/eventtap
COPY --from=build --chown=65532:65532 /out/data /data
COPY docs/examples/container.yaml /etc/eventtap/config.yaml
COPY docs/examples/orders.rules.yaml /etc/eventtap/rules.yaml
USER 65532:65532
# 8080: the proxy (clients); 9090: admin (GraphQL, /metrics, /healthz, /readyz).
EXPOSE 8080 9090
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/eventtap"]
CMD ["serve", "--config", "/etc/eventtap/config.yaml"]
