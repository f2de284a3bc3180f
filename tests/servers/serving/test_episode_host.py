"""The gateway satisfies the protocol the control plane is written against. No type checker runs in CI, so
the structure is compared here: every member exists on a real gateway, of the same kind (value or coroutine
method) and type, taking the same parameters."""

import inspect
import typing

from servers import Registry, StatePool
from servers.episodes import EpisodePool
from servers.serving import CallRunner, EpisodeHost, Gateway


def test_a_gateway_has_every_episode_host_member_with_the_same_shape() -> None:
    gateway = Gateway(Registry.resolve(), StatePool())
    members = {name: value for name, value in vars(EpisodeHost).items() if not name.startswith("_")}
    assert set(members) == {"episodes", "calls", "hosted", "reload"}, "the protocol changed: update this test"
    values = {"episodes": EpisodePool, "calls": CallRunner}
    for name, declared in members.items():
        actual = getattr(gateway, name)
        if isinstance(declared, property):
            assert typing.get_type_hints(declared.fget)["return"] is values[name]
            assert isinstance(actual, values[name]), f"Gateway.{name} is a {type(actual).__name__}"
            continue
        assert inspect.iscoroutinefunction(declared) and inspect.iscoroutinefunction(actual), f"{name} must be async"
        wanted = [p for p in inspect.signature(declared).parameters if p != "self"]
        assert list(inspect.signature(actual).parameters) == wanted, f"Gateway.{name} takes other parameters"
