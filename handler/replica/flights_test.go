package replica

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlightsRunOnce(t *testing.T) {
	g := NewFlights[string, string](time.Minute)
	var runs atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make(chan string, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := g.Do("s", func() string {
				runs.Add(1)
				<-release
				return "10.0.0.9:1"
			})
			results <- fmt.Sprint(v, " ", err)
		}()
	}
	// Let them all reach the group; the leader blocks until released.
	for deadline := time.Now().Add(5 * time.Second); ; {
		g.mu.Lock()
		n := len(g.m)
		g.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	close(results)
	for r := range results {
		if r != "10.0.0.9:1 <nil>" {
			t.Errorf("caller got %q", r)
		}
	}
	if runs.Load() < 1 || runs.Load() > 2 {
		t.Errorf("recovery ran %d times for 10 concurrent callers", runs.Load())
	}
	// A panic in the call frees the key.
	func() {
		defer func() { _ = recover() }()
		g.Do("p", func() string { panic("boom") })
	}()
	if v, err := g.Do("p", func() string { return "ran" }); v != "ran" || err != nil {
		t.Errorf("after a panic the key stayed busy: %q %v", v, err)
	}
}

// TestFlightsWaiters: a waiter gets ErrBusy when the running call outlasts
// the wait, and ErrAbandoned when it panics.
func TestFlightsWaiters(t *testing.T) {
	g := NewFlights[string, string](20 * time.Millisecond)
	release := make(chan struct{})
	leader := startPanicking(g, release)
	if _, err := g.Do("k", func() string { return "second" }); err != ErrBusy {
		t.Errorf("waiter past the wait: err %v, want ErrBusy", err)
	}
	close(release)
	if v := <-leader; v != "boom" {
		t.Errorf("the leader's panic was %v, want it to reach the caller", v)
	}

	// A waiter that arrives after the panic runs its own call: try again
	// until one arrived in time (bounded).
	for attempt := 0; ; attempt++ {
		g := NewFlights[string, string](time.Minute)
		release := make(chan struct{})
		leader := startPanicking(g, release)
		waiter := make(chan error, 1)
		go func() {
			_, err := g.Do("k", func() string { return "late" })
			waiter <- err
		}()
		time.Sleep(10 * time.Millisecond) // let the waiter reach the group
		close(release)
		<-leader
		err := <-waiter
		if err == ErrAbandoned {
			return
		}
		if err != nil || attempt == 20 {
			t.Fatalf("waiter of a call that panicked: err %v, want ErrAbandoned (attempt %d)", err, attempt)
		}
	}
}

// startPanicking runs a call of key "k" that panics once release is
// closed; it returns once the call runs, and the channel gets the panic.
func startPanicking(g *Flights[string, string], release chan struct{}) <-chan any {
	running := make(chan struct{})
	leader := make(chan any, 1)
	go func() {
		defer func() { leader <- recover() }()
		g.Do("k", func() string {
			close(running)
			<-release
			panic("boom")
		})
	}()
	<-running
	return leader
}
