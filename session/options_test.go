package session

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRedisConfigKey(t *testing.T) {
	base := RedisConfig{Host: "127.0.0.1", Port: 6379, Timeout: 2 * time.Second, KeyPrefix: "mcp-relay:", Password: "s3cret-pass"}
	again := base // a copy: the key must not depend on the value's identity
	if base.Key() != again.Key() {
		t.Fatal("Key is not stable")
	}
	if strings.Contains(base.Key(), "s3cret") {
		t.Fatalf("Key shows the password: %s", base.Key())
	}
	same := base
	same.KeyPrefix = "other:"
	same.SentinelNodes, same.ClusterNodes = []RedisNode{}, []RedisNode{}
	if same.Key() != base.Key() {
		t.Errorf("Key depends on the key prefix or on [] vs null:\n%s\n%s", same.Key(), base.Key())
	}
	// Every connection setting changes the key.
	rt := reflect.TypeFor[RedisConfig]()
	for i := range rt.NumField() {
		sf := rt.Field(i)
		if sf.Name == "KeyPrefix" {
			continue
		}
		t.Run(sf.Name, func(t *testing.T) {
			r := base
			f := reflect.ValueOf(&r).Elem().Field(i)
			switch f.Kind() {
			case reflect.String:
				f.SetString(f.String() + "x")
			case reflect.Int, reflect.Int64:
				f.SetInt(f.Int() + 1)
			case reflect.Bool:
				f.SetBool(!f.Bool())
			case reflect.Slice:
				f.Set(reflect.Append(f, reflect.New(f.Type().Elem()).Elem()))
			default:
				t.Fatalf("kind %s not covered", f.Kind())
			}
			if r.Key() == base.Key() {
				t.Errorf("changing %s does not change Key", sf.Name)
			}
		})
	}
}

func TestRedisConfigRedacted(t *testing.T) {
	c := RedisConfig{Host: "127.0.0.1", Password: "s3cret", SentinelPassword: "s3cret2"}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		for name, v := range map[string]any{"RedisConfig": c, "*RedisConfig": &c, "Options": Options{Redis: c}} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, "s3cret") {
				t.Errorf("Sprintf(%q, %s) shows a password: %s", format, name, out)
			}
			if !strings.Contains(out, "[redacted]") || !strings.Contains(out, "127.0.0.1") {
				t.Errorf("Sprintf(%q, %s) = %s, want the settings with [redacted] passwords", format, name, out)
			}
		}
	}
	if got := fmt.Sprintf("%#v", c); !strings.HasPrefix(got, "session.RedisConfig{") {
		t.Errorf("GoString = %s", got)
	}
	if got := (RedisConfig{Host: "h"}).String(); strings.Contains(got, "redacted") {
		t.Errorf("an unset password shows as redacted: %s", got)
	}
}
