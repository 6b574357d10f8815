"""Fix patches for grab-only and unreferenced findings.

cocci/fix_use_mm.cocci does the rewrite; this module decides its parameters
from the audit's evidence, lays the result out in kernel style and writes
one git format-patch mbox per finding."""

import collections
import difflib
import os
import re
import subprocess
import tempfile

from . import balance, context, spatch
from .message import (TreeLookups, functions_with as _functions_with, identity, message,
                      split_functions as _split_functions, unified_diff)
from .verify import status as verify_status

FIX_RULE = os.path.join(spatch.COCCI_DIR, "fix_use_mm.cocci")
COPY_FUNCS = r"(?:__)?(?:copy_to_user|copy_from_user|copy_to_iter|copy_from_iter)"

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


def plan(tree, site, borrow_ctx=None):
    """The parameters of the rewrite for one finding, or NoFix.  BORROW_CTX:
    what context.borrow_context() found around the borrow, if known."""
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
    if unuse:
        inner = re.search(r"\b(return|goto\s+\w+|break|continue|kthread_unuse_mm)\b",
                          "\n".join(lines[borrow_at + 1:unuse[0]]))
        if inner:
            raise NoFix("%s() can leave the borrowed region (%s) before its kthread_unuse_mm(); "
                        "each exit would need its own put; needs a human"
                        % (site["function"], inner.group(1)))
    put, put_why, after_unlock = _put(borrow_ctx, lines, borrow_at, unuse, first)
    borrow_args = ["-D", "fn=" + site["function"], "-D", "putfn=" + put]
    files = {site["file"]: [borrow_args]}
    p = {"site": site, "files": files, "notes": [], "nullable": nullable, "put": put,
         "put_why": put_why, "context": borrow_ctx}
    failing = _caller_failure(text, site["function"]) if nullable and unuse == [] else None
    exit_label = _exit_label(lines, borrow_at, unuse[0]) if unuse else None
    if failing:
        borrow_args += ["-D", "fail", "-D", "donefn=" + failing["done"]]
        p["mode"] = "fail"
        p.update(failing)
    elif unuse and (unuse[0] - borrow_at <= WRAP_MAX_LINES or not exit_label):
        region = "\n".join(lines[borrow_at:unuse[0] + 1])
        borrow_args += ["-D", "wrap"]
        p["mode"] = "wrap"
        # The local that receives the copy's result starts at -EFAULT when
        # nothing gives it a value before the borrow (skipping the copy
        # must not leave it uninitialised).
        m = re.search(r"\b(\w+)\s*=\s*%s\s*\(" % COPY_FUNCS, region)
        if m:
            var = m.group(1)
            local = re.search(r"^\s*[\w\s\*]+(?:,[\w\s\*]+)*\b%s\s*[;,]" % var, body, re.M)
            if local and not re.search(r"\b%s\s*=[^=]" % var, "\n".join(lines[:borrow_at])):
                borrow_args += ["-D", "set_err", "-D", "errvar=" + var]
                p["errvar"] = var
    elif unuse:
        # A long region: leave through the exit label the function already
        # uses, setting the error the other exits set, instead of
        # re-indenting the region.
        label, errvar = exit_label
        borrow_args += ["-D", "label", "-D", "exitlabel=" + label]
        if errvar:
            borrow_args += ["-D", "set_err", "-D", "errvar=" + errvar]
            p["errvar"] = errvar
        p["mode"] = "label"
        p["label"] = label
    else:
        before = "\n".join(lines[:borrow_at])
        if not re.match(r"(static\s+)?(inline\s+)?(int|long|ssize_t)\s", body):
            raise NoFix("the borrow and kthread_unuse_mm() are in different blocks and "
                        "%s() cannot return an error; needs a human" % site["function"])
        if re.search(r"\b\w*lock\w*\s*\(", before):
            raise NoFix("a lock may be held before the borrow in %s(); an early return "
                        "would leak it; needs a human" % site["function"])
        borrow_args += ["-D", "early"]
        p["mode"] = "early"
    if after_unlock and p["mode"] in ("early", "label"):
        borrow_args += ["-D", "afterunlock"]
        p["put_after_unlock"] = after_unlock
    elif after_unlock:      # a wrapped put cannot move past the unlock
        borrow_args[borrow_args.index("putfn=mmput")] = "putfn=mmput_async"
        p["put"] = "mmput_async"
        p["put_why"] = ("the unborrow runs under %s, and mmput_async() keeps a final teardown "
                        "from running under it" % after_unlock)
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
                by_file.setdefault(e["file"], {})[e["store"]["function"]] = e
        owner = ["-D", "tag=" + tag, "-D", "fld=" + field] + (["-D", "nullable"] if nullable else [])
        # Every storing function takes its own mmgrab(), each in its own run
        # over the file as the previous run left it.
        for rel, functions in sorted(by_file.items()):
            files.setdefault(rel, [])
            for fn, e in sorted(functions.items()):
                flag = heap_flag(tree, rel, fn, e["what"].split(" — ")[0], field)
                files[rel].append(["-D", "grab", "-D", "storefn=" + fn] + owner
                                  + (["-D", "heap", "-D", "heapfld=" + flag] if flag else []))
                if flag:
                    p["notes"].append("%s() can store into an object on the stack; it grabs "
                                      "only when %s is set" % (fn, flag))
        storefns = sorted({fn for functions in by_file.values() for fn in functions})
        for rel in files:
            # calls_store: the functions that call a storing one free the
            # owner before the store; name one that this file has, if any.
            here = sorted(by_file.get(rel, {})) or storefns
            files[rel].append(["-D", "drop", "-D", "storefn=" + here[0]] + owner
                              + (["-D", "guarded"] if guarded else []))
        p.update(tag=tag, field=field, guarded=guarded, storing_functions=storefns)
    return p


