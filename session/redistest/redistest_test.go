package redistest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestServerStopStartSamePort(t *testing.T) {
	s := StartServer(t)
	addr := s.Addr()
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Start()
	if s.Addr() != addr {
		t.Fatalf("address changed: %s -> %s", addr, s.Addr())
	}
	if v, err := s.Do("GET", "k"); err != nil || v != "" {
		t.Fatalf("GET after restart = %q, %v; want empty (no persistence)", v, err)
	}
	if v, err := s.Info("server", "tcp_port"); err != nil || v != fmt.Sprint(s.Port()) {
		t.Fatalf("INFO tcp_port = %q, %v", v, err)
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t, 3, WithArgs("--cluster-require-full-coverage", "no"))
	if v, err := c.Node(0).Do("CONFIG", "GET", "cluster-require-full-coverage"); err != nil || !strings.HasSuffix(v, "\nno") {
		t.Fatalf("CONFIG GET cluster-require-full-coverage = %q, %v", v, err)
	}
	if len(c.Addrs()) != 3 {
		t.Fatalf("Addrs = %v", c.Addrs())
	}
	info, err := c.Node(1).Do("CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_known_nodes:3") {
		t.Fatalf("CLUSTER INFO = %q, %v", info, err)
	}
	c.KillMaster(2)
	if c.Node(2).Running() {
		t.Fatal("node 2 still running after KillMaster")
	}
}

// fakeTB records Fatalf and stops the goroutine, as testing.T does.
type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestMissingBinaryFailsLoudly(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Bin(f, "redis-server")
	}()
	<-done
	if !strings.Contains(f.msg, "apt-get install -y redis-server") {
		t.Fatalf("message %q does not say what to install", f.msg)
	}
}

func TestClusterWithReplicasFailover(t *testing.T) {
	c := StartClusterWithReplicas(t, 3, 1)
	if len(c.Addrs()) != 6 {
		t.Fatalf("Addrs = %v", c.Addrs())
	}
	for i := range 6 {
		want := "master"
		if i >= 3 {
			want = "slave"
		}
		if got := c.Role(i); got != want {
			t.Errorf("node %d: role %q, want %q", i, got, want)
		}
	}
	reps := c.ReplicasOf(0)
	if len(reps) != 1 || reps[0] < 3 {
		t.Fatalf("ReplicasOf(0) = %v, want one of nodes 3-5", reps)
	}
	c.KillMaster(0)
	deadline := time.Now().Add(20 * time.Second)
	for c.Role(reps[0]) != "master" {
		if time.Now().After(deadline) {
			t.Fatalf("node %d not promoted 20 s after its master was killed", reps[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.WaitOK()
	c.Node(0).Start() // rejoins as a replica of its old replica
	deadline = time.Now().Add(20 * time.Second)
	for c.Role(0) != "slave" {
		if time.Now().After(deadline) {
			t.Fatalf("node 0 started again: role %q, want slave", c.Role(0))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
