"""Schema mmaudit-findings/2 in every reader and writer of the findings
document: site hazards (put-in-completion) and files_failed with reasons.

The documents are built here, so these tests do not depend on the audit:
validation (good, bad, schema-1 migration), SARIF (MMA005, validated by
sarif-multitool), Markdown (escaping of hostile text), text, exit status
and diff."""

import copy
import json
import os
import subprocess
import sys

import pytest

import support

sys.path.insert(0, os.path.join(support.ROOT, "scripts"))

from mmaudit_lib import UsageError, diff, document, report  # noqa: E402

FFS = "drivers/usb/gadget/function/f_fs.c"
HOSTILE = "a | b `tick` ``two`` <script>alert(1)</script> *em* [x](y) \x1b[31mred"


def hazard(reason="the final mmput() at line 882 can run exit_aio(), which waits for the "
                  "iocb completed at line 889"):
    return {"kind": "put-in-completion", "reason": reason,
            "evidence": [{"file": FFS, "line": 882, "what": "mmput(io_data->mm);"},
                         {"file": FFS, "line": 889,
                          "what": "io_data->kiocb->ki_complete(io_data->kiocb, ret);"}]}


def pinned_site(hazards=None):
    return {"file": FFS, "line": 879, "column": 3, "function": "ffs_user_copy_worker",
            "api": "kthread_use_mm", "mm": "io_data->mm", "verdict": "pinned",
            "confidence": "High", "reason": "mmget_not_zero() on every path",
            "evidence": [{"file": FFS, "line": 878, "what": "if (mmget_not_zero(io_data->mm)) {"}],
            "hazards": [hazard()] if hazards is None else hazards}


def grab_only_site():
    return {"file": "drivers/dma/idxd/cdev.c", "line": 758, "column": 1,
            "function": "idxd_copy_cr", "api": "kthread_use_mm", "mm": "mm",
            "verdict": "grab-only", "confidence": "Moderate",
            "reason": "every store to struct idxd_user_context.mm holds mm_count only",
            "evidence": [{"file": "drivers/dma/idxd/cdev.c", "line": 245,
                          "what": "ctx->mm = current->mm;"}],
            "hazards": []}


def doc(sites=None, files_failed=None):
    """A schema-2 document: by default a pinned site with a hazard and a
    grab-only site without, and one failed file."""
    sites = [pinned_site(), grab_only_site()] if sites is None else sites
    summary = {"sites": len(sites)}
    for v in ("pinned", "grab-only", "unreferenced", "review", "unanalyzed"):
        summary[v] = sum(s["verdict"] == v for s in sites)
    return {
        "schema": "mmaudit-findings/2",
        "tool": {"name": "mmaudit", "version": "0.1.0", "spatch": "1.1.1"},
        "tree": {"source": "linux-source-6.12.tar.xz", "version": "6.12.117"},
        "stats": {"files_searched": 10, "files_with_borrows": 3, "files_parsed": 2,
                  "files_failed": [{"file": "drivers/x.c", "reason": "spatch timed out after 120 s"}]
                  if files_failed is None else files_failed,
                  "files_unreadable": [], "store_files": 1},
        "summary": summary,
        "sites": sorted(sites, key=lambda s: (s["file"], s["line"], s["column"])),
    }


def schema1(sites=None, files_failed=("drivers/x.c",)):
    """The same document as mmaudit-findings/1 wrote it."""
    d = doc(sites)
    d["schema"] = "mmaudit-findings/1"
    d["stats"]["files_failed"] = list(files_failed)
    for s in d["sites"]:
        del s["hazards"]
    return d


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


# --- validation -----------------------------------------------------------------

def test_good_document_is_accepted(tmp_path):
    assert document.check(doc()) is None
    assert document.check(doc(files_failed=[])) is None
    assert document.check(doc([pinned_site(hazards=[])])) is None
    loaded = document.load(write(tmp_path, "f.json", doc()))
    assert loaded == doc() and "migrated_from" not in loaded


def _site0(d):
    return [s for s in d["sites"] if s["hazards"]][0]


def _set(path, value):
    """A change to the hazard of the pinned site, or to files_failed."""
    def change(d):
        obj = d
        for key in path[:-1]:
            obj = _site0(d) if key == "site" else obj[key]
        if value is KeyError:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
        return d
    return change


