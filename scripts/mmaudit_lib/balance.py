"""Balance check of a patched file: cocci/balance.cocci, run in two passes.

check_text(text) proves, function by function, that the mm references a
fix patch handles balance, and returns the problems it finds (an empty
list when it proves them).  check_patch(tree, patch) applies a patch to a
scratch copy of the files it touches and checks each patched C file.

Fail closed: a run that does not reach the rule's last fact ("done"), a
mmget_not_zero() whose branches the check cannot tell apart, and a call of
the reference API that spatch did not see (code it could not parse) are
problems too."""

import json
import os
import re
import signal
import subprocess
import tempfile
import time

from . import scan, spatch

RULE = os.path.join(spatch.COCCI_DIR, "balance.cocci")
NOT_FINISHED = "the balance check did not finish"
API = ("mmget", "mmget_not_zero", "mmput", "mmput_async", "mmgrab", "mmdrop",
       "kthread_use_mm", "use_mm")
API_CALL = re.compile(r"\b(%s)\s*\(" % "|".join(API))
# A prototype or definition of one of them, not a call.
API_DECL = re.compile(r"(?:\b(?:void|bool|int|long)\s+\**|\*\s*)(?:%s)\s*\(" % "|".join(API))
MARK_GOT = "__mmaudit_got"
MARK_GONE = "__mmaudit_gone"
WRAPPERS = ("likely", "unlikely")


def problem(function, line, text):
    return {"function": function, "line": int(line), "problem": text}


# --- running spatch ----------------------------------------------------------

def _spatch(path, mode, deadline):
    """Facts of one pass over PATH, and whether the pass finished."""
    left = deadline - time.monotonic()
    if left <= 0:
        return [], "out of time"
    cmd = spatch.base_command(RULE, mode) + [os.path.basename(path)]
    env = dict(os.environ, TMPDIR=os.path.dirname(path))
    proc = subprocess.Popen(cmd, cwd=os.path.dirname(path), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=left)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        return [], "spatch took longer than the time limit"
    facts, done = [], False
    for line in out.splitlines():
        if not line.startswith("MMAUDIT "):
            continue
        try:
            fact = json.loads(line[len("MMAUDIT "):])
        except ValueError:
            return [], "spatch printed a fact that is not JSON"
        if not isinstance(fact, dict):
            return [], "spatch printed a fact that is not an object"
        if fact.get("kind") == "done":
            done = True
        else:
            facts.append(fact)
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no message"])[-1]
        return [], "spatch exited with status %d (%s)" % (proc.returncode, last)
    if not done:
        return [], "spatch stopped before the end of the rule"
    return facts, None


# --- pass 1: mark the branches of each mmget_not_zero() ------------------------

def _strip(cond):
    """COND without outer parentheses or likely()/unlikely() around it."""
    while True:
        cond = cond.strip()
        m = re.match(r"(%s)\s*\((.*)\)$" % "|".join(WRAPPERS), cond, re.S)
        if m and _balanced(m.group(2)):
            cond = m.group(2)
        elif cond.startswith("(") and cond.endswith(")") and _balanced(cond[1:-1]):
            cond = cond[1:-1]
        else:
            return cond


def _balanced(text):
    depth = 0
    for c in text:
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth < 0:
            return False
    return depth == 0


