//go:build tools

// Package tools names the command hack/peers/build compiles, so that go.mod and go.sum pin
// everything CRI-O imports. (Its pinns helper is C in the same module, built with cc.)
package tools

import (
	_ "github.com/cri-o/cri-o/cmd/crio"
)
