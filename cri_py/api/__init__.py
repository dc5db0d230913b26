"""Generated CRI v1 bindings (hack/gen-proto.sh); do not edit."""
