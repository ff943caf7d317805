package handler

import (
	"testing"
	"time"

	"github.com/mcp-relay/mcp-relay/schema"
)

func TestResolveSettings(t *testing.T) {
	tests := []struct {
		name   string
		config string
		want   settings
	}{
		{"defaults", `{}`, settings{envelopeStatus: statusAuto, learnWait: 250 * time.Millisecond,
			replicaProbe: 500 * time.Millisecond, storeTimeout: time.Second}},
		{"keep, pass, reject", `{"envelope":{"status":"keep"},"session":{"unknown":"pass","store_error":"reject","learn_wait_ms":0,"replica_probe_ms":0}}`,
			settings{envelopeStatus: statusKeep, unknownPass: true, storeErrorReject: true, storeTimeout: time.Second}},
		{"200", `{"envelope":{"status":"200"}}`, settings{envelopeStatus: status200, learnWait: 250 * time.Millisecond,
			replicaProbe: 500 * time.Millisecond, storeTimeout: time.Second}},
		{"redis: two command timeouts", `{"session":{"store":"redis","redis":{"timeout":300}}}`, settings{redisStore: true,
			learnWait: 250 * time.Millisecond, replicaProbe: 500 * time.Millisecond, storeTimeout: 600 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := schema.Parse([]byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			if got := resolveSettings(&cfg); got != tt.want {
				t.Errorf("resolveSettings =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}
