"""OCI runtimes behind one interface: a runc-compatible binary run under conmon, and the
generation of the OCI runtime spec (config.json) from CRI requests."""
