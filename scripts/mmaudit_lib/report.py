"""Output formats of the audit: text, JSON, SARIF 2.1.0 and Markdown."""

import hashlib
import html
import json
import os
import re
import urllib.parse

from .audit import FINDINGS, VERDICTS
from .document import HAZARDS

RULES = {
    "grab-only": ("MMA001", "Borrowed mm holds mm_count only",
                  "kthread_use_mm()/use_mm() on an mm whose owner holds only mmgrab() (mm_count); "
                  "the borrow needs mmget_not_zero()/mmput() around it."),
    "unreferenced": ("MMA002", "Borrowed mm holds no reference",
                     "kthread_use_mm()/use_mm() on an mm stored without any reference; it needs "
                     "mmgrab() where it is stored and mmget_not_zero()/mmput() around the borrow."),
    "review": ("MMA003", "Borrowed mm with mixed or unresolved provenance",
               "Some stores of the mm pin mm_users and some do not, or the origin is unknown."),
    "unanalyzed": ("MMA004", "Borrow not analyzed",
                   "The call is in a macro body or spatch could not analyze it."),
}
LEVELS = {"grab-only": "warning", "unreferenced": "error", "review": "note", "unanalyzed": "note"}
# Hazards are a second dimension of a site, beside its verdict (a pinned site
# can have one): kind -> (rule id, SARIF name, short text, full text, level).
HAZARD_RULES = {
    "put-in-completion": (
        "MMA005", "FinalPutInOwnCompletion",
        "Final mmput() in the completion path of its own aio request",
        "The borrow holds an mm_users reference (mmget_not_zero(), get_task_mm(), ...), but "
        "its mmput() can drop the last one before the function, or one it is called from, "
        "completes the struct kiocb with ki_complete(). The final mmput() runs __mmput() -> "
        "exit_aio(), "
        "which waits for every in-flight iocb of the mm, including the one this worker has "
        "yet to complete: a process that exits during the copy leaves the worker waiting for "
        "itself. mmput_async() hands the teardown to a work item and avoids the self-wait.",
        "warning"),
}
HELP_URI = "https://lore.kernel.org/all/20200203201745.29986-2-aarcange@redhat.com/"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Markup characters; "_" only where it could open or close emphasis
# (mm_users stays as it is).
_MD_SPECIAL = re.compile(r"[\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def printable(text):
    """TEXT with control characters (newlines, terminal escapes) shown as \\xNN."""
    return _CONTROL.sub(lambda m: "\\x%02x" % ord(m.group(0)), str(text))


def md_text(text):
    """Plain Markdown text: no markup, HTML, table cell break or line break."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), html.escape(printable(text), quote=False))


def md_code(text):
    """An inline code span that holds TEXT as is, also inside a table."""
    text = printable(text).replace("|", "\\|")
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return "%s%s%s%s%s" % (fence, pad, text, pad, fence)


def md_fence(lines, lang=""):
    """A fenced block around LINES that no line of theirs can close."""
    longest = max((len(r) for l in lines for r in re.findall(r"`{3,}", l)), default=2)
    fence = "`" * (longest + 1)
    return [fence + lang] + [printable(l) for l in lines] + [fence]


def to_json(data):
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def fingerprint(site):
    """Stable across line moves: file, function, API and mm expression."""
    key = "\0".join(str(site.get(k)) for k in ("file", "function", "api", "mm"))
    if site.get("function") is None:
        key += "\0%s" % site["line"]
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def hazard_fingerprint(site, hazard):
    """The site's fingerprint key and the hazard's kind: a hazard result
    never collides with its site's verdict result."""
    key = "%s\0hazard\0%s" % (fingerprint(site), hazard["kind"])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def hazard_count(data):
    return sum(len(s["hazards"]) for s in data["sites"])


def to_text(data):
    out = []
    for s in data["sites"]:
        call = "%s(%s)" % (s["api"], s["mm"]) if s["mm"] else s["api"] + "()"
        where = "%s:%d:%d" % (s["file"], s["line"], s["column"] + 1)
        out.append(printable("%s: %s (%s%s): %s%s: %s" % (
            where, s["verdict"], s["confidence"],
            ", risk %s" % s["risk"] if s.get("risk") else "", call,
            " in %s()" % s["function"] if s["function"] else "", s["reason"])))
        for h in s["hazards"]:
            out.append(printable("%s: hazard %s: %s" % (where, h["kind"], h["reason"])))
    return "\n".join(out) + ("\n" if out else "")


def _related(evidence):
    return [dict(_location(e["file"], e["line"]), id=i, message={"text": e["what"]})
            for i, e in enumerate(evidence)]


def hazard_result(s, h, index):
    rid, _, _, _, level = HAZARD_RULES[h["kind"]]
    call = "%s(%s)" % (s["api"], s["mm"]) if s["mm"] else s["api"]
    result = {
        "ruleId": rid, "ruleIndex": index[h["kind"]], "level": level,
        "message": {"text": "%s: %s (hazard %s; verdict %s)" % (call, h["reason"], h["kind"],
                                                                 s["verdict"])},
        "locations": [_location(s["file"], s["line"], s["column"] + 1)],
        "partialFingerprints": {"mmauditHazard/v1": hazard_fingerprint(s, h)},
        "properties": {"hazard": h["kind"], "verdict": s["verdict"]},
    }
    related = _related(h["evidence"])
    if related:
        result["relatedLocations"] = related
    return result


def to_sarif(data):
    rules = [{"id": rid, "name": name.replace(" ", ""), "shortDescription": {"text": name},
              "fullDescription": {"text": text}, "helpUri": HELP_URI,
              "defaultConfiguration": {"level": LEVELS[v]}}
             for v, (rid, name, text) in RULES.items()]
    rules += [{"id": rid, "name": name, "shortDescription": {"text": short},
               "fullDescription": {"text": text}, "helpUri": HELP_URI,
               "defaultConfiguration": {"level": level}}
              for rid, name, short, text, level in (HAZARD_RULES[k] for k in HAZARDS)]
    index = {v: i for i, v in enumerate(RULES)}
    hazard_index = {k: len(RULES) + i for i, k in enumerate(HAZARDS)}
    results = []
    for s in data["sites"]:
        results += site_results(s, index, hazard_index)
    run = {
        "tool": {"driver": {"name": "mmaudit", "version": data["tool"]["version"],
                            "informationUri": HELP_URI, "rules": rules}},
        "originalUriBaseIds": {"SRCROOT": {"description": {"text": "the audited tree: %s" %
                                                            data["tree"]["source"]}}},
        "results": results,
        "properties": {"tree": data["tree"], "spatch": data["tool"]["spatch"],
                       "stats": data["stats"]},
    }
    return json.dumps({"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
                       "version": "2.1.0", "runs": [run]}, indent=2) + "\n"


def site_results(s, index, hazard_index):
    """The SARIF results of one site: its verdict unless pinned, then one per
    hazard (pinned or not)."""
    results = []
    if s["verdict"] != "pinned":
        rid = RULES[s["verdict"]][0]
        call = "%s(%s)" % (s["api"], s["mm"]) if s["mm"] else s["api"]
        result = {
            "ruleId": rid, "ruleIndex": index[s["verdict"]], "level": LEVELS[s["verdict"]],
            "message": {"text": "%s: %s (%s, confidence %s)" % (call, s["reason"], s["verdict"],
                                                               s["confidence"])},
            "locations": [_location(s["file"], s["line"], s["column"] + 1)],
            "partialFingerprints": {"mmauditSite/v1": fingerprint(s)},
            "properties": {"verdict": s["verdict"], "confidence": s["confidence"]},
        }
        if s.get("risk"):
            # SARIF rank (0-100): high risk first in viewers that sort by it.
            result["rank"] = RISK_RANK[s["risk"]]
            result["properties"].update(risk=s["risk"], arches_affected=s["arches_affected"],
                                        arches_building=s["arches_building"],
                                        risk_reason=s["risk_reason"])
        related = _related(s["evidence"])
        if related:
            result["relatedLocations"] = related
        results.append(result)
    return results + [hazard_result(s, h, hazard_index) for h in s["hazards"]]


def _location(path, line, column=None):
    region = {"startLine": line}
    if column:
        region["startColumn"] = column
    uri = urllib.parse.quote(path, safe="/")
    return {"physicalLocation": {"artifactLocation": {"uri": uri, "uriBaseId": "SRCROOT"},
                                 "region": region}}


def summary_table(data):
    s = data["summary"]
    head = ["sites"] + list(VERDICTS) + ["hazards", "files failed"]
    row = [str(s["sites"])] + [str(s[v]) for v in VERDICTS] + [
        str(hazard_count(data)), str(len(data["stats"]["files_failed"]))]
    return "| %s |\n|%s\n| %s |\n" % (" | ".join(head), "---:|" * len(head), " | ".join(row))


def to_markdown(data, tree=None, context=3, fixes=None):
    t = data["tree"]
    out = ["# mmaudit report: %s" % md_text(("Linux " + t["version"]) if t["version"] else t["source"]),
           "", "Source: %s; mmaudit %s; spatch %s." % (md_code(t["source"]), data["tool"]["version"],
                                                      data["tool"]["spatch"]), "",
           summary_table(data),
           "Searched %(files_searched)d C files; %(files_with_borrows)d mention a borrow; "
           "%(files_parsed)d parsed; %(store_files)d searched for stores." % data["stats"], ""]
    if data["stats"]["files_failed"]:
        out += ["Files spatch could not analyze:", ""]
        out += ["- %s: %s" % (md_code(f["file"]), md_text(f["reason"]))
                for f in data["stats"]["files_failed"]]
        out.append("")
    if data["stats"]["files_unreadable"]:
        out += ["Files or directories that could not be read, so not searched: " + ", ".join(
            md_code(f) for f in data["stats"]["files_unreadable"]), ""]
    out += ["## Sites", "", "| site | function | call | verdict | confidence | risk |",
            "|---|---|---|---|---|---|"]
    for s in data["sites"]:
        out.append("| %s | %s | %s | **%s**%s | %s | %s |" % (
            md_code("%s:%d" % (s["file"], s["line"])), md_text(s["function"] or "-"),
            md_code("%s(%s)" % (s["api"], s["mm"] or "")), s["verdict"],
            "".join(", hazard %s" % md_text(h["kind"]) for h in s["hazards"]), s["confidence"],
            md_text(s.get("risk") or "-")))
    out.append("")
    out += _hazards_markdown(data, tree, context)
    # Findings by risk (the architectures that can build the file), then path.
    for s in sorted(data["sites"], key=lambda s: (risk_order(s), s["file"], s["line"])):
        if s["verdict"] == "pinned":
            continue
        out += ["## %s: %s %s()" % (s["verdict"], md_code("%s:%d" % (s["file"], s["line"])),
                                       md_text(s["function"] or "")),
                "", md_text(s["reason"]) + " (confidence %s)." % s["confidence"], ""]
        if s.get("risk"):
            out += ["Risk: **%s**: %s." % (md_text(s["risk"]), md_text(s.get("risk_reason") or "")),
                    ""]
        out += _evidence_markdown(s["evidence"])
        if tree:
            out += _code(tree, s["file"], s["line"], context)
        if fixes and (s["file"], s["line"]) in fixes:
            out += [fixes[(s["file"], s["line"])], ""]
    return "\n".join(out).rstrip("\n") + "\n"


RISK_RANK = {"high": 90.0, "unknown": 50.0, "low": 10.0}


def risk_order(site):
    """Sort key: high risk first, then unknown, then low, then none."""
    return -RISK_RANK.get(site.get("risk"), 0.0)


def _evidence_markdown(evidence):
    if not evidence:
        return []
    return (["Evidence:", ""]
            + ["1. %s %s" % (md_code("%s:%d" % (e["file"], e["line"])), md_text(e["what"]))
               for e in evidence] + [""])


def _hazards_markdown(data, tree, context):
    """The "Hazards" section: each hazard of each site, with its evidence; the
    code of a pinned site here, since it has no finding section of its own."""
    if not hazard_count(data):
        return []
    out = ["## Hazards", "", "A hazard is a second dimension of its site: it does not change "
           "the verdict, and a pinned site can have one.", ""]
    for s in data["sites"]:
        for h in s["hazards"]:
            rid, _, short, _, _ = HAZARD_RULES[h["kind"]]
            out += ["### %s: %s %s() (%s)" % (md_text(h["kind"]),
                                              md_code("%s:%d" % (s["file"], s["line"])),
                                              md_text(s["function"] or ""), s["verdict"]),
                    "", "%s (%s): %s" % (md_text(short), rid, md_text(h["reason"])), ""]
            out += _evidence_markdown(h["evidence"])
            if tree and s["verdict"] == "pinned":
                out += _code(tree, s["file"], s["line"], context)
    return out


def _code(tree, rel, line, context):
    try:
        with open(os.path.join(tree, rel), "rb") as f:
            lines = f.read().decode("utf-8", "replace").split("\n")
    except OSError:
        return []
    lo, hi = max(1, line - context), min(len(lines), line + context)
    body = ["%s%5d  %s" % (">" if n == line else " ", n, lines[n - 1].rstrip())
            for n in range(lo, hi + 1)]
    return md_fence(body, "c") + [""]


def findings(data):
    return [s for s in data["sites"] if s["verdict"] in FINDINGS]


def exit_status(data):
    """1 when the audit cannot call the tree clean: a finding, a hazard (on
    any site, pinned too), a site it could not analyze, or a file it could
    not parse or read; else 0."""
    stats = data["stats"]
    unsure = any(s["verdict"] != "pinned" or s["hazards"] for s in data["sites"])
    return 1 if unsure or stats["files_failed"] or stats["files_unreadable"] else 0
