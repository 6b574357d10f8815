"""Fix patches for grab-only and unreferenced findings.

cocci/fix_use_mm.cocci does the rewrite; this module decides its parameters
from the audit's evidence, lays the result out in kernel style and writes
one git format-patch mbox per finding."""

import collections
import datetime
import difflib
import os
import re
import subprocess
import tempfile

from . import VERSION, UsageError, spatch
from .verify import passed

FIX_RULE = os.path.join(spatch.COCCI_DIR, "fix_use_mm.cocci")
COPY_FUNCS = r"(?:__)?(?:copy_to_user|copy_from_user|copy_to_iter|copy_from_iter)"

# Subject prefixes, by path; checked against MAINTAINERS by the tests.
PREFIXES = [
    ("arch/powerpc/platforms/book3s/vas-api.c", "powerpc/vas"),
    ("arch/x86/kvm/", "KVM: x86/xen" ),
    ("drivers/dma/idxd/", "dmaengine: idxd"),
    ("drivers/usb/gadget/legacy/", "usb: gadget: legacy"),
    ("drivers/usb/gadget/function/", "usb: gadget: f_fs"),
    ("drivers/vhost/", "vhost"),
    ("fs/bcachefs/", "bcachefs"),
    ("drivers/vfio/", "vfio"),
]
ARCHES = "alpha, ia64, mips, powerpc, sh and sparc"


def subject_prefix(path):
    for prefix, subject in PREFIXES:
        if path.startswith(prefix):
            return subject
    parts = path.split("/")
    return ": ".join(parts[:-1][-2:]) or parts[0]


class NoFix(Exception):
    """A finding that gets no patch; the message says why."""


