package standin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// PluginInfo is what Kong takes from `<plugin> -dump`
// (query_external_plugin_info in kong/runloop/plugin_servers/process.lua):
// Protocol, then Name, Priority, Version, Schema and Phases of Plugins[1].
type PluginInfo struct {
	Protocol string
	Name     string
	Version  string
	Priority int
	Phases   []string
	// Schema is the plugin schema exactly as dumped (Kong uses it as is).
	Schema map[string]any
	// Raw is the dump's output.
	Raw []byte
}

// HasPhase reports whether the plugin has a handler for the phase
// ("access", "response", "log", ...).
func (p *PluginInfo) HasPhase(name string) bool { return slices.Contains(p.Phases, name) }

// Dump runs `<plugin> -dump` (Kong's query_cmd) and parses its output as
// process.lua does. Kong accepts the first plugin of the dump; the stand-in
// also insists on the protobuf protocol, the only one go-pdk speaks.
func Dump(ctx context.Context, pluginPath string, env []string) (*PluginInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pluginPath, "-dump")
	cmd.Env = append(cmd.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("error loading plugins info from [%s]: %v: %s", pluginPath, err, strings.TrimSpace(stderr.String()))
	}
	return ParseDump(out)
}

// ParseDump parses the JSON printed by `-dump`.
func ParseDump(out []byte) (*PluginInfo, error) {
	var dump struct {
		Protocol string
		Plugins  []struct {
			Name     string
			Phases   []string
			Version  string
			Priority int
			Schema   map[string]any
		}
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&dump); err != nil {
		return nil, fmt.Errorf("failed decoding plugin info: %v", err)
	}
	// process.lua: server_def.protocol = dump.Protocol or "MsgPack:1"
	if dump.Protocol == "" {
		dump.Protocol = "MsgPack:1"
	}
	if dump.Protocol != "ProtoBuf:1" {
		return nil, fmt.Errorf("plugin protocol %q: the stand-in speaks only ProtoBuf:1 (go-pdk)", dump.Protocol)
	}
	if len(dump.Plugins) == 0 {
		return nil, errors.New("not a plugin info table: no Plugins")
	}
	p := dump.Plugins[0]
	if p.Name == "" {
		return nil, errors.New("plugin info has no Name")
	}
	if p.Schema == nil {
		return nil, fmt.Errorf("plugin %s: no Schema in dump", p.Name)
	}
	schema := normalizeNumbers(p.Schema).(map[string]any)
	return &PluginInfo{
		Protocol: dump.Protocol,
		// conf_loader lowercases pluginserver names; the dumped Name is what
		// plugins in the configuration refer to.
		Name:     p.Name,
		Version:  p.Version,
		Priority: p.Priority,
		Phases:   p.Phases,
		Schema:   schema,
		Raw:      out,
	}, nil
}

// normalizeNumbers turns json.Number into int64 when integral, else float64.
func normalizeNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeNumbers(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = normalizeNumbers(e)
		}
		return v
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	}
	return v
}