def _split_top(cond, op):
    """COND split at its top-level OP (&& or ||)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(cond):
        c = cond[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth == 0 and cond.startswith(op, i):
            parts.append(cond[start:i])
            i += len(op)
            start = i
            continue
        i += 1
    parts.append(cond[start:])
    return parts


def _squeeze(text):
    return re.sub(r"\s+", "", text)


def branch_of(cond, mm):
    """"then" if the then branch of `if (COND)` runs exactly when
    mmget_not_zero(MM) succeeded, "else" if the else branch does, None if
    the check cannot tell."""
    get = "mmget_not_zero(" + _squeeze(mm) + ")"
    cond = _strip(cond)
    if _squeeze(cond) == get:
        return "then"
    if cond.startswith("!") and _squeeze(_strip(cond[1:])) == get:
        return "else"
    ors = _split_top(cond, "||")       # || binds looser than &&
    if len(ors) > 1:
        # !A || !get: the else branch runs only when the get succeeded
        return "else" if branch_of(ors[-1], mm) == "else" else None
    ands = _split_top(cond, "&&")
    if len(ands) > 1 and branch_of(ands[-1], mm) == "then":
        return "then"       # A && get: the get ran and succeeded, or no get
    return None


def _offsets(text):
    starts = [0]
    for m in re.finditer("\n", text):
        starts.append(m.end())
    return starts


def instrument(text, facts):
    """TEXT (one char per byte) with the branch markers added on the same
    lines, and the problems of the gets that cannot be followed."""
    starts = _offsets(text)

    def at(line, col):
        return starts[line - 1] + col

    inserts, problems, covered = [], [], set()
    for f in sorted((f for f in facts if f.get("kind") == "getif"),
                    key=lambda f: (f["line"], f["col"])):
        covered.add((f["line"], f["col"]))
        cond = text[at(*f["cond"][:2]):at(*f["cond"][2:])]
        mm = " ".join(text[at(*f["m"][:2]):at(*f["m"][2:])].split())
        side = branch_of(cond, mm)
        if side is None:
            problems.append(problem(f["func"], f["line"], (
                "the check cannot tell which branch of `if (%s)` holds the mm_users reference "
                "of mmget_not_zero(%s); check it by hand" % (" ".join(cond.split()), mm))))
            continue
        got = "%s(%s, %d);" % (MARK_GOT, mm, f["line"])
        gone = "%s(%s, %d);" % (MARK_GONE, mm, f["line"])
        then_mark, else_mark = (got, gone) if side == "then" else (gone, got)
        if_start = at(*f["cond"][:2])
        for extent, mark in ((f["then"], then_mark), (f["els"], else_mark)):
            if extent is None:
                continue
            s, e = at(*extent[:2]), at(*extent[2:])
            if text[e - 1:e] not in ("}", ";"):
                problems.append(problem(f["func"], f["line"], (
                    "the check cannot find the end of a branch of `if (%s)`; check it by hand"
                    % " ".join(cond.split()))))
                break
            if text[s:s + 1] == "{":
                inserts.append((s + 1, 1, if_start, " " + mark))
            else:
                inserts.append((s, 1, if_start, "{ " + mark + " "))
                inserts.append((e, 0, -if_start, " }"))
        if f["els"] is None:
            e = at(*f["then"][2:])
            inserts.append((e, 0, -if_start, " else { %s }" % else_mark))
    for f in facts:
        if f.get("kind") == "getcall" and (f["line"], f["col"]) not in covered:
            problems.append(problem(f["func"], f["line"], (
                "mmget_not_zero(%s) at line %d is not the condition of an if statement; the "
                "check cannot follow its reference, check it by hand" % (f["mm"], f["line"]))))
    out, last = [], 0
    for offset, _, _, piece in sorted(inserts, key=lambda i: i[:3]):
        out += [text[last:offset], piece]
        last = offset
    out.append(text[last:])
    return "".join(out), problems


# --- pass 2: the problems -------------------------------------------------------

def _users_leaks(text, facts):
    """One problem per get that a path leaks, naming the returns it reaches.
    spatch puts the implicit return of a void function on its last brace."""
    lines = text.split("\n")
    leaks = {}
    for f in facts:
        if f.get("kind") == "users_leak":
            key = (f["func"], f["at"], f["mm"], f["how"])
            leaks.setdefault(key, set())
            if f["ret"] is not None:
                line, col = f["ret"]
                if lines[line - 1][col:col + 6] == "return":
                    leaks[key].add(line)
    problems = []
    for (func, at, mm, how), rets in sorted(leaks.items(), key=lambda i: i[0][:2]):
        if rets:
            where = "the return at line%s %s" % ("s" if len(rets) > 1 else "",
                                                 ", ".join(str(r) for r in sorted(rets)))
        else:
            where = "the end of %s()" % func
        problems.append(problem(func, at, (
            "the mm_users reference of %s at line %d is not released on a path to %s: "
            "mmput(%s) is missing there" % (how, at, where, mm))))
    return problems


def _tag(t):
    return (t or "").replace("*", "").strip() or None


def _count_across(facts, local):
    """Stores and drops of one struct field, across the file's functions."""
    stores = {}
    for f in facts:
        if f.get("kind") == "store":
            key = (f["line"], f["col"])
            if key in stores:
                stores[key]["grabbed"] |= f["grabbed"]
                stores[key]["users"] |= f["users"]
                stores[key]["type"] = stores[key]["type"] or f["type"]
            else:
                stores[key] = dict(f)
    drops = {}
    for f in facts:
        if f.get("kind") == "drop" and _tag(f["type"]):
            drops.setdefault((_tag(f["type"]), f["field"]), []).append(f)
    problems = []
    for (tag, fld), dropped in sorted(drops.items()):
        mine = [s for s in stores.values() if _tag(s["type"]) == tag and s["field"] == fld]
        grabbing = sorted({s["func"] for s in mine if s["grabbed"]})
        droppers = ", ".join("%s()" % d for d in sorted({d["func"] for d in dropped}))
        for s in sorted(mine, key=lambda s: s["line"]):
            if s["grabbed"] or s["users"] or (s["func"], s["line"]) in local:
                continue
            drop = "%s drop%s it with mmdrop()" % (droppers, "s" if "," not in droppers else "")
            if grabbing:
                others = ", ".join("%s()" % g for g in grabbing)
                text = ("%s() stores %s.%s at line %d without mmgrab(), while %s take%s one "
                        "at %s store, and %s: an object set up by %s() has its mm_count "
                        "dropped without a grab"
                        % (s["func"], tag, fld, s["line"], others,
                           "s" if len(grabbing) == 1 else "",
                           "its" if len(grabbing) == 1 else "their", drop, s["func"]))
            else:
                text = ("%s() stores %s.%s at line %d without mmgrab(), but %s: mm_count "
                        "underflows" % (s["func"], tag, fld, s["line"], drop))
            problems.append(problem(s["func"], s["line"], text))
    return problems


