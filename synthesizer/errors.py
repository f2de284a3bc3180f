"""The synthesizer's branch of the project's error tree (root: :class:`servers.errors.EnvFleetError`).

    EnvFleetError
    └── SynthesisError          something the synthesizer was asked to make could not be made
        ├── LLMError            a model could not help (llm/errors.py: config, auth, model, reach, availability,
        │                       bad response, cache miss)
        ├── ReplyProblem        a model's reply holds no usable JSON object (llm/replies.py; also a ValueError)
        ├── Problems            what is wrong with a model's proposal, fed back to it (llm/repair.py)
        ├── CatalogError        the domain catalog is inconsistent (catalog.py; also a ValueError)
        ├── NoMatchingDomain    no catalog domain fits a topic (topics.py; also a ValueError)
        ├── CorpusError         a corpus of user requests cannot be read (topics.py; also a ValueError)
        ├── SeedingError        a domain's generators cannot seed it (seeding.py; also a ValueError)
        ├── KindError           a rule or operation kind is unknown or misses a phase (rules/base.py; also a
        │                       TypeError)
        ├── PublishConflict     the id is published already and replacing it was not asked for (publish.py)
        ├── InvariantViolation  a seed or gold final state breaks an invariant; not published (publish.py)
        ├── InvariantError      an invariant could not be evaluated on a state (invariants.py)
        ├── BaselineError       a baseline run file given to `synth stats` cannot be read (stats.py)
        ├── QueueFull           the REST service's queue is full (service/jobs.py)
        ├── IdempotencyConflict an idempotency key reused for another request (service/jobs.py)
        └── (pipeline.py)       the pipeline's own control flow: a refused draft, a stopped job, a failed assist

"Also a ValueError" keeps callers that catch ``ValueError`` working as before.
"""

from __future__ import annotations

from servers import EnvFleetError

__all__ = ["SynthesisError"]


class SynthesisError(EnvFleetError):
    """Root of every error the synthesizer raises on purpose."""
