"""``time_window``: an action only so many hours before (or days after) a date attribute."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..naming import p_
from .base import Identifier, Param, RuleKind, RuleModel, RuleRef, Step, Trap, fill, register

if TYPE_CHECKING:
    from ..catalog import Entity, Transition
    from ..modeling import Design
    from ..procedural_tests import Tester
    from ..seeding import Seeder

__all__ = ["TimeWindow", "TimeWindowKind", "violates"]


class TimeWindow(RuleModel):
    kind: Literal["time_window"]
    entity: Identifier
    transition: Identifier = Field(description="The transition the window applies to (or 'create').")
    attribute: Identifier = Field(description="A date or datetime attribute of the entity.")
    mode: Literal["before", "after"] = Field(
        description="'before': at least N hours before it; 'after': at most N days after it."
    )
    amount: Param = Field(description="Hours (before) or days (after).")
    description: str = Field(min_length=1, description="Policy words, with {amount}.")


def _world(entities: dict[str, Entity]) -> bool:
    """Whether the rule's domain speaks the world vocabulary (only world domains have derived, input or money
    attributes, or shared resources). There ``transition`` may also name an ``update`` operation of the entity
    (design §9.1, ``change_meal``); a name no tool performs leaves the rule unprobed, which fails the
    environment's procedural tests."""
    return any(e.owner != "auto" for e in entities.values()) or any(
        a.derive or a.input or a.type == "money" or a.set_by for e in entities.values() for a in e.attributes
    )


def violates(value: str, clock: datetime, mode: str, amount: float) -> bool:
    """The test's own oracle: whether a record dated ``value`` is outside the window at ``clock``."""
    moment = datetime.fromisoformat(value) if len(value) > 10 else datetime.fromisoformat(value + " 00:00:00")
    if mode == "before":
        return moment < clock + timedelta(hours=amount)
    return clock.date() > (moment + timedelta(days=amount)).date()