def _read(tree, rel):
    with open(os.path.join(tree, rel), encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def _function_text(text, fn):
    m = re.search(r"^[^\n;{}]*\b%s\s*\([^;{]*\)\s*\{" % re.escape(fn), text, re.M)
    if not m:
        return None, 0
    depth, i = 0, m.end() - 1
    while i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            break
        i += 1
    return text[m.start():i + 1], text.count("\n", 0, m.start()) + 1


def same_block(lines, first, last):
    """Do lines FIRST and LAST sit in one block, not as one-line if branches?"""
    previous = _previous_line(lines, first)
    if previous.endswith(")") or previous.startswith("else"):
        return False
    depth = 0
    for line in lines[first:last + 1]:
        for ch in line:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if depth < 0:
                return False
    return depth == 0


def _previous_line(lines, at):
    return next((l.strip() for l in reversed(lines[:at]) if l.strip()), "")


def _caller_failure(text, fn):
    """How the caller of a void FN finishes the object when it has an error:
    "if (... || X->...error) DONE(X); else FN(X);".  {caller, done, object,
    error} or None."""
    m = re.search(r"\bif \((?P<cond>[^;{}]*)\)\s*\n\s*(?P<done>\w+)\((?P<x>\w+)\);\s*\n"
                  r"\s*else\s*\n\s*%s\((?P=x)\);" % re.escape(fn), text)
    if not m:
        return None
    err = re.search(r"\|\|\s*(%s(?:->|\.)[\w.>-]*err\w*)\s*$" % m.group("x"), m.group("cond"))
    if not err:
        return None
    callers = [name for name, body in _split_functions(text).items() if m.group(0) in body]
    return {"caller": callers[0] if callers else "its caller", "done": m.group("done"),
            "object": m.group("x"), "error": err.group(1)}


def plan(tree, site):
    """The parameters of the rewrite for one finding, or NoFix."""
    if site["verdict"] not in ("grab-only", "unreferenced"):
        raise NoFix("%s: no patch for a %s verdict; %s" % (site["file"], site["verdict"],
                                                         site["reason"]))
    if site["api"] != "kthread_use_mm":
        raise NoFix("use_mm() belongs to kernels before 5.8; no patch is generated for it")
    text = _read(tree, site["file"])
    body, first = _function_text(text, site["function"])
    if body is None:
        raise NoFix("cannot find the body of %s()" % site["function"])
    lines = body.split("\n")
    borrow_at = site["line"] - first
    indent = re.match(r"\s*", lines[borrow_at]).group(0)
    unuse = [i for i in range(borrow_at + 1, len(lines))
             if lines[i].startswith(indent + "kthread_unuse_mm(")]
    # "if (mm) kthread_use_mm(mm);": the code expects no mm at all at times
    # (a kernel thread stored current->mm), so the reference taken at the
    # store must be conditional too.
    nullable = bool(re.fullmatch(r"if \(\s*%s\s*\)" % re.escape(site["mm"]),
                                 _previous_line(lines, borrow_at)))
    if unuse and not same_block(lines, borrow_at, unuse[0]):
        unuse = []
    files = {site["file"]: ["-D", "fn=" + site["function"]]}
    p = {"site": site, "files": files, "notes": [], "nullable": nullable}
    failing = _caller_failure(text, site["function"]) if nullable and unuse == [] else None
    if failing:
        files[site["file"]] += ["-D", "fail", "-D", "donefn=" + failing["done"]]
        p["mode"] = "fail"
        p.update(failing)
    elif unuse:
        region = "\n".join(lines[borrow_at:unuse[0] + 1])
        files[site["file"]] += ["-D", "wrap"]
        p["mode"] = "wrap"
        # The local that receives the copy's result starts at -EFAULT when
        # nothing gives it a value before the borrow (skipping the copy
        # must not leave it uninitialised).
        m = re.search(r"\b(\w+)\s*=\s*%s\s*\(" % COPY_FUNCS, region)
        if m:
            var = m.group(1)
            local = re.search(r"^\s*[\w\s\*]+(?:,[\w\s\*]+)*\b%s\s*[;,]" % var, body, re.M)
            if local and not re.search(r"\b%s\s*=[^=]" % var, "\n".join(lines[:borrow_at])):
                files[site["file"]] += ["-D", "set_err", "-D", "errvar=" + var]
                p["errvar"] = var
    else:
        before = "\n".join(lines[:borrow_at])
        if not re.match(r"(static\s+)?(inline\s+)?(int|long|ssize_t)\s", body):
            raise NoFix("the borrow and kthread_unuse_mm() are in different blocks and "
                        "%s() cannot return an error; needs a human" % site["function"])
        if re.search(r"\b\w*lock\w*\s*\(", before):
            raise NoFix("a lock may be held before the borrow in %s(); an early return "
                        "would leak it; needs a human" % site["function"])
        files[site["file"]] += ["-D", "early"]
        p["mode"] = "early"
    if site["verdict"] == "unreferenced":
        stores = [e["store"] for e in site["evidence"]
                  if e.get("store") and e["store"]["class"] == "bare"]
        if not stores or not stores[0]["type"] or "{" in stores[0]["type"]:
            raise NoFix("the owning struct has no tag to find where it is freed; needs a human")
        tag, field = stores[0]["type"].split()[-1], stores[0]["field"]
        # mmdrop() must tolerate an owner freed before the store ran: a
        # store in one branch of an if, or an error path of the storing
        # function that frees the owner before the store (the audit's facts).
        guarded = nullable or any(s["guard"] or s.get("freed_before") for s in stores)
        by_file = {}
        for e in site["evidence"]:
            if e.get("store") and e["store"]["class"] == "bare":
                by_file.setdefault(e["file"], set()).add(e["store"]["function"])
        for rel, functions in sorted(by_file.items()):
            files.setdefault(rel, [])
            files[rel] += ["-D", "grab", "-D", "storefn=" + sorted(functions)[0]]
        for rel in files:
            files[rel] += ["-D", "drop", "-D", "tag=" + tag, "-D", "fld=" + field]
            files[rel] += ["-D", "guarded"] if guarded else []
            files[rel] += ["-D", "nullable"] if nullable else []
            if not any(a.startswith("storefn=") for a in files[rel]):
                files[rel] += ["-D", "storefn=" + stores[0]["function"]]
        p.update(tag=tag, field=field, guarded=guarded)
    return p


def rewrite(tree, p):
    """{path: (old text, new text)} for one plan."""
    changes = {}
    for rel, defines in sorted(p["files"].items()):
        with tempfile.TemporaryDirectory(prefix="mmaudit-") as tmp:
            out = os.path.join(tmp, "out.c")
            cmd = spatch.base_command(FIX_RULE) + defines + ["-o", out, os.path.join(tree, rel)]
            # In a scratch directory: with -D values spatch writes there.
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                                  env=dict(os.environ, TMPDIR=tmp))
            if proc.returncode != 0:
                raise NoFix("spatch could not rewrite %s: %s" % (rel, proc.stderr.strip()[-200:]))
            if not os.path.exists(out):
                continue
            with open(out, encoding="utf-8", errors="surrogateescape") as f:
                new = f.read()
        old = _read(tree, rel)
        if new != old:
            changes[rel] = (old, layout(old, new, p, rel))
    site = p["site"]
    if site["file"] not in changes or site["function"] not in _functions_with(
            {site["file"]: changes[site["file"]]}, "mmget_not_zero("):
        raise NoFix("the rewrite did not apply to %s()" % site["function"])
    if site["verdict"] == "unreferenced":
        drops = sum(n.count("mmdrop(") - o.count("mmdrop(") for o, n in changes.values())
        grabs = sum(n.count("mmgrab(") - o.count("mmgrab(") for o, n in changes.values())
        if not drops or not grabs:
            raise NoFix("no place where struct %s is freed with kfree() or bio_put() was found, so the "
                        "mmgrab() it needs cannot be balanced; needs a human" % p["tag"])
    return changes


