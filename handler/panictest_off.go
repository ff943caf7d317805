//go:build !panictest

package handler

// panicTest is true only in builds with -tags panictest, whose handlers
// panic on request (header X-Mcp-Relay-Panic: access|log) so that the
// fault tests can check recovery. Production builds compile it out.
const panicTest = false
