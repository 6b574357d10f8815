"""Generality tests from mutations of the real call sites of 6.1 and 6.12
(tests/mutants.py): each mutant's verdict changes, or does not, as the
mutation demands, and each unmutated scratch tree gives the published
verdict."""

import collections

import pytest

import mutants

MUTANTS = mutants.MUTANTS
BASELINES = mutants.baselines(MUTANTS)


@pytest.fixture(scope="module")
def results(request):
    """Every result the selected tests of this module need, audited once,
    two at a time."""
    wanted = set()
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module:
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        for job in (params.get("mutant"), params.get("baseline")):
            if job is not None:
                wanted.add(job.name)
    jobs = [j for j in BASELINES + MUTANTS if j.name in wanted]
    return mutants.run_all(jobs, workers=2)


def _explain(r):
    return r.error or "expected %s, got %s: %s" % (r.expect, r.got, r.reason)


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda b: b.name)
def test_unmutated_small_tree_gives_published_verdict(results, baseline):
    r = results[baseline.name]
    assert mutants.ok(r), _explain(r)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant(results, mutant):
    r = results[mutant.name]
    assert mutants.ok(r), "%s (%s): %s" % (mutant.kind, mutant.why, _explain(r))


def test_definitions_are_consistent():
    """A change mutant expects another verdict than the published one, a
    keep mutant the same; names are unique."""
    assert mutants.consistency_errors(MUTANTS) == []


def test_enough_mutants_of_each_kind_and_site():
    kinds = collections.Counter(m.kind for m in MUTANTS)
    assert len(MUTANTS) >= 30
    assert kinds["change"] >= 15 and kinds["keep"] >= 15
    assert abs(kinds["change"] - kinds["keep"]) <= len(MUTANTS) // 5
    assert {m.series for m in MUTANTS} == set(mutants.SERIES)
    assert len({(m.series, m.file, m.function) for m in MUTANTS}) >= 20
    # every published verdict except unanalyzed is a starting point
    started = {mutants.published_site(m.series, m.file, m.function)["verdict"] for m in MUTANTS}
    assert started == {"pinned", "grab-only", "unreferenced", "review"}


def test_a_missing_text_is_an_error_not_a_skip():
    m = MUTANTS[0]
    broken = m._replace(name="broken", edits=(mutants.edit(m.file, "no such text\n", "x\n"),))
    r = mutants.run_one(broken)
    assert r.got is None and "occurs 0 times" in r.error
    assert not mutants.ok(r)
