"""InferenceObjective priorities and InferenceModelRewrite resolution, as pure functions over plain data.

These take simple inputs (names, priorities, creation timestamps, rules) so that they stay independent of how the
objects were read (Kubernetes watch, files, the API models); `rewrite_from_object` reads the usual JSON shape.

Priority: a request names its objective with `x-gateway-inference-objective`; an unknown or absent objective, or
one without `spec.priority`, means priority 0. Negative priorities are sheddable.

Model rewrite precedence (Gateway API Inference Extension): a rule that matches the model exactly beats a
catch-all rule (one with no matches); across objects the oldest `creationTimestamp` wins (ties: namespace/name
order); within one object the first matching rule wins. The chosen rule's target is drawn at random by weight
(targets without weights are equally likely) from an injectable `random.Random`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def objective_priority(priorities: Mapping[str, int | None], objective: str | None) -> int:
    """Return the priority of the named objective: its `spec.priority`, 0 when unset, unknown or not named."""
    if not objective:
        return 0
    return priorities.get(objective) or 0


@dataclass(frozen=True, slots=True)
class RewriteTarget:
    """A model the request may be rewritten to, with its optional weight (1..1,000,000)."""

    model: str
    weight: int | None = None


@dataclass(frozen=True, slots=True)
class RewriteRule:
    """Exact model names the rule matches (empty: any model) and the targets it rewrites to."""

    models: tuple[str, ...]
    targets: tuple[RewriteTarget, ...]


@dataclass(frozen=True, slots=True)
class ModelRewrite:
    """One InferenceModelRewrite object: identity, age and its rules in order."""

    name: str
    created: datetime
    rules: tuple[RewriteRule, ...]
    namespace: str = ""


class RewriteTable:
    """The rewrites of one pool, compiled for lookups by model name."""

    def __init__(self, rewrites: Iterable[ModelRewrite]) -> None:
        self._exact: dict[str, RewriteRule] = {}
        self._catch_all: RewriteRule | None = None
        for rewrite in sorted(rewrites, key=lambda r: (r.created, r.namespace, r.name)):
            for rule in rewrite.rules:
                if not rule.targets:
                    continue
                if not rule.models:
                    if self._catch_all is None:
                        self._catch_all = rule
                    continue
                for model in rule.models:
                    self._exact.setdefault(model, rule)

    def rule_for(self, model: str) -> RewriteRule | None:
        """Return the rule that applies to a model, or None when no rewrite applies."""
        return self._exact.get(model, self._catch_all)

    def resolve(self, model: str, rng: random.Random) -> str | None:
        """Return the model the request should be rewritten to, or None to keep it unchanged."""
        rule = self.rule_for(model)
        return None if rule is None else pick_target(rule.targets, rng)


def pick_target(targets: tuple[RewriteTarget, ...], rng: random.Random) -> str:
    """Draw one target model at random, proportionally to the weights (uniformly when none is set)."""
    if len(targets) == 1:
        return targets[0].model
    weights = [target.weight or 1 for target in targets] if any(t.weight for t in targets) else None
    return rng.choices(targets, weights=weights)[0].model


def parse_timestamp(value: str | datetime) -> datetime:
    """Parse a Kubernetes RFC 3339 timestamp ("2025-01-02T03:04:05Z") into an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rewrite_from_object(obj: Mapping[str, Any]) -> ModelRewrite:
    """Read an InferenceModelRewrite object (its JSON/YAML shape); raises ValueError if it is malformed."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name", "")
    try:
        created = parse_timestamp(metadata.get("creationTimestamp") or datetime.fromtimestamp(0, UTC))
        rules = []
        for rule in (obj.get("spec") or {}).get("rules") or []:
            models = tuple(match["model"]["value"] for match in rule.get("matches") or [])
            targets = tuple(
                RewriteTarget(target["modelRewrite"], target.get("weight")) for target in rule.get("targets") or []
            )
            rules.append(RewriteRule(models, targets))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"InferenceModelRewrite {name!r} is malformed: {error!r}") from error
    return ModelRewrite(name=name, created=created, rules=tuple(rules), namespace=metadata.get("namespace", ""))
