"""What a change brings: audit the tree before and after it, and report
only the difference, as the kernel's CI bots do.

`mmaudit audit --base REV` compares git revision REV with the work tree;
`mmaudit check PATCH...` compares a tree with the tree after a patch
series.  The other side is a scratch copy of the tree made of hard links,
in which only the files that differ are replaced (each gets an inode of its
own first), so nothing is ever written to the tree or to its repository.
A site is matched across the two audits as the release diff matches it
(file, function, call, mm expression), so a line moved by the change does
not make it new."""

import collections
import json
import os
import re
import shutil
import subprocess
import tempfile

from . import VERSION, UsageError, apply as applymod, diff as diffmod, gitsel, report, \
    tree as treemod
from .audit import FINDINGS

CHANGES_SCHEMA = "mmaudit-changes/1"
# Kinds of change, and whether each is one the change must answer for.
COUNTS = {"new": True, "verdict changed": True, "hazard appeared": True,
          "fixed": False, "removed": False, "hazard gone": False}


def scratch_copy(tree, scratch):
    """SCRATCH: TREE made of hard links, without its .git (git is never run
    in the copy, and nothing can reach the repository through it)."""
    os.makedirs(scratch)
    entries = [e for e in sorted(os.listdir(tree)) if e != ".git"]
    for k in range(0, len(entries), 500):
        subprocess.run(["cp", "-al", "--"] + [os.path.join(tree, e) for e in entries[k:k + 500]]
                       + [scratch], check=True)


def _replace(scratch, rel, data):
    """Give REL in SCRATCH the bytes DATA (None: remove it), never through
    a hard link into the tree."""
    applymod.check_name(scratch, "the change", rel)
    path = os.path.join(scratch, rel)
    if os.path.lexists(path):
        os.unlink(path)
    if data is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def _git(tree, args, what):
    out = gitsel.run_git(tree, args)
    if out is None:
        raise UsageError("%s: git %s failed" % (tree, what))
    return out


def revision_tree(tree, rev, scratch):
    """Make SCRATCH the C files of TREE as they are at REV; the files that
    differ from the work tree, relative to TREE."""
    if not gitsel.in_work_tree(tree):
        raise UsageError("%s: not in a git work tree; --base needs one" % tree)
    if rev.startswith("-") or gitsel.run_git(tree, ["rev-parse", "--verify", "--quiet",
                                                 rev + "^{commit}"]) is None:
        raise UsageError("%s: no such git revision in %s" % (rev, tree))
    # Plumbing: diff-index never refreshes (so never writes) the index; a
    # file it cannot vouch for by its stat data is listed, and copied from REV.
    status = _git(tree, ["diff-index", "--relative", "--name-status", "-z", "--no-renames", rev,
                         "--", "*.c", "*.h"], "diff").split(b"\0")[:-1]
    scratch_copy(tree, scratch)
    changed = []
    for code, name in zip(status[0::2], status[1::2]):
        rel = os.fsdecode(name)
        data = None if code == b"A" else _git(tree, ["cat-file", "blob", "%s:./%s" % (rev, rel)],
                                               "cat-file")
        _replace(scratch, rel, data)
        changed.append(rel)
    for name in _git(tree, ["ls-files", "-o", "-z"], "ls-files").split(b"\0")[:-1]:
        rel = os.fsdecode(name)
        if rel.endswith((".c", ".h")) and os.path.lexists(os.path.join(scratch, rel)):
            _replace(scratch, rel, None)        # untracked: not in REV
            changed.append(rel)
    return sorted(set(changed))


def split_series(paths, directory):
    """[(name, path of one patch)] of the mboxes or patch files PATHS, in
    order: an mbox of several messages becomes one patch each."""
    out = []
    for n, path in enumerate(paths, 1):
        if not os.path.isfile(path):
            raise UsageError("%s: no such patch file" % path)
        where = os.path.join(directory, "%04d" % n)
        os.makedirs(where)
        proc = subprocess.run(["git", "mailsplit", "-b", "-o" + where, path],
                              capture_output=True, text=True, errors="replace")
        if proc.returncode != 0:
            raise UsageError("%s: not a patch or mbox: %s" % (
                path, (proc.stderr.strip().splitlines() or ["git mailsplit failed"])[-1]))
        parts = sorted(os.listdir(where))
        for k, part in enumerate(parts, 1):
            name = os.path.basename(path) + (" (message %d of %d)" % (k, len(parts))
                                             if len(parts) > 1 else "")
            out.append((name, os.path.join(where, part)))
    return out


