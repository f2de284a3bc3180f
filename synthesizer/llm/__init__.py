"""The LLM backend: any OpenAI-compatible model proposes topics, domains, tools, seed values and
task wording — always as **data**. Everything it proposes goes through the same validation,
procedural tests, dependency graph, gold verification and gates as the procedural path.

Modules: ``config`` (settings from flags, env vars and a TOML file), ``client`` (chat completions
with retries, a content-addressed response cache and usage accounting), ``replies`` (JSON out of
a model's reply), ``repair`` (the bounded propose → validate → feed back loop), ``prompts`` (what
each stage sends), and one module per stage: ``mining``, ``domains``, ``tools``, ``seed_values``,
``paraphrase``, ``review``; ``backend`` wires them into the pipeline.
"""

from .client import LLMClient, Usage
from .config import STAGES, LLMConfig
from .errors import LLMError

__all__ = ["LLMClient", "LLMConfig", "LLMError", "STAGES", "Usage"]
