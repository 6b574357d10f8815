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
    "store_function_unparsable": ["unanalyzed"],
    "caller_function_unparsable": ["unanalyzed"],
    "active_mm_kthread": ["grab-only", "grab-only"],
    "current_mm_process": ["pinned"],
    "released_local_pin": ["unreferenced"],
    "sva_bond_holder": ["grab-only"],
    "mmu_notifier_holder": ["grab-only"],
    "alias_shares_pin": ["pinned", "pinned", "grab-only"],
    "put_in_completion": ["pinned", "pinned", "pinned"],
    "put_in_completion_safe": ["pinned", "pinned", "pinned"],
    "designated_initializer_store": ["unreferenced"],
    "owner_through_header_type": ["grab-only"],
    "store_through_header_type": ["unreferenced"],
    "store_of_unknown_struct": ["unanalyzed"],
    "caller_pins_one_of_two_arguments": ["pinned"],
    "pin_lost_paths": ["unreferenced", "unreferenced", "unreferenced", "pinned", "pinned",
                       "unreferenced", "unreferenced", "pinned"],
    "two_helper_levels": ["pinned", "grab-only"],
    "pin_in_helper": ["pinned", "pinned", "pinned", "grab-only"],
    "struct_parameter_pinned_by_callers": ["pinned", "grab-only"],
    "caller_in_declaration": ["grab-only"],
    "risk_two_arches": ["grab-only"] * 4,
}

# The hazards each fixture exists for, per site.
HAZARDS = {
    "put_in_completion": [["put-in-completion"]] * 3,
    "put_in_completion_safe": [[], [], []],
    "alias_shares_pin": [[], [], []],
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


@pytest.mark.parametrize("name", sorted(HAZARDS))
def test_fixture_hazards(name):
    data = json.loads(support.audit_fixture_json(name))
    assert [[h["kind"] for h in s["hazards"]] for s in data["sites"]] == HAZARDS[name]


def test_unparsable_file_is_counted():
    data = json.loads(support.audit_fixture_json("unparsable_file"))
    assert [f["file"] for f in data["stats"]["files_failed"]] == ["broken.c"]
    assert "parse error at line 3" in data["stats"]["files_failed"][0]["reason"]


@pytest.mark.parametrize("name, file, line", [("store_function_unparsable", "open.c", 9),
                                              ("caller_function_unparsable", "helper.c", 20)])
def test_unparsed_store_or_call_is_named(name, file, line):
    """A store or call in a function spatch dropped: the verdict says which,
    with spatch's parse error, and the file is counted as failed."""
    data = json.loads(support.audit_fixture_json(name))
    failed = {f["file"]: f["reason"] for f in data["stats"]["files_failed"]}
    assert "at line %d" % line in failed[file] and "UNKNOWN_ASM_TEXT" in failed[file]
    reason = data["sites"][0]["reason"]
    assert file in reason and "at line %d" % line in reason and "no store" not in reason


def test_released_pin_names_the_put():
    data = json.loads(support.audit_fixture_json("released_local_pin"))
    assert "mmput() at line 9" in data["sites"][0]["reason"]
    assert ("put.c", 9) in [(e["file"], e["line"]) for e in data["sites"][0]["evidence"]]


def test_hazard_names_put_completion_and_exit_aio():
    data = json.loads(support.audit_fixture_json("put_in_completion"))
    first = data["sites"][0]["hazards"][0]
    assert "mmput() at line 18" in first["reason"] and "line 20" in first["reason"]
    assert "exit_aio()" in first["reason"]
    assert [e["line"] for e in first["evidence"]] == [18, 20]


def test_mixed_stores_name_the_condition():
    data = json.loads(support.audit_fixture_json("field_mixed_stores_review"))
    assert "separated by `use_worker`: pinned when it is true" in data["sites"][0]["reason"]


def test_risk_from_the_two_architectures():
    """A driver built on the architecture whose TLB code skips flushes is high
    risk; on the other one only, or on neither, low; the shortcut is cited."""
    data = json.loads(support.audit_fixture_json("risk_two_arches"))
    got = [(s["file"], s["risk"], s["arches_affected"], s["arches_building"])
           for s in data["sites"]]
    assert got == [("drivers/a/a.c", "high", ["fast"], ["fast"]),
                   ("drivers/b/b.c", "low", [], ["slow"]),
                   ("drivers/both/both.c", "high", ["fast"], ["fast", "slow"]),
                   ("drivers/none/none.c", "low", [], [])]
    assert "arch/fast/kernel/smp.c:5 flush_tlb_mm()" in data["sites"][0]["risk_reason"]


def test_no_architectures_is_unknown_risk():
    data = json.loads(support.audit_fixture_json("field_grab_only_in_other_file"))
    assert data["sites"][0]["risk"] == "unknown"
    assert "no architectures" in data["sites"][0]["risk_reason"]