BAD = {
    "no-hazards": (_set(["site", "hazards"], KeyError), "has no hazards"),
    "hazards-not-list": (_set(["site", "hazards"], {"kind": "put-in-completion"}),
                         "hazards has the wrong type"),
    "hazard-not-object": (_set(["site", "hazards"], ["put-in-completion"]), "is not an object"),
    "unknown-kind": (_set(["site", "hazards", 0, "kind"], "use-after-free"), "unknown kind"),
    "reason-not-str": (_set(["site", "hazards", 0, "reason"], None), "reason has the wrong type"),
    "no-evidence": (_set(["site", "hazards", 0, "evidence"], KeyError), "has no evidence"),
    "step-line-str": (_set(["site", "hazards", 0, "evidence", 0, "line"], "882"),
                      "evidence[0].line has the wrong type"),
    "step-line-bool": (_set(["site", "hazards", 0, "evidence", 1, "line"], True),
                       "evidence[1].line has the wrong type"),
    "step-line-zero": (_set(["site", "hazards", 0, "evidence", 1, "line"], 0), "bad line"),
    "step-no-what": (_set(["site", "hazards", 0, "evidence", 0, "what"], KeyError), "has no what"),
    "repeated-kind": (_set(["site", "hazards"], [hazard(), hazard("again")]), "repeats the kind"),
    "failed-name": (_set(["stats", "files_failed"], ["drivers/x.c"]), "is not an object"),
    "failed-no-reason": (_set(["stats", "files_failed"], [{"file": "drivers/x.c"}]),
                         "has no reason"),
    "failed-reason-int": (_set(["stats", "files_failed"], [{"file": "a.c", "reason": 1}]),
                          "reason has the wrong type"),
    "failed-repeated": (_set(["stats", "files_failed"], [{"file": "a.c", "reason": "x"},
                                                         {"file": "a.c", "reason": "y"}]),
                        "repeated file"),
    "failed-unsorted": (_set(["stats", "files_failed"], [{"file": "b.c", "reason": "x"},
                                                         {"file": "a.c", "reason": "y"}]),
                        "out of order"),
    "old-schema-name": (_set(["schema"], "mmaudit-findings/3"), "schema is"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_hazards_and_files_failed_are_rejected(tmp_path, name):
    change, words = BAD[name]
    bad = change(doc())
    problem = document.check(bad)
    assert problem and words in problem, problem
    path = write(tmp_path, "bad.json", bad)
    with pytest.raises(UsageError) as err:
        document.load(path)
    assert str(err.value).startswith(path + ": ") and "\n" not in str(err.value)


def test_schema1_document_is_migrated(tmp_path):
    old = schema1()
    assert document.check(old) is not None        # not a schema-2 document as it is
    data = document.load(write(tmp_path, "old.json", old))
    assert data["schema"] == document.SCHEMA == "mmaudit-findings/2"
    assert data["migrated_from"] == "mmaudit-findings/1"
    assert [s["hazards"] for s in data["sites"]] == [[], []]
    assert data["stats"]["files_failed"] == [
        {"file": "drivers/x.c", "reason": "not recorded (mmaudit-findings/1)"}]
    assert document.check(data) is None
    # everything else is as strict as before
    for change, words in [
            (lambda d: d["stats"]["files_failed"].append(7), "holds a non-string"),
            (lambda d: d["stats"]["files_failed"].append({"file": "y.c", "reason": "r"}),
             "holds a non-string"),
            (lambda d: d["sites"][0].update(hazards=[]), "does not have"),
            (lambda d: d["sites"][1].update(line="1"), "wrong type"),
            (lambda d: d["sites"][0].update(verdict="fine"), "unknown verdict"),
            (lambda d: d.pop("tree"), "has no tree")]:
        bad = schema1()
        change(bad)
        path = write(tmp_path, "bad1.json", bad)
        with pytest.raises(UsageError) as err:
            document.load(path)
        assert words in str(err.value), str(err.value)


def test_schema1_shard_is_refused(tmp_path):
    shard = schema1()
    shard["shard"] = {"index": 1, "count": 1, "store_files": []}
    path = write(tmp_path, "s1.json", shard)
    with pytest.raises(UsageError) as err:
        document.load(path, shard=True)
    assert "audit the shards again" in str(err.value)
    good = doc()
    good["shard"] = {"index": 1, "count": 1, "store_files": []}
    assert document.load(write(tmp_path, "s2.json", good), shard=True) == good


# --- SARIF ------------------------------------------------------------------------

def _sarif(data):
    log = json.loads(report.to_sarif(data))
    run, = log["runs"]
    return run["tool"]["driver"]["rules"], run["results"]


def test_every_hazard_kind_has_one_rule():
    assert set(report.HAZARD_RULES) == set(document.HAZARDS)
    ids = [r[0] for r in report.RULES.values()] + [r[0] for r in report.HAZARD_RULES.values()]
    assert len(ids) == len(set(ids))


def test_sarif_has_a_hazard_result_for_the_pinned_site():
    rules, results = _sarif(doc())
    rule = [r for r in rules if r["id"] == "MMA005"]
    assert len(rule) == 1 and rule[0]["name"] == "FinalPutInOwnCompletion"
    assert rule[0]["defaultConfiguration"]["level"] == "warning"
    assert "exit_aio()" in rule[0]["fullDescription"]["text"]
    assert "mmput_async()" in rule[0]["fullDescription"]["text"]
    assert [r["ruleId"] for r in results] == ["MMA001", "MMA005"]
    res = results[1]
    assert rules[res["ruleIndex"]]["id"] == "MMA005" and res["level"] == "warning"
    loc = res["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == FFS and loc["region"] == {"startLine": 879,
                                                                       "startColumn": 4}
    related = [(r["physicalLocation"]["artifactLocation"]["uri"],
                r["physicalLocation"]["region"]["startLine"], r["message"]["text"], r["id"])
               for r in res["relatedLocations"]]
    assert related == [(FFS, 882, "mmput(io_data->mm);", 0),
                       (FFS, 889, "io_data->kiocb->ki_complete(io_data->kiocb, ret);", 1)]
    assert list(res["partialFingerprints"]) == ["mmauditHazard/v1"]
    assert res["properties"] == {"hazard": "put-in-completion", "verdict": "pinned"}
    no_hazard = doc([pinned_site(hazards=[]), grab_only_site()])
    assert [r["ruleId"] for r in _sarif(no_hazard)[1]] == ["MMA001"]


def test_sarif_hazard_fingerprint_differs_from_the_site_one():
    site = dict(grab_only_site(), hazards=[hazard()])
    _, results = _sarif(doc([site]))
    assert [r["ruleId"] for r in results] == ["MMA001", "MMA005"]
    site_fp = results[0]["partialFingerprints"]["mmauditSite/v1"]
    hazard_fp = results[1]["partialFingerprints"]["mmauditHazard/v1"]
    assert site_fp != hazard_fp and len(hazard_fp) == 32
    moved = dict(site, line=800, hazards=[hazard("another reason")])
    assert _sarif(doc([moved]))[1][1]["partialFingerprints"]["mmauditHazard/v1"] == hazard_fp


def test_sarif_with_hazards_validates(tmp_path):
    site = dict(pinned_site(), reason=HOSTILE, hazards=[hazard(HOSTILE)])
    path = tmp_path / "findings.sarif"
    path.write_text(report.to_sarif(doc([site, grab_only_site()])))
    assert "MMA005" in path.read_text()
    check = subprocess.run([os.path.join(support.ROOT, "scripts", "sarif-validate"), str(path)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_sarif_validator_sees_a_broken_hazard_result(tmp_path):
    """The validation above can fail: a hazard result without a message is invalid."""
    log = json.loads(report.to_sarif(doc()))
    del [r for r in log["runs"][0]["results"] if r["ruleId"] == "MMA005"][0]["message"]
    path = tmp_path / "broken.sarif"
    path.write_text(json.dumps(log))
    check = subprocess.run([os.path.join(support.ROOT, "scripts", "sarif-validate"), str(path)],
                           capture_output=True, text=True)
    assert check.returncode == 1, (check.returncode, check.stderr)


# --- Markdown, text, exit status ---------------------------------------------------

def test_markdown_lists_the_hazard_escaped():
    site = dict(pinned_site(), hazards=[hazard(HOSTILE)])
    site["hazards"][0]["evidence"][0]["what"] = "mmput(x) | <b>`y`</b>"
    failed = [{"file": "a|b`.c", "reason": "spatch <i>crashed</i> | `x`"}]
    md = report.to_markdown(doc([site, grab_only_site()], files_failed=failed))
    assert "| sites | pinned | grab-only | unreferenced | review | unanalyzed | hazards | " \
        "files failed |" in md
    assert "| 2 | 1 | 1 | 0 | 0 | 0 | 1 | 1 |" in md
    section = md.split("\n## Hazards\n")[1].split("\n## ")[0]
    assert "### put-in-completion: `%s:879` ffs_user_copy_worker() (pinned)" % FFS in section
    assert report.md_text(HOSTILE) in section
    assert "1. `%s:882` mmput(x) \\| &lt;b&gt;\\`y\\`&lt;/b&gt;" % FFS in section
    assert "`%s:889`" % FFS in section
    assert "<script>" not in md and "<b>" not in md and "<i>" not in md and "\x1b" not in md
    for line in md.splitlines():        # no unescaped | in a hazard line breaks a table
        if "alert(1)" in line:
            assert "a \\| b \\`tick\\`" in line and "&lt;script&gt;" in line
    assert "\n- ``a\\|b`.c``: spatch &lt;i&gt;crashed&lt;/i&gt; \\| \\`x\\`\n" in md
    sites = md.split("\n## Sites\n")[1].split("\n## ")[0]
    assert "| **pinned**, hazard put-in-completion | High |" in sites
    assert "| **grab-only** | Moderate |" in sites


def test_markdown_without_hazards_has_no_section():
    md = report.to_markdown(doc([pinned_site(hazards=[])]))
    assert "## Hazards" not in md and "| 1 | 1 | 0 | 0 | 0 | 0 | 0 | 1 |" in md


def test_text_has_a_hazard_line_after_its_site():
    site = dict(pinned_site(), hazards=[hazard("reason\nwith\x1b[2J escapes")])
    lines = report.to_text(doc([site, grab_only_site()])).splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("%s:879:4: pinned (High): kthread_use_mm(io_data->mm)" % FFS)
    assert lines[2] == ("%s:879:4: hazard put-in-completion: reason\\x0awith\\x1b[2J escapes"
                        % FFS)
    assert lines[0].startswith("drivers/dma/idxd/cdev.c:758:2: grab-only")


def test_exit_status_counts_a_hazard_on_a_pinned_site():
    assert report.exit_status(doc([pinned_site()], files_failed=[])) == 1
    assert report.exit_status(doc([pinned_site(hazards=[])], files_failed=[])) == 0
    failed = [{"file": "a.c", "reason": "spatch timed out after 120 s"}]
    assert report.exit_status(doc([pinned_site(hazards=[])], files_failed=failed)) == 1


# --- diff -------------------------------------------------------------------------

def test_diff_reports_a_hazard_that_appeared():
    old = doc([pinned_site(hazards=[]), grab_only_site()])
    new = doc([dict(pinned_site(), line=890), grab_only_site()])
    groups, md = diff.run(old, new)
    appeared = groups["hazards"]["appeared"]
    assert len(appeared) == 1 and appeared[0][2]["kind"] == "put-in-completion"
    assert appeared[0][0]["line"] == 879 and appeared[0][1]["line"] == 890
    assert groups["hazards"]["gone"] == [] and groups["hazards"]["still present"] == []
    part = md.split("\n## Hazards\n")[1]
    assert "### Appeared (1)" in part and "### Gone (0)" in part and "### Still present (0)" in part
    assert "`%s:890` ffs_user_copy_worker()" % FFS in part.split("### Gone")[0]
    assert "| hazards | 0 | 1 |" in md
    groups, md = diff.run(new, old)
    assert [g for g in diff.HAZARD_GROUPS if groups["hazards"][g]] == ["gone"]
    groups, md = diff.run(new, copy.deepcopy(new))
    assert [g for g in diff.HAZARD_GROUPS if groups["hazards"][g]] == ["still present"]
    assert groups["still open"] and not groups["new"]


def test_diff_hazard_on_a_new_site_and_on_a_gone_site():
    groups, md = diff.run(doc([grab_only_site()]), doc([grab_only_site(), pinned_site()]))
    assert len(groups["hazards"]["appeared"]) == 1 and "(new site, pinned)" in md
    groups, md = diff.run(doc([grab_only_site(), pinned_site()]), doc([grab_only_site()]))
    assert len(groups["hazards"]["gone"]) == 1 and "(site gone in the new tree)" in md


def test_diff_of_a_schema1_audit_with_a_schema2_one(tmp_path):
    old = write(tmp_path, "old.json", schema1([pinned_site(), grab_only_site()]))
    new = write(tmp_path, "new.json", doc())
    proc = support.run_mmaudit("diff", old, new)
    assert proc.returncode == 1, proc.stderr           # the grab-only site is still open
    assert "Traceback" not in proc.stderr and proc.stderr == ""
    assert "| hazards | not recorded | 1 |" in proc.stdout
    assert "did not look for hazards" in proc.stdout
    part = proc.stdout.split("\n## Hazards\n")[1]
    assert "### Appeared (1)" in part and "`%s:879`" % FFS in part
