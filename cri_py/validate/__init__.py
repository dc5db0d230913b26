"""Checks of what a request asks for, before anything is created: names and sizes by
Kubernetes' rules (`metadata`), paths kept inside their roots (`paths`), one entry per RPC
(`requests`)."""
