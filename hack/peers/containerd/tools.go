//go:build tools

// Package tools names the commands hack/peers/build compiles, so that go.mod and go.sum pin
// everything containerd and its runc shim import.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
)