def layout(old, new, p, rel):
    """Kernel layout for what spatch printed: a trailing comment stays on
    the store line, not on the mmgrab() spatch adds after it; the wrapped
    region is the original text, one tab deeper (spatch re-indents only
    what it touched)."""
    new = re.sub(r"^(\t+)(.*\S;)\n\1(mmgrab\(.*\);) (/\*.*\*/)$", r"\1\2 \4\n\1\3", new,
                 flags=re.M)
    if p.get("mode") != "wrap" or rel != p["site"]["file"]:
        return new
    old_lines, new_lines = old.split("\n"), new.split("\n")
    start = p["site"]["line"] - 1
    indent = re.match(r"\s*", old_lines[start]).group(0)
    end = next(i for i in range(start, len(old_lines))
               if old_lines[i].startswith(indent + "kthread_unuse_mm("))
    region = [("\t" + l) if l.strip() else l for l in old_lines[start:end + 1]]
    head = next(i for i in range(len(new_lines))
                if new_lines[i].startswith(indent + "if (mmget_not_zero(") and i >= start - 2)
    tail = next(i for i in range(head, len(new_lines))
                if new_lines[i].strip().startswith("mmput("))
    return "\n".join(new_lines[:head + 1] + region + new_lines[tail:])


def unified_diff(changes):
    chunks = []
    with tempfile.TemporaryDirectory(prefix="mmaudit-") as tmp:
        for rel, (old, new) in sorted(changes.items()):
            a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
            for path, text in ((a, old), (b, new)):
                with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                    f.write(text)
            proc = subprocess.run(["diff", "-u", "-p", "--label", "a/" + rel, "--label",
                                   "b/" + rel, a, b], capture_output=True, text=True)
            chunks.append("diff --git a/%s b/%s\n%s" % (rel, rel, proc.stdout))
    return "".join(chunks)


def diffstat(diff):
    proc = subprocess.run(["git", "apply", "--stat", "-"], input=diff, capture_output=True,
                          text=True)
    return proc.stdout


def identity(signoff):
    if signoff:
        return signoff
    get = lambda key: subprocess.run(["git", "config", key], capture_output=True,  # noqa: E731
                                     text=True).stdout.strip()
    name, email = get("user.name"), get("user.email")
    if not name or not email:
        raise UsageError("no author for the patches: pass --signoff 'Name <email>' "
                         "or set git config user.name and user.email")
    return "%s <%s>" % (name, email)


def maintainers(tree, rels):
    script = os.path.join(tree, "scripts", "get_maintainer.pl")
    if not os.path.exists(script):
        return []
    proc = subprocess.run(["perl", script, "--no-rolestats", "--no-git", "--no-git-fallback",
                           "--no-tree", "-f"] + sorted(rels), cwd=tree, capture_output=True,
                          text=True)
    return [l.strip() for l in proc.stdout.splitlines() if "@" in l]


