// Package standin is a stand-in for the part of Kong Gateway 3.9.3 that runs
// a Go plugin: it launches the real plugin binary, talks to it over the real
// plugin socket protocol (go-pdk's server/kong_plugin_protocol messages), and
// proxies HTTP requests through Kong's phases so end-to-end tests can run
// without Kong.
//
// Use:
//
//	node := standin.StartT(t, standin.Options{
//		Plugin:  "/path/to/mcp-relay",          // file name = plugin name
//		Deck:    "kong/kong.yaml",
//		Targets: map[string][]string{"mcp-replicas": {replica1, replica2}},
//		Env:     []string{"MCP_RELAY_METRICS_ADDR=127.0.0.1:0"}, // as nginx_main_env keeps it
//	})
//	resp, _ := http.Post(node.URL()+"/mcp", ...)
//	rec := <-node.Records() // events and PDK calls of a request, after its Log event
//
// What follows Kong (each file names its Kong source in comments):
//
//   - Process (plugin_servers/process.lua): `<plugin> -dump` (Protocol, Name,
//     Priority, Phases, Schema of Plugins[1]); the start command run as
//     `exec <start_cmd>` through the shell, nothing added (default
//     `<plugin> -kong-prefix DIR`, what a non-default prefix needs), output
//     copied line by line; nginx's cleared environment (TZ and Env only);
//     respawned at most once a second when it dies; SIGTERM on Close;
//     ReloadPlugin as `kong reload` (new process first, with the new
//     worker's own connections and instances; SIGTERM to the old one, not
//     respawned, once the old worker's requests, open streams included,
//     are over).
//   - Socket (plugin_servers/rpc/pb_rpc.lua): little-endian length frames,
//     RpcCall/RpcReturn, the bridge loop of method-name and argument frames;
//     one connection per call from a keepalive pool that keeps only
//     connections whose peer is open and silent (nginx's keepalive close
//     handler); method names derived from pluginsocket.proto as
//     load_service does; "method %q not found"; handle_event's reset and
//     retry on "no plugin instance" / "closed", "pluginserver error" + 500
//     otherwise; a failed send raises (pb_rpc.lua asserts it): no retry,
//     500.
//   - Instances (plugin_servers/plugin.lua, plugins_iterator.lua): one per
//     plugin entity, cmd_start_instance with cjson of the config plus
//     route_id/service_id/consumer_id, __plugin_id, __ws_id, __key__,
//     __seq__; concurrent starts wait for the first (up to 10 s, then
//     "Could not claim instance_id"); a start that raised leaves its claim.
//   - PDK (kong/pdk/*.lua, plugin.lua exposed_api): every rpc of the Kong
//     service, with check_phase/check_not_phase as Kong declares them and
//     the same error texts; a Lua error in access gives 500 and skips later
//     access handlers; kong.response.exit ends the event without an answer
//     (the coroutine yields or ngx.exit runs), the connection is closed when
//     the request is finalized; Log answers from the saved data
//     (serialize, request/response headers, status, ngx.ctx clone,
//     kong.ctx.shared, req_start_time), and request-bound APIs fail there
//     ("API disabled in the current context").
//   - Phases (kong/init.lua): rewrite (global plugins), router
//     (traditional_compatible priorities, strip_path, path_handling v0),
//     access in priority order with key-auth (1250) emulated
//     (plugins/key-auth), buffered_proxying set when a collected plugin has
//     a response handler and cleared by set_ctx, Kong.response (whole answer,
//     Response handlers, then the body), streaming with a flush per chunk
//     otherwise (the head with the first chunk, as proxy_buffering on sends
//     it), header_filter headers (Via, Server, X-Kong-*), Kong.log with the
//     Log event in a goroutine after the response; a head over nginx's
//     header buffers (4 8k) refused before any phase.
//   - Balancer (runloop/balancer, init.lua Kong.balancer): round-robin wheel
//     with weights, shuffled; set_target and set_upstream; Host from
//     set_host_header (set_target makes it the bare host); retries for
//     connection errors and timeouts (not for a POST already sent);
//     connect/send/read timeouts per operation; tries with state/code; an
//     upstream keepalive pool that keeps only connections whose peer is
//     open and silent (ngx_http_upstream_keepalive_close_handler).
//   - Errors (kong/error_handlers.lua, kong/tools/http.lua, pdk/response.lua):
//     502/504/500 bodies negotiated from Accept, then Content-Type, then
//     text/plain; kong.response.error negotiated from Accept (JSON by
//     default).
//   - Deck (db/schema/others/declarative_config.lua, entities/*.lua):
//     deterministic v5 UUIDs (random for key-auth credentials), entity
//     defaults, plugin configs through the dumped schema
//     (process_auto_fields + validate: types, required, default, one_of,
//     between, len_*, match/not_match Lua patterns, entity checks), nulls
//     removed as the plugins iterator reads them.
//
// Not modelled: more than one nginx worker (one instance per plugin
// config), stream/TLS/gRPC/WebSocket proxying, health checks of types
// other than http (tcp ones are off on HTTP upstreams, as in Kong), DNS
// TTLs and SRV records, bundled plugins other than key-auth, consumer
// groups, vaults, configuration reloads (ReloadPlugin does only the plugin
// side; SetTargets is the Admin API's target change), nginx's proxy_buffering
// (responses are flushed chunk by chunk even though Kong's location / has
// proxy_buffering on, which can batch small chunks unless the upstream
// sends X-Accel-Buffering: no) but for its one visible effect on a stream:
// the response head waits for the first body bytes.
package standin
