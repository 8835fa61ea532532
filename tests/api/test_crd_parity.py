"""poolgate's API models judge objects as the upstream CRDs do: each sample of the corpus (tests/api/crd_corpus.py) is
validated by the upstream CRD (JSON Schema + CEL rules, see crdcheck.py) and by `parse_object`, and the verdicts
must agree, except for the samples listed as `stricter`, which poolgate refuses on purpose. The CRDs poolgate
generates (crds/) give the same verdicts as the upstream CRDs on every sample of their kinds."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.api import InvalidObjects, parse_object
from tests.api.crd_corpus import CORPUS, KindCorpus, edited
from tests.api.crdcheck import CrdJudge, read_crd

GENERATED_CRDS = Path(__file__).resolve().parents[2] / "crds"
UPSTREAM_CRDS = {
    "GatewayClass": ("gateway-api/gateway.networking.k8s.io_gatewayclasses.yaml",),
    "Gateway": ("gateway-api/gateway.networking.k8s.io_gateways.yaml",),
    "HTTPRoute": ("gateway-api/gateway.networking.k8s.io_httproutes.yaml",),
    "ReferenceGrant": ("gateway-api/gateway.networking.k8s.io_referencegrants.yaml",),
    "InferencePool": ("gateway-api-inference-extension/inference.networking.k8s.io_inferencepools.yaml",),
    "InferenceObjective": (
        "llm-d-router/inference.networking.x-k8s.io_inferenceobjectives.yaml",
        "llm-d-router/llm-d.ai_inferenceobjectives.yaml",
    ),
    "InferenceModelRewrite": (
        "llm-d-router/inference.networking.x-k8s.io_inferencemodelrewrites.yaml",
        "llm-d-router/llm-d.ai_inferencemodelrewrites.yaml",
    ),
}

_SPLIT = (
    "uses split() of the Kubernetes strings library, which cel-python lacks (Gateway spec.infrastructure, "
    "a field poolgate does not read)"
)
# CEL rules of the upstream CRDs that the judge does not evaluate, and why. Every other rule is evaluated.
NOT_EVALUATED = {
    "self == oldSelf": "transition rule (reads oldSelf): Kubernetes evaluates it on update only; samples are creates",
    'self.all(key, key.split("/")[0].size() < 253)': _SPLIT,
}


def load_judges(directory, files_by_kind: dict[str, tuple[str, ...]]) -> dict[str, list[CrdJudge]]:
    """kind -> judges of the CRDs in `directory` serving it (one per API group)."""
    return {
        kind: [CrdJudge(read_crd(directory / f), NOT_EVALUATED) for f in files] for kind, files in files_by_kind.items()
    }


def verdict(judges: list[CrdJudge], obj: dict) -> list[str]:
    """The problems the CRD serving obj's apiVersion finds (the first CRD says so when none serves it)."""
    served = [j for j in judges if obj.get("apiVersion") in j.schemas]
    return (served or judges)[0].problems(obj)


def samples(section: str) -> list:
    """pytest params (obj, expectation) of one corpus section, for every apiVersion the kind is judged under."""
    out = []
    for corpus in CORPUS:
        for api_version in corpus.api_versions:
            base = {**corpus.base, "apiVersion": api_version}
            group = api_version.split("/")[0]
            for name, entry in getattr(corpus, section).items():
                edits, note = (entry, None) if section == "valid" else entry
                out.append(pytest.param(edited(base, edits), note, id=f"{corpus.kind}/{group}: {name}"))
    return out


def poolgate_problems(obj: dict) -> list[str]:
    try:
        assert parse_object(obj, "corpus") is not None
    except InvalidObjects as error:
        return [str(p) for p in error.problems]
    return []


@pytest.fixture(scope="session")
def upstream(reference_crds) -> dict[str, list[CrdJudge]]:
    return load_judges(reference_crds, UPSTREAM_CRDS)


@pytest.mark.parametrize("obj, _", samples("valid"))
def test_valid_samples_are_accepted_by_both(upstream, obj, _):
    assert verdict(upstream[obj["kind"]], obj) == []
    assert poolgate_problems(obj) == []


@pytest.mark.parametrize("obj, breaks", samples("invalid"))
def test_invalid_samples_are_refused_by_both(upstream, obj, breaks):
    found = verdict(upstream[obj["kind"]], obj)
    assert any(breaks in problem for problem in found), found  # the sample breaks the rule it is meant to
    assert poolgate_problems(obj), "poolgate accepts what the CRD refuses"


@pytest.mark.parametrize("obj, reason", samples("stricter"))
def test_stricter_samples_are_refused_by_poolgate_only(upstream, obj, reason):
    assert verdict(upstream[obj["kind"]], obj) == []
    assert poolgate_problems(obj), f"poolgate was meant to refuse this: {reason}"


@pytest.fixture(scope="session")
def generated() -> dict[str, list[CrdJudge]]:
    judges: dict[str, list[CrdJudge]] = {}
    for path in sorted(GENERATED_CRDS.glob("*.yaml")):
        judge = CrdJudge(read_crd(path), {})
        judges.setdefault(judge.kind, []).append(judge)
    return judges


GENERATED_KINDS = ("InferencePool", "InferenceObjective", "InferenceModelRewrite")


@pytest.mark.parametrize(
    "obj, _",
    [
        p
        for section in ("valid", "invalid", "stricter")
        for p in samples(section)
        if p.values[0]["kind"] in GENERATED_KINDS
    ],
)
def test_generated_crds_judge_like_upstream(upstream, generated, obj, _):
    assert bool(verdict(generated[obj["kind"]], obj)) == bool(verdict(upstream[obj["kind"]], obj))


def test_generated_crds_serve_the_upstream_versions(upstream, generated):
    assert set(generated) == set(GENERATED_KINDS)
    for kind in GENERATED_KINDS:
        assert [sorted(j.schemas) for j in generated[kind]] == [sorted(j.schemas) for j in upstream[kind]]


def test_every_rule_left_unevaluated_is_in_the_crds(upstream):
    skipped = set().union(*(j.skipped for judges in upstream.values() for j in judges))
    assert skipped == set(NOT_EVALUATED)


def test_corpus_covers_every_kind_both_ways():
    for corpus in CORPUS:
        assert isinstance(corpus, KindCorpus) and corpus.valid and len(corpus.invalid) >= 8, corpus.kind
    assert {c.kind for c in CORPUS} == set(UPSTREAM_CRDS)
