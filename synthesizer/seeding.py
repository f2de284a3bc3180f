"""Stage 3, seed data: realistic rows from Faker, seeded, consistent with keys, lifecycles and rules.

Rows are made in dependency order so every reference points at an existing row. Dates follow
the lifecycle: records still moving through it lie ahead of the environment clock, finished ones
behind it (a generator range wholly in the past stays in the past). Every lifecycle state appears.
Each rule's kind then shapes the rows (``RuleKind.adjust_seed``): limits hold in the seed (no owner
over its limit, no duplicate active pair), windowed records lie on both sides of their window, and
one resource per ``consumes`` rule is left with nothing, so running out can be tested; generator
weights decide how many subjects are ineligible.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

from faker import Faker
from faker.providers.date_time import Provider as DateTimeProvider

from .catalog import Attribute, Entity
from .errors import SynthesisError
from .modeling import Design

__all__ = ["seed_rows", "SPECIAL_GENERATORS", "SeedingError", "generator_problem", "Seeder", "ValueMaker"]

_ARITY = {
    "choice": 0,
    "none": 0,
    "int": 2,
    "money": 2,
    "bool": 1,
    "date": 2,
    "datetime": 2,
    "code": 1,
    "words": 1,
    "pick": 0,
    "person_name": 0,
    "phone": 0,
    "email_from": 1,
}
_AREA_CODES = ("212", "312", "415", "617", "303", "206", "404", "305", "512", "615", "503", "702")
SPECIAL_GENERATORS = tuple(_ARITY)
_FAKER = Faker()
_CLOCK_BOUND = {name for name in dir(DateTimeProvider) if not name.startswith("_")}
"""Faker's date and time methods: they read datetime.now(), which no seed pins."""


def generator_problem(generator: str) -> str | None:
    """Why a generator spec is unusable, or None."""
    head, *args = generator.split(":")
    if head in _ARITY:
        if len(args) != _ARITY[head]:
            return f"generator {generator!r} takes {_ARITY[head]} argument(s)"
        if head in ("code", "email_from"):
            return (
                None if args[0] else f"generator {generator!r} needs {'a prefix' if head == 'code' else 'an attribute'}"
            )
        try:
            numbers = [float(a) for a in args]
        except ValueError:
            return f"generator {generator!r} needs numbers as arguments"
        if head in ("int", "words") and not all(n.is_integer() for n in numbers):
            return f"generator {generator!r} needs whole numbers"
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            return f"generator {generator!r}: the low end is above the high end"
        if head == "bool" and not 0 <= numbers[0] <= 1:
            return f"generator {generator!r}: the probability must be between 0 and 1"
        if head == "words" and numbers[0] < 1:
            return f"generator {generator!r} needs at least one word"
        return None
    if args or head.startswith("_") or not callable(getattr(_FAKER, head, None)):
        return f"generator {generator!r} is neither a Faker method nor one of {', '.join(SPECIAL_GENERATORS)}"
    if head in _CLOCK_BOUND:
        return (
            f"generator {generator!r} draws from the machine's clock, so seeds would change from day to day; use "
            "date:/datetime: (relative to the environment clock) or choice with an enum"
        )
    return None


class SeedingError(SynthesisError, ValueError):
    """A domain's generators cannot seed it; the message names the attribute."""


def _terminal_states(entity: Entity) -> set[str]:
    """States no transition leaves."""
    assert entity.lifecycle is not None
    leaving = {s for t in entity.lifecycle.transitions for s in t.from_states}
    return set(entity.lifecycle.states) - leaving


def _order(entities: list[Entity]) -> list[Entity]:
    done: list[Entity] = []
    names: set[str] = set()
    pending = list(entities)
    while pending:
        for entity in pending:
            if all(r.to in names or r.to == entity.name for r in entity.relations):
                done.append(entity)
                names.add(entity.name)
                pending.remove(entity)
                break
        else:  # a cycle: take the rest as they are (optional relations filled afterwards)
            done += pending
            break
    return done


