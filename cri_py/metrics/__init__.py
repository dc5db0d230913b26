"""Metrics: the CRI metrics RPCs (cAdvisor's container_* series) and the Prometheus endpoint."""
