"""Support code for hack/bench: the peers, the test registry, the floors and the measurements."""