def message(tree, data, p, changes, author):
    site = p["site"]
    mm, fn = site["mm"], site["function"]
    stores = [e for e in site["evidence"] if e.get("store")]
    summary = ("take an mm_users reference around kthread_use_mm()"
               if site["verdict"] == "grab-only" else
               "pin the mm borrowed by kthread_use_mm()")
    subject = "[PATCH] %s: %s" % (subject_prefix(site["file"]), summary)
    held = ("only an mm_count reference (mmgrab())" if site["verdict"] == "grab-only"
            else "no reference at all")
    para = ["%s() borrows %s with kthread_use_mm(), but the object that owns it holds %s:"
            % (fn, mm, held), ""]
    para += ["  %s:%d %s" % (e["file"], e["line"], e["what"].split(" — ")[0]) for e in stores]
    para += ["",
             "kthread_use_mm() takes no mm_users reference of its own. %s skip remote TLB "
             "flushes when mm_users is 1, and an mm whose users are gone can be torn down "
             "under the borrower. The caller relies on serialization in __mmput() instead." % ARCHES,
             ""]
    if site["verdict"] == "unreferenced":
        drops = sorted({"%s()" % f for f in _functions_with(changes, "mmdrop(")})
        para += ["Take mm_count with mmgrab() where the mm is stored%s and drop it with "
                 "mmdrop() where the %s is freed (%s), so that the mm_struct stays valid; then "
                 % (" (only when there is one: %s() allows for a task without an mm)" % fn
                    if p["nullable"] else "", "struct " + p["tag"], ", ".join(drops))]
    else:
        para += ["Therefore "]
    if p["mode"] == "wrap":
        para[-1] += ("borrow the mm only under mmget_not_zero() and mmput() it after "
                     "kthread_unuse_mm(); when the address space is "
                     "already gone, skip the copy%s." % (
                         " and leave %s at -EFAULT" % p["errvar"] if p.get("errvar") else ""))
    elif p["mode"] == "fail":
        para[-1] += ("take mm_users with mmget_not_zero() before the borrow and mmput() it "
                     "after kthread_unuse_mm(). When the address space is already gone, fail "
                     "the request as %s() does when it has an error: set %s to -EFAULT "
                     "and call %s()." % (p["caller"], p["error"], p["done"]))
    else:
        para[-1] += ("take mm_users with mmget_not_zero() before the borrow, returning "
                     "-EFAULT when the address space is already gone, and mmput() it after "
                     "kthread_unuse_mm().")
    para += ["", "Found by mmaudit %s, whole-tree audit (%s verdict), on Linux %s." % (
        VERSION, site["verdict"], data["tree"]["version"] or data["tree"]["source"])]
    body = "\n".join(wrap(p_) if not p_.startswith("  ") else p_ for p_ in para)
    diff = unified_diff(changes)
    cc = maintainers(tree, changes)
    date = datetime.datetime.fromtimestamp(
        int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or datetime.datetime.now().timestamp(),
        datetime.timezone.utc)
    head = ["From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001",
            "From: %s" % author,
            "Date: %s" % date.strftime("%a, %d %b %Y %H:%M:%S +0000"),
            "Subject: %s" % subject, ""]
    trailer = ["", "Signed-off-by: %s" % author] + ["Cc: %s" % c for c in cc]
    return "\n".join(head + [body] + trailer + ["---", diffstat(diff).rstrip("\n"), "", diff.rstrip("\n"),
                                                "-- ", "mmaudit %s" % VERSION, ""])


def _functions_with(changes, needle):
    """Functions in which the rewrite added NEEDLE."""
    found = set()
    for old, new in changes.values():
        before = _split_functions(old)
        for fn, text in _split_functions(new).items():
            if text.count(needle) > before.get(fn, "").count(needle):
                found.add(fn)
    return found


def _split_functions(text):
    """{function name: its text}, for definitions that start in column 0."""
    out, current, buf = {}, None, []
    for line in text.split("\n"):
        m = re.match(r"^[A-Za-z_][\w \t\*]*?\b(\w+)\s*\(", line)
        if m and not line.rstrip().endswith(";"):
            if current:
                out[current] = "\n".join(buf)
            current, buf = m.group(1), []
        buf.append(line)
    if current:
        out[current] = "\n".join(buf)
    return out


def wrap(text, width=72):
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = (line + " " + w) if line else w
    return "\n".join(lines + [line])


def generate(tree, data, signoff=None):
    """[(site, patch text or None, why-not, {path: (old, new)})] for every finding."""
    author = identity(signoff)
    out = []
    for site in data["sites"]:
        if site["verdict"] not in ("grab-only", "unreferenced", "review"):
            continue
        try:
            p = plan(tree, site)
            changes = rewrite(tree, p)
            out.append((site, message(tree, data, p, changes, author), None, changes))
        except NoFix as why:
            out.append((site, None, str(why), {}))
    return out


def patch_name(n, site):
    name = "%s-%s" % (site["file"].rsplit("/", 1)[-1][:-2], site["function"])
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower())
    return "%04d-%s.patch" % (n, slug.strip("-"))


MM_REF = re.compile(r"\b(mmgrab|mmdrop|mmget_not_zero|mmget|mmput|kthread_use_mm|kthread_unuse_mm)\(")


def upstream_hunks(old, new, rel):
    """The hunks of the OLD -> NEW change of REL that touch mm references."""
    diff = unified_diff({rel: (old, new)})
    head, _, body = diff.partition("\n@@")
    hunks = ["@@" + h for h in body.split("\n@@") if h] if body else []
    keep = [h for h in hunks if any(MM_REF.search(l) for l in h.split("\n")
                                    if l.startswith(("+", "-")))]
    return "\n".join(head.split("\n")[:3] + keep) if keep else ""