class Seeder:
    """Makes the seed rows of a design; ``value`` also serves later stages that need realistic values."""

    def __init__(self, design: Design) -> None:
        self.design = design
        self.rng = random.Random(f"seed:{design.env_id}:{design.seed}")
        self.vocabulary_rng = random.Random(f"vocabulary:{design.env_id}:{design.seed}")
        self.fake = Faker("en_US")
        self.fake.seed_instance(design.seed * 7919 + design.variant)
        self.clock = design.clock.replace(tzinfo=None)
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self._picked: dict[tuple[str, str], set[str]] = {}  # unique ``pick`` values already drawn
        self.codes: Counter[str] = Counter()

    def value(self, attr: Attribute, future: bool | None, entity: str | None = None) -> Any:
        try:
            return self._value(attr, future, entity)
        except Exception as e:  # a generator that cannot make this attribute's values
            raise SeedingError(
                f"{entity}.{attr.name}: generator {attr.generator!r} cannot make {attr.type} values"
                f"{' that are unique' if attr.unique else ''} ({type(e).__name__}: {e})"
            ) from None

    def _value(self, attr: Attribute, future: bool | None, entity: str | None) -> Any:
        words = self.design.vocabulary.get((entity or "", attr.name))
        if words:  # realistic values proposed for this attribute (the LLM backend's seed stage)
            if attr.unique:
                self.codes[f"vocabulary:{entity}.{attr.name}"] += 1
                used = self.codes[f"vocabulary:{entity}.{attr.name}"]
                return words[(used - 1) % len(words)] + ("" if used <= len(words) else f" {used // len(words) + 1}")
            return self.vocabulary_rng.choice(words)  # its own draws: proposed words never move ids or states
        head, *args = attr.generator.split(":")
        if head == "none":
            return None
        if head == "choice":
            return self.rng.choice(attr.enum or [""])
        if head == "pick":
            if not attr.unique:
                return self.rng.choice(attr.values or [""])
            used = self._picked.setdefault((entity or "", attr.name), set())  # unique: without replacement
            left = [v for v in attr.values or [] if v not in used]
            value = self.rng.choice(left) if left else f"{self.rng.choice(attr.values or [''])} {len(used) + 1}"
            used.add(value)
            return value
        if head == "person_name":  # no prefixes or suffixes (Faker's name() gives "Dr." and "MD")
            return f"{self.fake.first_name()} {self.fake.last_name()}"
        if head == "phone":  # a real area code and a 555-01NN number, which is never a real line
            return f"({self.rng.choice(_AREA_CODES)}) 555-01{self.rng.randint(0, 99):02d}"
        if head == "email_from":  # made from the row's name once the row is complete (world seeding)
            return None
        if head == "int":
            return self.rng.randint(int(args[0]), int(args[1]))
        if head == "money":
            if attr.type == "money":  # whole dollars and cents as integer cents
                return self.rng.randint(int(float(args[0]) * 100), int(float(args[1]) * 100))
            return round(self.rng.uniform(float(args[0]), float(args[1])), 2)
        if head == "bool":
            return self.rng.random() < float(args[0])
        if head in ("date", "datetime"):
            low, high = float(args[0]), float(args[1])
            if high <= 0 or low >= 0:
                future = None  # a range wholly in the past (or future) says when such dates lie
            if future is True:
                low = max(low, 0.05)
                high = max(high, low + 1)
            elif future is False:
                high = min(high, -0.05)
                low = min(low, high - 1)
            moment = self.clock + timedelta(days=self.rng.uniform(low, high))
            if head == "date":
                return moment.date().isoformat()
            moment = moment.replace(
                hour=8 + moment.hour % 10, minute=(moment.minute // 15) * 15, second=0, microsecond=0
            )
            if future is True and moment <= self.clock:
                moment += timedelta(days=1)
            return moment.strftime("%Y-%m-%d %H:%M:%S")
        if head == "code":
            prefix = self.design.codes.get((entity or "", attr.name), args[0])
            self.codes[prefix] += 1
            return f"{prefix}-{self.codes[prefix]:05d}"
        if head == "words":
            return " ".join(self.fake.words(int(args[0]))).capitalize()
        value = getattr(self.fake.unique if attr.unique else self.fake, head)()
        if attr.type == "integer":
            return int(value)
        return str(value)

    def states(self, entity: Entity, count: int) -> list[str | None]:
        if entity.lifecycle is None:
            return [None] * count
        life = entity.lifecycle
        mix = life.seed_mix or {s: (0.6 if s == life.initial else 0.4 / (len(life.states) - 1)) for s in life.states}
        states, weights = zip(*mix.items(), strict=True)
        drawn = [self.rng.choices(states, weights)[0] for _ in range(count)]
        missing = [s for s in life.states if s not in drawn]
        for slot, state in zip(self.rng.sample(range(count), min(len(missing), count)), missing, strict=False):
            drawn[slot] = state  # every state appears at least once, so every transition can be tried
        return drawn

    def make(self) -> dict[str, list[dict[str, Any]]]:
        for entity in _order(self.design.entities):
            count = (
                entity.seed_count
                if self.design.variant == 0
                else max(3, int(entity.seed_count * self.rng.uniform(0.7, 1.3)))
            )
            rows = []
            for index, state in enumerate(self.states(entity, count), start=1):
                row: dict[str, Any] = {f"{entity.name}_id": f"{entity.id_prefix}-{index:04d}"}
                for relation in entity.relations:
                    targets = self.rows.get(self.design.entity(relation.to).plural, [])
                    if targets and (relation.required or self.rng.random() < 0.8):
                        row[relation.column] = self.rng.choice(targets)[f"{relation.to}_id"]
                    else:
                        row[relation.column] = None
                # a record still moving through its lifecycle lies ahead of the clock; a finished one behind it
                ahead = entity.lifecycle is not None and state not in _terminal_states(entity)
                phases = (entity.lifecycle.phases or {}) if self.design.world and entity.lifecycle else {}
                phase = phases.get(state or "")
                if phase in ("before", "after"):  # a world says where the moment lies (an active rental: behind)
                    ahead = phase == "before"
                stamps = self.stamps(entity, state)
                for attr in entity.attributes:
                    if attr.name in stamps:
                        row[attr.name] = stamps[attr.name]
                    elif attr.generator == "none" or (not attr.required and self.rng.random() < 0.15):
                        row[attr.name] = None
                    else:
                        future = None if entity.lifecycle is None or attr.type not in ("date", "datetime") else ahead
                        row[attr.name] = self.value(attr, future, entity.name)
                if entity.lifecycle:
                    row[entity.lifecycle.field] = state
                rows.append(row)
            self.rows[entity.plural] = rows
        if self.design.world:
            from .world_seed import seed_world, shape_world  # noqa: PLC0415 (world_seed builds on this Seeder)

            shape_world(self)
            self._respect_rules()
            seed_world(self)
        else:
            self._respect_rules()
        return self.rows

    def stamps(self, entity: Entity, state: str | None) -> dict[str, str]:
        if entity.lifecycle is None:
            return {}
        stamps = {}
        for transition in entity.lifecycle.transitions:
            if transition.stamp and transition.to == state:
                moment = self.clock - timedelta(days=self.rng.uniform(0.5, 20))
                stamps[transition.stamp] = moment.replace(second=0, microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
        return stamps

    def _respect_rules(self) -> None:
        """Each rule kind shapes the rows so its rule holds and can be tested, pass by pass (states and
        owners first, then dates, then counters), each pass in rule order."""
        for seed_pass in sorted({ref.kind.seed_pass for ref in self.design.refs}):
            for ref in self.design.refs:
                if ref.kind.seed_pass == seed_pass:
                    ref.kind.adjust_seed(self, ref)


def seed_rows(design: Design) -> dict[str, list[dict[str, Any]]]:
    """Seed rows per table for a design (deterministic for its env id, seed and variant)."""
    return Seeder(design).make()


ValueMaker = Seeder