@register
class TimeWindowKind(RuleKind):
    name = "time_window"
    model = TimeWindow
    vocabulary = "* ``time_window`` — a transition only so many hours before (or days after) a date attribute;"
    seed_pass = 1

    def problems(self, rule: TimeWindow, entity: Entity, entities: dict[str, Entity]) -> list[str]:
        problems = []
        transitions = {t.name for t in entity.lifecycle.transitions} if entity.lifecycle else set()
        attr = next((a for a in entity.attributes if a.name == rule.attribute), None)
        if attr is None or attr.type not in ("date", "datetime"):
            problems.append(f"{rule.attribute!r} is not a date attribute")
        if rule.transition != "create" and rule.transition not in transitions and not _world(entities):
            problems.append(f"unknown transition {rule.transition!r}")
        return problems

    def applies(self, rule: TimeWindow, entities: dict[str, Entity]) -> bool:
        return True

    def parameter(self, rule: TimeWindow) -> Param | None:
        return rule.amount

    def references(self, rule: TimeWindow) -> dict[str, str]:
        return {}

    def action(self, rule: TimeWindow) -> str:
        return rule.transition

    def policy(self, ref: RuleRef) -> str:
        return fill(ref.rule.description, ref.value)

    def require_steps(self, design: Design, ref: RuleRef, entity: Entity) -> list[Step]:
        rule = ref.rule
        amount = int(ref.value or 0)
        value = (
            f"datetime(:{p_(rule.attribute)})"
            if rule.transition == "create"
            else f"(SELECT {rule.attribute} FROM {entity.plural} WHERE {entity.name}_id = :{entity.name}_id)"
        )
        if rule.mode == "before":
            condition = f"datetime({value}) >= datetime(now(), '+{amount} hours')"
        else:
            condition = f"date(now()) <= date({value}, '+{amount} days')"
        return [
            {
                "kind": "require",
                "expect": "true",
                "rule": ref.id,
                "sql": f"SELECT {condition} AS ok, {value} AS at_time",
                "error": f"{ref.policy} (It is set for {{at_time}}.)",
            }
        ]

    def effect_steps(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> list[Step]:
        return []

    def writes(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> set[str]:
        return set()

    def table_checks(self, design: Design, ref: RuleRef) -> list[tuple[str, dict[str, Any]]]:
        return []

    def adjust_seed(self, seeder: Seeder, ref: RuleRef) -> None:
        """Records a windowed transition can start from lie on both sides of the window, so the
        transition can be done on some and refused on others (a draw can miss one side)."""
        rule, amount, clock = ref.rule, int(ref.value or 0), seeder.clock
        if rule.transition == "create":
            return
        entity = seeder.design.entity(rule.entity)
        if entity.lifecycle is None:
            return
        transition = next((t for t in entity.lifecycle.transitions if t.name == rule.transition), None)
        attr = next((a for a in entity.attributes if a.name == rule.attribute), None)
        if transition is None or attr is None:
            return
        ready = [r for r in seeder.rows[entity.plural] if r[entity.lifecycle.field] in transition.from_states]
        if rule.mode == "before":  # allowed until `amount` hours before the moment
            inside, outside = clock + timedelta(hours=amount + 48), clock + timedelta(hours=max(1, amount // 2))
            edge = (clock + timedelta(hours=amount)).strftime("%Y-%m-%d %H:%M:%S")
        else:  # allowed until `amount` days after it
            inside, outside = clock - timedelta(days=max(1, amount // 2)), clock - timedelta(days=amount + 5)
            edge = (clock - timedelta(days=amount)).date().isoformat()

        def within(row: dict[str, Any]) -> bool:
            value = str(row.get(rule.attribute) or "")
            return bool(value) and (value > edge if rule.mode == "before" else value[:10] >= edge)

        def stamp(moment: datetime) -> str:
            return (
                moment.date().isoformat()
                if attr.type == "date"
                else moment.replace(minute=0, second=0).strftime("%Y-%m-%d %H:%M:%S")
            )

        if ready and not any(within(r) for r in ready):
            ready[0][rule.attribute] = stamp(inside)
        if len(ready) > 1 and all(within(r) for r in ready):
            ready[-1][rule.attribute] = stamp(outside)

    def parties(self, rule: TimeWindow) -> set[str]:
        return set()

    def eligible(
        self, tester: Tester, ref: RuleRef, entity: Entity, related: str, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return rows

    def taken(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> bool:
        return False

    def choose_arguments(
        self, tester: Tester, ref: RuleRef, entity: Entity, schema: dict[str, Any], arguments: dict[str, Any]
    ) -> None:
        """A create inside the window: days ahead of the clock ('before') or a day behind it ('after')."""
        rule = ref.rule
        if rule.transition != "create":
            return
        clock = tester.clock.replace(tzinfo=None)
        when = clock + timedelta(days=tester.rng.randint(3, 20)) if rule.mode == "before" else clock - timedelta(1)
        name = p_(rule.attribute)
        arguments[name] = when.strftime(
            "%Y-%m-%d" if len(tester.value_for(schema["properties"][name], name)) == 10 else "%Y-%m-%d %H:%M"
        )

    def settle_arguments(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> None:
        return None

    def create_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, base: dict[str, Any]
    ) -> str | None:
        rule = ref.rule
        if rule.transition != "create":
            return "it guards a transition"
        if p_(rule.attribute) not in base:
            return f"the create tool takes no {rule.attribute}"
        amount = ref.value or 0
        past = tester.clock.replace(tzinfo=None) - timedelta(days=2 if rule.mode == "before" else amount + 3)
        value = past.strftime("%Y-%m-%d %H:%M" if len(str(base[p_(rule.attribute)])) > 10 else "%Y-%m-%d")
        tester.negative(tool, "rule", {**base, p_(rule.attribute): value}, ref.id, rule=ref.id)
        return None

    def transition_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, ready: list[dict[str, Any]]
    ) -> str | None:
        rule, key = ref.rule, f"{entity.name}_id"
        clock = tester.clock.replace(tzinfo=None)
        violating = [
            r for r in ready if r.get(rule.attribute) and violates(r[rule.attribute], clock, rule.mode, ref.value or 0)
        ]
        if tester.design.world and rule.mode == "before":  # a moment already passed is refused by PHASE first
            violating = [r for r in violating if str(r[rule.attribute]) > tester.now]
        if not violating and tester.design.world and ready:
            return _moved_outside(tester, ref, tool, entity, ready[0])
        if not violating:
            return f"no seeded {entity.name} ready for it lies outside the window"
        tester.negative(tool, "rule", {key: violating[0][key]}, ref.id, rule=ref.id)
        return None

    def trap(self, ref: RuleRef) -> Trap | None:
        return None


def _moved_outside(tester: Tester, ref: RuleRef, tool: str, entity: Entity, record: dict[str, Any]) -> None:
    """World designs: no seeded record lies outside the window (a copied moment follows its parent, so the seed
    cannot place one), so a state copy moves one ready record's moment just outside it, still ahead of the
    clock for a 'before' window (its phase holds), and the tool must refuse it by this rule."""
    rule, amount = ref.rule, ref.value or 0
    clock = tester.clock.replace(tzinfo=None)
    if rule.mode == "before":
        moment = clock + timedelta(seconds=max(60, int(amount * 3600) // 2))
    else:
        moment = clock - timedelta(days=amount + 3)
    attr = next(a for a in entity.attributes if a.name == rule.attribute)
    if attr.type == "date" and rule.mode == "before":  # a date is its midnight: tomorrow, ahead of the clock
        moment = datetime.combine(clock.date() + timedelta(days=1), datetime.min.time())
        if moment >= clock + timedelta(hours=amount):
            return f"no date lies ahead of the clock and inside the {amount:g}-hour window"  # type: ignore[return-value]
    text = moment.date().isoformat() if attr.type == "date" else moment.strftime("%Y-%m-%d %H:%M:%S")
    key = f"{entity.name}_id"
    state = tester.env.new_state()
    with state.mode("internal"):
        state.conn.execute(f"UPDATE {entity.plural} SET {rule.attribute} = ? WHERE {key} = ?", (text, record[key]))
    tester.negative(tool, "rule", {key: record[key]}, ref.id, state=state, rule=ref.id)
    state.close()
