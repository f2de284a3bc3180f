"""``max_changes``: a record may be changed (moved, rescheduled, exchanged, amended) at most N times; the
tools count changes but allow more ("after that the passenger can only cancel and book again")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..naming import a, words
from ..rules.base import Identifier, Param
from ..world import counts_changes
from .base import PolicyKind, PolicyModel, PolicyRef, register
from .calls import candidates, tables
from .common import op_of, owned_records, probe_break, refuse_on_records

if TYPE_CHECKING:
    from ..catalog import Domain
    from ..modeling import Design

__all__ = ["MaxChanges"]


class MaxChanges(PolicyModel):
    kind: Literal["max_changes"]
    ops: list[Identifier] = Field(min_length=1, description="The change operations counted (one entity).")
    max: Param = Field(description="How many changes a record may have.")


@register
class MaxChangesKind(PolicyKind):
    name = "max_changes"
    model = MaxChanges
    section = "operations"
    vocabulary = (
        '* max_changes {"id", "ops": [change ops of one entity], "max": {"default", "low", "high"}}: a record is '
        "changed at most max times by these ops (transfer, reschedule, exchange, update with counts_as_change)."
    )

    def problems(self, rule: Any, domain: Domain) -> list[str]:
        ops = [next((o for o in domain.operations if o.name == name), None) for name in rule.ops]
        if any(op is None for op in ops):
            return [f"ops {rule.ops} are not all operations of the domain"]
        entities = {op.entity for op in ops}
        if len(entities) != 1:
            return ["the counted ops act on more than one entity"]
        entity = entities.pop()
        if not counts_changes(domain, entity) or not all(
            op.kind in ("transfer", "reschedule", "exchange") or getattr(op, "counts_as_change", False) for op in ops
        ):
            return ["each counted op must be a change (transfer, reschedule, exchange, or counts_as_change)"]
        if rule.max.low < 1:
            return ["max starts at 1"]
        return []

    def parameter(self, rule: Any) -> Param:
        return rule.max

    def refs(self, design: Design, declared: list[tuple[Any, float | None]]) -> list[PolicyRef]:
        kept = {e.name for e in design.entities}
        refs = []
        for rule, value in declared:
            ops = [op for name in rule.ops if (op := op_of(design, name)) is not None and op.expose != "hidden"]
            if ops and ops[0].entity in kept:
                refs.append(PolicyRef(f"policy.{rule.id}", self.name, rule, value, ops[0].name))
        return refs

    def _entity(self, design: Design, ref: PolicyRef) -> Any:
        return design.entity(op_of(design, ref.op).entity)

    def sentence(self, design: Design, ref: PolicyRef) -> str:
        entity = self._entity(design, ref)
        times = "once" if ref.value == 1 else f"{ref.value:g} times"
        ops = " or ".join(ref.rule.ops)
        return (
            f"{a(words(entity.name)).capitalize()} can be changed ({ops}) at most {times}; its `changes` count says "
            f"how often it has been. After that the {words(design.principal.name)} can only cancel and start "
            "again — do not change it, whatever the tool allows."
        )

    def violation(self, design: Design, ref: PolicyRef) -> str:
        entity = self._entity(design, ref)
        return f"SELECT {entity.name}_id FROM {entity.plural} WHERE changes > {int(ref.value or 1)}"

    def adjust_seed(self, seeder: Any, ref: PolicyRef) -> None:
        """About one in five records has used up its changes (chosen by id, no draw from the seed's rng)."""
        entity = self._entity(seeder.design, ref)
        for row in seeder.rows[entity.plural]:
            if sum(map(ord, str(row[f"{entity.name}_id"]))) % 5 == 0:
                row["changes"] = int(ref.value or 1)

    def _at_max(self, value: float | None) -> Any:
        return lambda row: row.get("changes") == int(value or 1)

    def probe(self, tester: Any, ref: PolicyRef) -> str | None:
        design = tester.design
        entity = self._entity(design, ref)
        p_id = f"{design.principal.name}_id"
        owners = tester.owners(entity)
        tries: list[dict[str, Any]] = []
        for name in ref.rule.ops:
            tool = design.op_tool(name)
            if tool is None:
                continue
            schema = tester.env.tools[tool].input_schema
            for row in tester.rows(entity.name):
                if self._at_max(ref.value)(row) and row[f"{entity.name}_id"] in owners:
                    fixed = {p_id: owners[row[f"{entity.name}_id"]], f"{entity.name}_id": row[f"{entity.name}_id"]}
                    tries += list(candidates(schema, fixed, tester.table, fixed[p_id], tables(design), row))[:4]
            if tries:
                return probe_break(tester, ref, tool, tries)
        return f"no seeded {entity.name} at its change limit"

    def refusal(self, world: Any, ref: PolicyRef) -> Any:
        design = world.design
        entity = self._entity(design, ref)
        found = owned_records(world, entity.name, self._at_max(ref.value))
        world.rng.shuffle(found)
        return refuse_on_records(world, ref, found, lambda: op_of(design, world.rng.choice(ref.rule.ops)))