WRAP_MAX_LINES = 6


def _put(borrow_ctx, lines, borrow_at, unuse, first):
    """(put function, why, the unlock call the put must follow or None),
    from what context.borrow_context() found; NoFix when it cannot tell."""
    if borrow_ctx is None:
        return "mmput", None, None
    put, why = borrow_ctx.get("put"), borrow_ctx.get("why")
    if put not in ("mmput", "mmput_async"):
        raise NoFix("%s; needs a human" % (why or "the context of the borrow could not be judged"))
    if put == "mmput_async":
        return put, why, None
    after = borrow_ctx.get("put_after_line")
    if not unuse or not after or after - first == unuse[0]:
        return "mmput", None, None
    # A sleeping lock is released after the unborrow.  The put can follow
    # the unlock only when the unlock is the next statement and nothing
    # else reaches it; otherwise mmput_async() keeps the teardown from
    # running under the lock.
    held = [s for s in borrow_ctx.get("sleeping_lock", []) if after in (s.get("unlock_lines") or [])]
    lock = held[0]["what"] if held else "a lock"
    following = next((i for i in range(unuse[0] + 1, len(lines)) if lines[i].strip()), None)
    straight = following is not None and following + first == after and held \
        and not any(s.get("released_without_borrow") for s in held)
    if straight:
        return "mmput", "the unborrow runs under %s; the put comes after the unlock" % lock, lock
    return "mmput_async", ("the unborrow runs under %s, which other paths also release, and "
                           "mmput_async() keeps a final teardown from running under it" % lock), None


def _exit_label(lines, borrow_at, unuse_at):
    """(label, error variable or None) when the function already leaves
    through a label that comes after the unborrow, with no label or other
    exit between the borrow and the unborrow; else None."""
    region = "\n".join(lines[borrow_at:unuse_at + 1])
    if re.search(r"^\s*\w+:(?!:)|\breturn\b|\bgoto\b|\bbreak\b|\bcontinue\b", region, re.M):
        return None
    after = "\n".join(lines[unuse_at + 1:])
    for m in re.finditer(r"\bgoto\s+(\w+)\s*;", "\n".join(lines[:borrow_at])):
        label = m.group(1)
        if not re.search(r"^%s:" % re.escape(label), after, re.M):
            continue
        # The error the other exits to this label set just before the goto.
        sets = re.findall(r"(\w+)\s*=\s*-E[A-Z]+\s*;\s*\n\s*goto\s+%s\s*;" % re.escape(label),
                          "\n".join(lines[:borrow_at]))
        gotos = len(re.findall(r"\bgoto\s+%s\s*;" % re.escape(label), "\n".join(lines[:borrow_at])))
        errvar = sets[0] if sets and len(sets) == gotos and len(set(sets)) == 1 else None
        return label, errvar
    return None


