# Kong Gateway 3.9 with mcp-relay bundled.
#   docker build -t kong-mcp-relay .
#   docker run -e KONG_DATABASE=off -e KONG_DECLARATIVE_CONFIG=/deck/kong.yaml \
#     -e KONG_ERROR_TEMPLATE_JSON=/etc/kong/mcp-relay/error_template.json \
#     -v "$PWD/deck:/deck:ro" -p 8000:8000 kong-mcp-relay
# where deck/kong.yaml is a copy of one of kong/examples/*.yaml with your MCP
# server replicas as the upstream's targets (kong/kong.yaml targets the
# loopback demo replicas of `make run`).
ARG GO_VERSION=1.26
ARG KONG_IMAGE=kong:3.9

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.1.0
# Static, so it runs on any base image Kong ships.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.Version=${VERSION}" \
      -o /out/mcp-relay ./plugin \
 && /out/mcp-relay -dump > /dev/null

FROM ${KONG_IMAGE}
# The executable's name is the plugin's name in Kong.
COPY --from=build --chown=root:root --chmod=0755 /out/mcp-relay /usr/local/bin/mcp-relay
# Opt in with KONG_ERROR_TEMPLATE_JSON=/etc/kong/mcp-relay/error_template.json
# (it changes Kong's own JSON error bodies on every route; see the README).
COPY --chown=root:root --chmod=0644 kong/error_template.json /etc/kong/mcp-relay/error_template.json
ENV KONG_PLUGINS=bundled,mcp-relay \
    KONG_PLUGINSERVER_NAMES=mcp-relay \
    KONG_PLUGINSERVER_MCP_RELAY_SOCKET=/usr/local/kong/mcp-relay.socket \
    KONG_PLUGINSERVER_MCP_RELAY_START_CMD=/usr/local/bin/mcp-relay \
    KONG_PLUGINSERVER_MCP_RELAY_QUERY_CMD="/usr/local/bin/mcp-relay -dump"
USER kong