def _stack(facts):
    """Grabs on objects on the stack, which nothing frees."""
    static = {(f["func"], f["var"]) for f in facts if f.get("kind") == "static_local"}
    local = {}
    for f in facts:
        if f.get("kind") == "local" and not re.search(r"[*\[(]", f["type"]) \
                and (f["func"], f["var"]) not in static:
            local[(f["func"], f["var"])] = f["line"]
    cond = {(f["line"], f["col"]): f for f in facts if f.get("kind") == "cond_grab"}
    cleared = {(f["func"], f["base"], f["flag"]) for f in facts if f.get("kind") == "flag_false"}
    problems = []
    for f in facts:
        if f.get("kind") != "stack_grab" or (f["func"], f["var"]) not in local:
            continue
        c = cond.get((f["line"], f["col"]))
        if c and any((f["func"], base, c["flag"]) in cleared
                     for base in (f["var"], f["alias"], c["base"])):
            continue        # the stack object clears the flag the grab tests
        problems.append(problem(f["func"], f["line"], (
            "%s() takes mmgrab() at line %d on %s.%s, and %s lives on its stack (line %d); "
            "a path returns without mmdrop(): the mm_count reference leaks with the stack "
            "frame" % (f["func"], f["line"], f["var"], f["field"], f["var"],
                       local[(f["func"], f["var"])]))))
    grabs = {}
    for f in facts:
        if f.get("kind") == "param_grab":
            grabs.setdefault((f["callee"], f["index"]), f)
    for f in facts:
        if f.get("kind") == "stack_call" and (f["func"], f["var"]) in local:
            g = grabs.get((f["callee"], f["index"]))
            if g:
                problems.append(problem(f["func"], f["line"], (
                    "%s() passes &%s, an object on its stack (line %d), to %s(), which takes "
                    "mmgrab() on its %s at line %d; nothing drops it before %s() returns: "
                    "the mm_count reference leaks with the stack frame"
                    % (f["func"], f["var"], local[(f["func"], f["var"])], f["callee"],
                       g["field"], g["line"], f["func"]))))
    return problems


def _coverage(text, facts):
    """Calls of the reference API that spatch did not see."""
    seen = {(f["line"], f["api"]) for f in facts if f.get("kind") == "seen"}
    code = scan.blank_non_code(text)
    macros = scan.macro_lines(code)
    problems = []
    for m in API_CALL.finditer(code):
        start = code.rfind("\n", 0, m.start()) + 1
        line = code.count("\n", 0, m.start()) + 1
        if API_DECL.search(code[start:m.end()]) or (line, m.group(1)) in seen:
            continue
        if line in macros:
            why = "it is in the body of a macro, which the check does not follow"
        else:
            why = "spatch could not parse the code around it"
        problems.append(problem(None, line, (
            "%s() at line %d is not covered by the balance check: %s; check it by hand"
            % (m.group(1), line, why))))
    return problems


def _problems(text, facts):
    """TEXT: the file as pass 2 saw it (same lines as the original)."""
    found = [problem(f["func"], f["line"], f["problem"]) for f in facts
             if f.get("kind") == "problem"]
    local = {(f["func"], f["store"]) for f in facts
             if f.get("kind") == "problem" and f.get("check") == "count_extra_drop"
             and "store" in f}
    found += _users_leaks(text, facts)
    found += _count_across(facts, local)
    found += _stack(facts)
    found += _coverage(text, facts)
    return found