def compare_with_upstream(old, ours, theirs):
    """Where our patch and the upstream change add mm references."""
    lines = []
    for needle in ("mmgrab(", "mmget_not_zero(", "mmput(", "mmdrop("):
        a = sorted(_functions_with({"f": (old, ours)}, needle))
        b = sorted(_functions_with({"f": (old, theirs)}, needle))
        if a == b:
            lines.append("- `%s)` in %s: same as upstream." % (needle, ", ".join("%s()" % f for f in a) or "no function"))
        else:
            lines.append("- `%s)`: ours in %s; upstream in %s." % (
                needle, ", ".join("%s()" % f for f in a) or "none",
                ", ".join("%s()" % f for f in b) or "none"))
    # Within the functions: the added lines that only one side has.
    added = lambda new: collections.Counter(  # noqa: E731
        l[2:].strip() for l in difflib.ndiff(old.split("\n"), new.split("\n"))
        if l.startswith("+ ") and MM_REF.search(l) or l.startswith("+ ") and "EFAULT" in l)
    ours_only, theirs_only = added(ours) - added(theirs), added(theirs) - added(ours)
    placed = []
    for fn in sorted(set(_split_functions(ours)) & set(_split_functions(theirs))):
        a = [l.strip() for l in _split_functions(ours)[fn].split("\n") if MM_REF.search(l)]
        b = [l.strip() for l in _split_functions(theirs)[fn].split("\n") if MM_REF.search(l)]
        if a != b and sorted(a) == sorted(b):
            placed.append(fn)
    if placed:
        lines.append("- The same calls sit in a different order or place in %s(): compare the diffs."
                     % "(), ".join(placed))
    for label, extra in (("only in the generated patch", ours_only), ("only upstream", theirs_only)):
        if extra:
            lines.append("- Added lines %s: %s." % (label, ", ".join("`%s`" % l for l in sorted(extra))))
    return "\n".join(lines)


def summary_markdown(data, generated, written, results, tree, upstream=None):
    """fixes/README.md, and the per-finding sections for REPORT.md."""
    version = data["tree"]["version"] or data["tree"]["source"]
    by_site = {(s["file"], s["line"]): os.path.basename(p) for s, p in written}
    verified = {r["site"]: r for r in results}
    out = ["# Fix patches for Linux %s" % version, "",
           "| finding | verdict | patch | verification |", "|---|---|---|---|"]
    per_site = {}
    for site, text, why, changes in generated:
        key = (site["file"], site["line"])
        r = verified.get("%s:%d" % key)
        check = "-"
        if r:
            builds = "; ".join("%s %s" % (b.get("how") or "", "ok" if b.get("ok") else
                                           ("FAILED" if b.get("ok") is False else "not built"))
                               for b in r["build"].values())
            check = "%s (applies %s, refused twice %s, checkpatch %d/%d/%d, %s, re-audit %s)" % (
                "passed" if passed(r) else "FAILED", r["applies"], r["refused_twice"],
                r["checkpatch"]["errors"], r["checkpatch"]["warnings"], r["checkpatch"]["checks"],
                builds, r["reaudit"])
        out.append("| `%s:%d` %s() | %s | %s | %s |" % (
            site["file"], site["line"], site["function"], site["verdict"],
            "[%s](%s)" % (by_site[key], by_site[key]) if text else "none: " + why, check))
        sec = ["### Fix", ""]
        if text:
            diff = text.split("\n---\n", 1)[1].split("\n-- \n")[0]
            sec += ["`fixes/%s`:" % by_site[key], "", "```diff", diff.split("\n\n", 1)[1].rstrip(), "```"]
            if r and r["checkpatch"]["log"]:
                sec += ["", "checkpatch.pl --strict:", "", "```", r["checkpatch"]["log"], "```"]
        else:
            sec += ["No patch: %s." % why.rstrip(".")]
        if text and upstream:
            up_version, up_tree = upstream
            old, ours = changes[site["file"]]
            up_path = os.path.join(up_tree, site["file"])
            hunks = upstream_hunks(old, _read(up_tree, site["file"]), site["file"]) \
                if os.path.exists(up_path) else ""
            if hunks:
                sec += ["", "Upstream change of this file, Linux %s → %s (mm-reference hunks only):"
                        % (version, up_version), "", "```diff", hunks, "```", "",
                        "Where the generated patch and upstream differ:", "",
                        compare_with_upstream(old, ours, _read(up_tree, site["file"]))]
        per_site[key] = "\n".join(sec)
    return "\n".join(out) + "\n", per_site
