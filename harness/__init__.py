"""EnvFleet's agent harness: LLM agents over MCP, user simulators, batch rollouts, reports and
training exports.

Modules: ``chat`` (an OpenAI-compatible chat client for agents and simulated users), ``agent``
(an LLM agent on an episode's MCP tools), ``users`` (the scripted and the LLM user simulator),
``runner`` (tasks × trials with concurrency, resume and infrastructure-failure accounting),
``report`` (reward, success, pass^k), ``export`` (SFT data in the OpenAI chat format), ``cli``
(``envfleet run``, ``report``, ``export``) and ``errors`` (the harness's branch of the project's error
tree). It drives environments only through a gateway's control plane and MCP, like any external
agent would.
"""

__all__: list[str] = []