def _unique(problems):
    out, seen = [], set()
    for p in sorted(problems, key=lambda p: (p["line"], p["problem"])):
        key = (p["function"], p["line"], p["problem"])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _safe_name(name):
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", os.path.basename(str(name or ""))).lstrip(".")
    if not base.endswith((".c", ".h")):
        base = (base or "patched") + ".c"
    return base


def check_text(text, name="patched.c", timeout=120):
    """The problems of the C file TEXT (str or bytes), each a dict
    {"function", "line", "problem"}; [] when every reference balances.

    spatch runs on a copy in a scratch directory.  A run that does not
    finish gives one problem, NOT_FINISHED, with line 0."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    source = data.decode("latin-1")       # one char per byte, as spatch counts columns
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="mmaudit-balance-") as tmp:
        path = os.path.join(tmp, _safe_name(name))
        with open(path, "wb") as f:
            f.write(data)
        facts, why = _spatch(path, "probe", deadline)
        if why:
            return [problem(None, 0, "%s: %s" % (NOT_FINISHED, why))]
        marked, problems = instrument(source, facts)
        if marked.count("\n") != source.count("\n"):
            return [problem(None, 0, "%s: the branch markers moved lines" % NOT_FINISHED)]
        with open(path, "wb") as f:
            f.write(marked.encode("latin-1"))
        facts, why = _spatch(path, None, deadline)
        if why:
            return [problem(None, 0, "%s: %s" % (NOT_FINISHED, why))]
    return _unique(problems + _problems(marked, facts))


# --- patches ------------------------------------------------------------------

_NEW_NAME = re.compile(r"^\+\+\+ ([^\t\n]+)", re.M)


def touched_files(patch_text):
    """The files a unified diff changes, relative to the tree (-p1)."""
    files = []
    for m in _NEW_NAME.finditer(patch_text):
        name = m.group(1).strip()
        if name == "/dev/null":
            continue
        if name.startswith("/"):
            raise ValueError("the patch names a file outside the tree: %s" % name)
        parts = name.split("/", 1)
        if len(parts) != 2 or not parts[1]:
            raise ValueError("the patch names a file without a directory prefix: %s" % name)
        rel = parts[1]
        if os.path.isabs(rel) or ".." in rel.split("/") or "\0" in rel:
            raise ValueError("the patch names a file outside the tree: %s" % name)
        if rel not in files:
            files.append(rel)
    return files


def check_patch(tree, patch_text, timeout=120):
    """{file: problems} for each C file PATCH_TEXT changes in TREE.

    The patch is applied with `patch -p1` to a scratch copy of only the
    files it touches; TREE is only read."""
    try:
        files = touched_files(patch_text)
    except ValueError as err:
        return {"": [problem(None, 0, str(err))]}
    if not files:
        return {"": [problem(None, 0, "the patch changes no file")]}
    with tempfile.TemporaryDirectory(prefix="mmaudit-balance-patch-") as tmp:
        root = os.path.join(tmp, "tree")
        os.mkdir(root)
        for rel in files:
            src = os.path.join(tree, rel)
            if not os.path.lexists(src):
                continue        # the patch creates it
            real = os.path.realpath(src)
            if os.path.islink(src) or not os.path.isfile(real):
                return {rel: [problem(None, 0, "%s is not a regular file in the tree" % rel)]}
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(real, "rb") as f, open(os.path.join(root, rel), "wb") as out:
                out.write(f.read())
        proc = subprocess.run(["patch", "-p1", "--batch", "--forward", "--silent",
                               "--no-backup-if-mismatch", "--reject-file=-", "-d", root],
                              input=patch_text.encode("utf-8", "surrogateescape"),
                              capture_output=True)
        if proc.returncode != 0:
            why = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
            why = " ".join(why.split())[:300] or "patch exited with status %d" % proc.returncode
            return {rel: [problem(None, 0, "the patch does not apply: %s" % why)]
                    for rel in files}
        results = {}
        for rel in files:
            if not rel.endswith(".c"):
                continue
            path = os.path.join(root, rel)
            if not os.path.isfile(path):
                continue        # the patch deletes it
            with open(path, "rb") as f:
                results[rel] = check_text(f.read(), name=os.path.basename(rel), timeout=timeout)
        return results
