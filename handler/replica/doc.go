// Package replica is what the plugin knows of the upstream replicas that
// sessions are pinned to, and what it does with them outside Kong's
// balancer: which replicas of a service answer (Fleet), whether they still
// accept connections (Watch), the requests a session recovery sends them
// (Call), and one recovery per session at a time (Flights).
//
// It knows nothing of Kong or of the plugin's configuration: the handler
// feeds it what the PDK and the session store tell, and decides what to log
// and count.
package replica
