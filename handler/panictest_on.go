//go:build panictest

package handler

const panicTest = true
