"""Configuration: YAML → validated, typed `Settings`; errors name file, line and key.

settings = load_settings("config/softswitch.yaml")     # raises ConfigError listing every problem
settings.agent_by_id("alice").skills                   # {'latvian': 9, ...}
settings.credentials_for("alice")                      # (md5 HA1, sha256 HA1) for digest auth
"""

from __future__ import annotations

from softswitch.config.load import ConfigError, ConfigIssue, load_settings, parse_settings
from softswitch.config.schema import (
    AgentSettings,
    FeatureCodes,
    HostPort,
    ListenSpec,
    QueueSettings,
    ServerSettings,
    Settings,
    SupervisorSettings,
    TrunkSettings,
    digest_ha1,
)

__all__ = [
    "AgentSettings",
    "ConfigError",
    "ConfigIssue",
    "FeatureCodes",
    "HostPort",
    "ListenSpec",
    "QueueSettings",
    "ServerSettings",
    "Settings",
    "SupervisorSettings",
    "TrunkSettings",
    "digest_ha1",
    "load_settings",
    "parse_settings",
]