def series_tree(tree, patches, scratch, work):
    """Make SCRATCH the tree after the series PATCHES; the files it touches."""
    if not shutil.which("patch"):
        raise UsageError("patch(1) is missing; install it with: apt-get install patch")
    series = split_series(patches, os.path.join(work, "series"))
    if not series:
        raise UsageError("no patch in %s" % " ".join(patches))
    scratch_copy(tree, scratch)
    touched = []
    for name, path in series:
        with open(path, errors="surrogateescape") as f:
            text = f.read()
        rels = applymod.touched_files(text)
        if not rels:
            raise UsageError("%s: holds no diff" % name)
        for rel in rels:
            applymod.check_name(scratch, name, rel)
            applymod.unshare(scratch, rel)
        touched += rels
        named = os.path.join(os.path.dirname(path), name.replace("/", "_"))
        os.rename(path, named)      # patch(1)'s errors then name the patch
        applymod.apply_each([named], scratch)
    return sorted(set(touched))


HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", re.M)


def changed_lines(old_root, new_root, rels):
    """{file: set of lines of the new side that the change wrote}."""
    lines = {}
    for rel in rels:
        old, new = os.path.join(old_root, rel), os.path.join(new_root, rel)
        if not os.path.isfile(new):
            continue
        proc = subprocess.run(["diff", "-U0", "-a", old if os.path.isfile(old) else "/dev/null",
                               new], capture_output=True)
        text = proc.stdout.decode("latin-1")
        got = lines.setdefault(rel, set())
        for m in HUNK.finditer(text):
            start, count = int(m.group(1)), int(m.group(2) or 1)
            got.update(range(start, start + count) if count else (start,))
    return lines


def compare(before, after, written):
    """The changes between two audits: [change], each a dict with the kind
    of change, the site (new side, else old), the verdicts before and after,
    and the steps of its evidence on lines the change WROTE ({file: lines})."""
    changes = []
    for o, n in diffmod.match(before["sites"], after["sites"]):
        site = n or o
        was = o["verdict"] if o else None
        now = n["verdict"] if n else None
        kinds = []
        if o is None and (now != "pinned" or n["hazards"]):
            kinds.append("new" if now != "pinned" else None)
        elif n is None and was in FINDINGS + ("unanalyzed",):
            kinds.append("removed")
        elif o and n and was != now:
            kinds.append("fixed" if now == "pinned" else "verdict changed")
        old_h = {h["kind"] for h in (o["hazards"] if o else [])}
        new_h = {h["kind"] for h in (n["hazards"] if n else [])}
        hazards = [h for h in (n["hazards"] if n else []) if h["kind"] not in old_h]
        if hazards:
            kinds.append("hazard appeared")
        if n and old_h - new_h:
            kinds.append("hazard gone")
        for kind in filter(None, kinds):
            steps = site["evidence"] + [st for h in (hazards if kind == "hazard appeared"
                                                     else []) for st in h["evidence"]]
            because = [st for st in steps if st["line"] in written.get(st["file"], ())]
            if site["line"] in written.get(site["file"], ()) and n:
                because.insert(0, {"file": site["file"], "line": site["line"],
                                   "what": "the call itself"})
            changes.append(collections.OrderedDict([
                ("change", kind), ("counts", COUNTS[kind]),
                ("file", site["file"]), ("line", site["line"]), ("column", site["column"]),
                ("function", site["function"]), ("api", site["api"]), ("mm", site["mm"]),
                ("before", was), ("after", now),
                ("reason", site["reason"]),
                ("hazards", [h for h in hazards] if kind == "hazard appeared" else []),
                ("because", because), ("site", n or o)]))
    changes.sort(key=lambda c: (not c["counts"], c["file"], c["line"], c["change"]))
    return changes


def document(what, before, after, changes):
    return collections.OrderedDict([
        ("schema", CHANGES_SCHEMA),
        ("tool", {"name": "mmaudit", "version": VERSION, "spatch": after["tool"]["spatch"]}),
        ("change", what),
        ("before", {"tree": before["tree"], "stats": before["stats"],
                    "summary": before["summary"]}),
        ("after", {"tree": after["tree"], "stats": after["stats"], "summary": after["summary"]}),
        ("changes", changes),
    ])


def exit_status(doc):
    return 1 if any(c["counts"] for c in doc["changes"]) else 0


