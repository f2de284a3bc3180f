"""Layer 3, episodes: environments as a library. An environment folder loaded (spec, seed, task
packs), episodes (one isolated run of a task and its trajectory) and their scoring, the pools that
keep live states and episodes under TTLs and quotas, and the registry of environments. No
transport: everything here is called in process. Imports :mod:`servers.errors`, the spec and the
state layers, nothing above.
"""

from .environment import Environment, ToolDescriptor
from .episode import Episode, TrajectoryLimits, TrajectoryStep
from .evaluation import CheckResult, Score, normalise_answer, score_state
from .pool import DEFAULT_STATE_QUOTAS, ID_RULE, EpisodePool, PoolStats, Quotas, StatePool, key_prefix, valid_id
from .registry import (
    DEFAULT_REGISTRY,
    PACKAGED_ENV_ROOT,
    PROVENANCE_FILE,
    STAGING_GRACE_SECONDS,
    STAGING_PREFIX,
    Registry,
    RegistryEntry,
    RegistryFile,
    entry_for,
    is_staging_name,
    last_change,
    registry_json_schema,
    registry_lock,
    short_text,
    staging_folders,
)

__all__ = [
    "Environment",
    "ToolDescriptor",
    "Episode",
    "TrajectoryLimits",
    "TrajectoryStep",
    "Score",
    "CheckResult",
    "score_state",
    "normalise_answer",
    "StatePool",
    "EpisodePool",
    "PoolStats",
    "Quotas",
    "DEFAULT_STATE_QUOTAS",
    "ID_RULE",
    "valid_id",
    "key_prefix",
    "Registry",
    "RegistryEntry",
    "RegistryFile",
    "DEFAULT_REGISTRY",
    "PACKAGED_ENV_ROOT",
    "PROVENANCE_FILE",
    "STAGING_PREFIX",
    "STAGING_GRACE_SECONDS",
    "entry_for",
    "is_staging_name",
    "last_change",
    "registry_json_schema",
    "registry_lock",
    "short_text",
    "staging_folders",
]
