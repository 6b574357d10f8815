"""mmaudit on small trees, one provenance shape each, against reviewed JSON."""

import json
import os

import pytest

import support


@pytest.mark.parametrize("name", support.audit_fixtures())
def test_fixture_json(name):
    with open(os.path.join(support.AUDIT_FIXTURES, name, "expected.json")) as f:
        expected = f.read()
    assert support.audit_fixture_json(name) == expected


# The verdict each fixture exists for, written before the tool ran.
SHAPES = {
    "field_pinned_in_other_file": ["pinned"],
    "field_grab_only_in_other_file": ["grab-only"],
    "field_mixed_stores_review": ["review"],
    "two_structs_same_field": ["unreferenced"],
    "field_from_parameter": ["grab-only"],
    "parameter_pinned_by_callers": ["pinned"],
    "macro_body_unanalyzed": ["unanalyzed"],
    "store_in_header_inline": ["pinned"],
    "get_task_mm_grab_put": ["grab-only"],
    "no_call_sites": [],
    "unparsable_file": ["unanalyzed"],
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_fixture_verdicts(name):
    data = json.loads(support.audit_fixture_json(name))
    assert [s["verdict"] for s in data["sites"]] == SHAPES[name]
    assert data["summary"]["sites"] == len(SHAPES[name])


def test_cross_file_evidence_names_the_store():
    data = json.loads(support.audit_fixture_json("field_grab_only_in_other_file"))
    steps = [(e["file"], e["line"]) for e in data["sites"][0]["evidence"]]
    assert ("create.c", 9) in steps and ("worker.c", 9) in steps


def test_unparsable_file_is_counted():
    data = json.loads(support.audit_fixture_json("unparsable_file"))
    assert data["stats"]["files_failed"] == ["broken.c"]


def test_mixed_stores_name_the_condition():
    data = json.loads(support.audit_fixture_json("field_mixed_stores_review"))
    assert "separated by `use_worker`: pinned when it is true" in data["sites"][0]["reason"]
