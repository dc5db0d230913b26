"""The gRPC boundary: thin handlers that validate, call the services, and map errors."""
