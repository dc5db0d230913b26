"""Daemon configuration: YAML file, drop-ins, command-line overrides."""

from cri_py.config.errors import ConfigError
from cri_py.config.load import load_config
from cri_py.config.model import (
    CniConfig,
    Config,
    RegistryConfig,
    RuntimeHandler,
    StreamingConfig,
)

__all__ = [
    "CniConfig",
    "Config",
    "ConfigError",
    "RegistryConfig",
    "RuntimeHandler",
    "StreamingConfig",
    "load_config",
]