def heap_flag(tree, rel, fn, store_code, field):
    """The object a store writes may live on the stack (a pointer set to
    &local, or a struct local itself): the field that the storing function
    sets true for the heap object and false for the stack one, so that the
    grab is taken only for the heap object.  None when the object is always
    on the heap; NoFix when the code does not tell them apart."""
    m = re.match(r"\s*(\w+)\s*(->|\.)\s*%s\s*=" % re.escape(field), store_code)
    if not m:
        return None
    base, arrow = m.groups()
    body, _ = _function_text(_read(tree, rel), fn)
    if body is None:
        return None
    on_stack = arrow == "." and re.search(r"^\s*struct\s+\w+\s+%s\s*[;=]" % base, body, re.M)
    points_to_local = re.search(r"\b%s\s*=\s*&\s*\w+\s*[;,]" % re.escape(base), body)
    if not (on_stack or points_to_local):
        return None
    if arrow == ".":
        raise NoFix("%s() stores the mm into a struct on its own stack; needs a human" % fn)
    for flag in re.findall(r"\b%s->(\w+)\s*=\s*true\s*;" % re.escape(base), body):
        if re.search(r"\b%s->%s\s*=\s*false\s*;" % (re.escape(base), flag), body):
            return flag
    raise NoFix("%s() can store the mm into an object on its stack (%s = &...) and no "
                "field tells it from the heap object; needs a human" % (fn, base))


def rewrite(tree, p):
    """{path: (old text, new text)} for one plan."""
    changes = {}
    for rel, runs in sorted(p["files"].items()):
        old = new = _read(tree, rel)
        for defines in runs:
            new = _spatch_rewrite(new, rel, defines)
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
            raise NoFix("no place where struct %s is freed with kfree(), kvfree() or bio_put() was found, so the "
                        "mmgrab() it needs cannot be balanced; needs a human" % p["tag"])
    return changes


def refuse_unbalanced(changes):
    """NoFix when the balance check finds a reference the patched code
    does not balance, or cannot finish (no patch is better than one that
    adds a leak, an underflow or a sleep in atomic context)."""
    for rel, (_, new) in sorted(changes.items()):
        if not rel.endswith(".c"):
            continue
        problems = balance.check_text(new, os.path.basename(rel))
        if problems:
            first = problems[0]
            raise NoFix("the balance check rejects the rewrite of %s: %s%s (%d problem%s); "
                        "needs a human" % (rel, "%s(): " % first["function"] if first["function"]
                                           else "", first["problem"].rstrip("."), len(problems),
                                           "s" if len(problems) > 1 else ""))


def _spatch_rewrite(text, rel, defines):
    """TEXT of REL after one run of the rewrite rule."""
    with tempfile.TemporaryDirectory(prefix="mmaudit-") as tmp:
        src = os.path.join(tmp, os.path.basename(rel))
        with open(src, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        out = os.path.join(tmp, "out.c")
        cmd = spatch.base_command(FIX_RULE) + defines + ["-o", out, src]
        # In a scratch directory: with -D values spatch writes there.
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                              env=dict(os.environ, TMPDIR=tmp))
        if proc.returncode != 0:
            raise NoFix("spatch could not rewrite %s: %s" % (rel, proc.stderr.strip()[-200:]))
        if not os.path.exists(out):
            return text
        with open(out, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()


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
                if new_lines[i].strip().startswith((p["put"] + "(", "mmput(")))
    return "\n".join(new_lines[:head + 1] + region + new_lines[tail:])


def generate(tree, data, signoff=None):
    """[(site, patch text or None, why-not, {path: (old, new)})] for every finding."""
    author = identity(signoff, tree)
    lookups = TreeLookups(tree)     # one search of the tree for all its messages
    out = []
    for site in data["sites"]:
        if site["verdict"] not in ("grab-only", "unreferenced", "review"):
            continue
        try:
            p = plan(tree, site, context.borrow_context(tree, site["file"], site["function"],
                                                        site["line"]))
            changes = rewrite(tree, p)
            refuse_unbalanced(changes)
            out.append((site, message(tree, data, p, changes, author, lookups=lookups), None,
                        changes))
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
            balanced = "balanced" if not r.get("balance") else \
                "UNBALANCED: " + "; ".join(r["balance"])
            check = "%s (applies %s, refused twice %s, %s, checkpatch %d/%d/%d, %s, re-audit %s)" % (
                verify_status(r), r["applies"], r["refused_twice"], balanced,
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
