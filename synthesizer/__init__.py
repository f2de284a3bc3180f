"""EnvFleet synthesizer: new environments and task packs from a catalog of real-world domains.

Stages, in order: ``topics`` → ``modeling`` → ``seeding`` → ``procedural_tests`` →
``dependency_graph`` → ``task_synthesis`` → ``publish`` (driven by ``pipeline``). It depends on
the runtime (``servers``); the runtime never imports it.
"""

__version__ = "0.1.0"