def to_text(doc):
    out = []
    for c in doc["changes"]:
        call = "%s(%s)" % (c["api"], c["mm"]) if c["mm"] else c["api"] + "()"
        if c["change"] == "new":
            state = "new %s site" % c["after"]
        elif c["change"] in ("verdict changed", "fixed"):
            state = "%s -> %s" % (c["before"], c["after"])
        elif c["change"] == "removed":
            state = "%s site removed" % c["before"]
        elif c["change"] == "hazard appeared":
            state = "hazard %s appeared" % ", ".join(h["kind"] for h in c["hazards"])
        else:
            state = c["change"]
        because = "; because of %s" % ", ".join(
            "%s:%d" % (b["file"], b["line"]) for b in c["because"]) if c["because"] else ""
        reason = c["hazards"][0]["reason"] if c["hazards"] else c["reason"]
        out.append(report.printable("%s:%d:%d: %s: %s%s: %s%s" % (
            c["file"], c["line"], c["column"] + 1, state, call,
            " in %s()" % c["function"] if c["function"] else "", reason, because)))
    if not out:
        out.append("no new or changed finding")
    return "\n".join(out) + "\n"


def to_sarif(doc, after):
    """SARIF of the changes that count: a site's verdict when the verdict
    is new or changed, and each hazard that appeared."""
    results, seen = [], {}
    index = {v: i for i, v in enumerate(report.RULES)}
    hazard_index = {k: len(report.RULES) + i for i, k in enumerate(report.HAZARDS)}
    for c in doc["changes"]:
        if not c["counts"]:
            continue
        s = c["site"]
        if c["change"] == "hazard appeared":
            results += [report.hazard_result(s, h, hazard_index) for h in c["hazards"]]
        elif id(s) not in seen:
            seen[id(s)] = True
            results += report.site_results(dict(s, hazards=[]), index, hazard_index)
    sarif = json.loads(report.to_sarif(dict(after, sites=[])))
    sarif["runs"][0]["results"] = results
    return json.dumps(sarif, indent=2) + "\n"


def to_markdown(doc):
    out = ["# mmaudit: %s" % report.md_text(doc["change"]), ""]
    counted = [c for c in doc["changes"] if c["counts"]]
    out += ["%d change%s to answer for, %d other." % (
        len(counted), "" if len(counted) == 1 else "s", len(doc["changes"]) - len(counted)), ""]
    for line in to_text(doc).splitlines():
        out.append("- " + report.md_text(line))
    return "\n".join(out) + "\n"


def texts(doc, after):
    return {"changes.json": report.to_json(doc), "changes.sarif": to_sarif(doc, after),
            "CHANGES.md": to_markdown(doc)}


def _audit_both(tree, scratch, differ, tree_side, audit, select):
    """(before, after, lines written) of TREE and SCRATCH, a copy of it in
    which the files DIFFER differ; TREE_SIDE: "before" or "after".  The copy
    is searched with the tree's git record, so only those files are read."""
    here = select(tree)
    there = here.elsewhere(scratch, differ) if isinstance(here, gitsel.GitSelection) else None
    other = "before" if tree_side == "after" else "after"
    sides = {tree_side: audit(tree, tree_side, here), other: audit(scratch, other, there)}
    old, new = (scratch, tree) if tree_side == "after" else (tree, scratch)
    return sides["before"], sides["after"], changed_lines(old, new, differ)


def run_base(path, rev, audit, select):
    """Compare REV with the work tree at PATH. AUDIT(tree, side, selection)
    -> findings; SELECT(tree) -> how the files of TREE are found."""
    tree = os.path.realpath(path or ".")
    if not os.path.isdir(tree):
        raise UsageError("%s: %s; --base needs a directory in a git work tree" % (
            path, "not a directory" if os.path.exists(tree) else "no such directory"))
    with tempfile.TemporaryDirectory(prefix="mmaudit-base-") as tmp:
        scratch = os.path.join(tmp, "tree")
        changed = revision_tree(tree, rev, scratch)
        before, after, written = _audit_both(tree, scratch, changed, "after", audit, select)
    before["tree"] = dict(before["tree"], source="%s at %s" % (after["tree"]["source"], rev))
    return document("the work tree against %s" % rev, before, after,
                    compare(before, after, written)), after


def run_check(path, patches, audit, select):
    """Compare the tree at PATH (a tree or tarball) with the tree after
    PATCHES; AUDIT and SELECT as for run_base."""
    path, _ = treemod.resolve(path)
    names = ", ".join(os.path.basename(p) for p in patches)
    with tempfile.TemporaryDirectory(prefix="mmaudit-check-") as tmp:
        scratch = os.path.join(tmp, "tree")
        touched = series_tree(path, patches, scratch, tmp)
        before, after, written = _audit_both(path, scratch, touched, "before", audit, select)
    after["tree"] = dict(after["tree"], source="%s with %s" % (before["tree"]["source"], names))
    return document("the series %s" % names, before, after,
                    compare(before, after, written)), after
