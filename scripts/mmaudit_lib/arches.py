"""The architectures whose TLB code trusts mm_users, found in one tree.

Some architectures skip a remote TLB flush, or keep it on the local CPU,
when mm_users says that the mm has a single user (only this CPU can have it
loaded) or none (the mm is dying).  A kernel thread that borrowed the mm
with kthread_use_mm() and holds no mm_users reference is the user those
shortcuts forget.  Which architectures have such a shortcut is computed
from the tree, never listed by hand:

1. grep picks the C files under arch/ that mention mm_users;
2. cocci/arch_shortcuts.cocci gives the facts of every read of mm_users
   there (atomic_read(&E->mm_users)): the constant it is compared with,
   the if/while/return condition that holds it, an assertion around it, a
   CONFIG_DEBUG_VM guard before it, and the functions that take a struct
   mmu_gather.  Facts are cached by file content (facts.FactCache);
3. this module keeps the reads that decide a flush (see shortcut_or_why()):

   - compared with 0 or 1 (or "< 2", ">= 2"): "mm_users == 0" (and its
     negation) is the "dying mm" shortcut, "mm_users == 1", "!= 1", "<= 1",
     "> 1" the "single user" one; any other comparison is not a shortcut;
   - in the condition of an if, a while or a return, or in a value stored
     for one (bool single = atomic_read(&mm->mm_users) == 1;);
   - in TLB flush or shootdown code: a function whose name says tlb, flush
     or shootdown, a file whose name does, or a function that takes a
     struct mmu_gather;
   - not a debug check: not in the arguments of a BUG/WARN assertion, not
     under #if(def) CONFIG_DEBUG_VM, not in a condition that tests
     CONFIG_DEBUG_VM, not after an "if (!IS_ENABLED(CONFIG_DEBUG_VM))
     return" that every path to it passes.  Those run only on debug
     kernels or skip nothing.

Every other read is listed in the table's `excluded`, with the reason.

Fail closed: a file that spatch did not finish, or in which a textual read
(outside comments, literals and #if 0) has no fact (spatch dropped the
function around it), is in the table's `failed` with the reason, and its
reads count neither way.  So is a file with a read in the body of a macro:
what that test decides depends on where the macro is used, which is not
followed."""

import collections
import os
import re
import subprocess
import tempfile

from . import UsageError, coverage, facts, scan, spatch
from .tree import cache_dir, kernel_version

RULE = os.path.join(spatch.COCCI_DIR, "arch_shortcuts.cocci")

# The facts of cocci/arch_shortcuts.cocci, each keyed by the read's position
# but mmu_gather (at the name of a function that takes a struct mmu_gather).
# They are registered with the runner's schema here, beside the code that
# reads them.
KINDS = {
    "mmu_read": {},
    "mmu_compared": {"op": str, "value": str},
    "mmu_condition": {"start_line": int, "start_col": int, "end_line": int, "end_col": int},
    "mmu_stored": {"start_line": int, "start_col": int, "end_line": int, "end_col": int},
    "mmu_assertion": {"macro": str},
    "mmu_debug_only": {},
    "mmu_gather": {},
}
for _kind, _fields in KINDS.items():
    if facts.KINDS.setdefault(_kind, _fields) != _fields:
        raise ImportError("facts.KINDS already has a different %s" % _kind)

Shortcut = collections.namedtuple("Shortcut", "file line function condition kind test")
Shortcut.__doc__ = """A read of mm_users that skips or narrows a TLB flush:
FILE (relative to the tree) and LINE of the read, the FUNCTION that holds
it, the whole CONDITION as written (comments out, blanks squeezed), its
KIND ("single user" or "dying mm") and the TEST, normalised: "mm_users == 0",
"mm_users != 0", "mm_users == 1", "mm_users != 1", "mm_users <= 1" or
"mm_users > 1"."""

Excluded = collections.namedtuple("Excluded", "file line function condition reason")
Excluded.__doc__ = """A read of mm_users that is not a shortcut, and why.
CONDITION is None when the read is in no if, while or return condition
and no stored value."""

SINGLE_USER = "single user"
DYING_MM = "dying mm"
FLUSH_CODE = re.compile(r"tlb|flush|shootdown", re.I)
DEBUG_VM = re.compile(r"\bCONFIG_DEBUG_VM\b")
OPS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<=": lambda a, b: a <= b,
       "<": lambda a, b: a < b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
# The values of mm_users that tell the shortcuts apart: none, one, and "many"
# (two and three must agree, or the test is about more than one user).
VALUES = (0, 1, 2, 3)
TESTS = {(True, False, False, False): "mm_users == 0", (False, True, True, True): "mm_users != 0",
         (False, True, False, False): "mm_users == 1", (True, False, True, True): "mm_users != 1",
         (True, True, False, False): "mm_users <= 1", (False, False, True, True): "mm_users > 1"}


class Table(dict):
    """{arch: [Shortcut]}, sorted by architecture, then by file and line,
    with what the scan did not count: `excluded` ([Excluded], sorted) and
    `failed` ({file: reason}, the files whose reads could not all be
    judged).  `files` are the files scanned."""

    def __init__(self, entries=(), excluded=(), failed=None, files=()):
        super().__init__(entries)
        self.excluded = list(excluded)
        self.failed = dict(failed or {})
        self.files = list(files)


def default_cache():
    """The facts cache that `mmaudit audit` uses too."""
    return facts.FactCache(os.path.join(cache_dir(), "facts"))


def arch_names(tree):
    """The architectures of TREE: the directories of arch/ with a Kconfig."""
    top = os.path.join(tree, "arch")
    try:
        names = os.listdir(top)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise UsageError("%s: cannot list it: %s" % (top, err.strerror))
    return sorted(n for n in names if os.path.isfile(os.path.join(top, n, "Kconfig")))


def candidate_files(tree):
    """(sorted C files under arch/ that mention mm_users, {path: reason} of
    those grep could not read).  Names are NUL-separated, so any name works."""
    if not os.path.isdir(os.path.join(tree, "arch")):
        return [], {}
    proc = subprocess.run(["grep", "-r", "-l", "-Z", "-F", "--include=*.c", "--include=*.h",
                           "-e", "mm_users", "./arch"], cwd=tree, capture_output=True)
    stderr = proc.stderr.decode("utf-8", "surrogateescape")
    unreadable = {m.group(1): "grep could not read it: %s" % m.group(2).lower()
                  for m in scan.GREP_COMPLAINT.finditer(stderr)}
    if proc.returncode > 1 and not proc.stdout and not unreadable:
        raise UsageError("grep failed in %s: %s" % (
            tree, (stderr.strip().splitlines() or ["exit %d" % proc.returncode])[0]))
    names = [os.fsdecode(raw) for raw in proc.stdout.split(b"\0")[:-1]]
    return sorted(n[2:] if n.startswith("./") else n for n in names), unreadable


def textual_reads(text):
    """Lines of TEXT (code already blanked by scan.blank_non_code) with a
    read of mm_users, atomic_read(&...->mm_users) or atomic_read(&....mm_users)."""
    lines = set()
    for m in re.finditer(r"\batomic_read\s*\(", text):
        close = _matching_paren(text, m.end() - 1)
        arg = text[m.end():close] if close is not None else ""
        if re.fullmatch(r"\s*&.*(?:->|\.)\s*mm_users\s*\)*\s*", arg, re.S):
            lines.add(text.count("\n", 0, m.start()) + 1)
    return lines


def _matching_paren(text, i):
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return None


def test_of(op, value):
    """The normalised test of "mm_users OP VALUE" (VALUE as written in C),
    or None when it does not tell apart none, one and several users the way
    a shortcut does."""
    m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)[uUlL]*", value)
    if not m or op not in OPS:
        return None
    n = int(m.group(1), 0)
    return TESTS.get(tuple(OPS[op](v, n) for v in VALUES))


def kind_of(test):
    return DYING_MM if test in ("mm_users == 0", "mm_users != 0") else SINGLE_USER


def _extent(lines, start_line, start_col, end_line, end_col):
    """The text from (START_LINE, START_COL) to (END_LINE, END_COL), blanks squeezed."""
    if start_line == end_line:
        text = lines[start_line - 1][start_col:end_col]
    else:
        text = "\n".join([lines[start_line - 1][start_col:]] + lines[start_line:end_line - 1]
                         + [lines[end_line - 1][:end_col]])
    return " ".join(text.split())


# #if and friends, for the CONFIG_DEBUG_VM branches.  spatch parses both
# branches of an #ifdef and does not say which one holds a position, so this
# part is read from the source text.
DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*(ifdef|ifndef|if|elif|else|endif)\b(.*)$", re.M)


def under_debug_vm(code, line):
    """Is LINE of CODE (blanked text) in a branch of an #if that is taken
    only with CONFIG_DEBUG_VM (#ifdef CONFIG_DEBUG_VM, #if
    IS_ENABLED(CONFIG_DEBUG_VM), the #else of #ifndef CONFIG_DEBUG_VM)?"""
    at = 0
    for _ in range(line - 1):
        at = code.find("\n", at) + 1
    stack = []      # [mentions CONFIG_DEBUG_VM, negated, in the #else]
    for m in DIRECTIVE.finditer(code, 0, at):
        kind, rest = m.group(1), m.group(2)
        if kind in ("if", "ifdef", "ifndef"):
            negated = kind == "ifndef" or bool(re.match(r"\s*!", rest))
            stack.append([bool(DEBUG_VM.search(rest)), negated, False])
        elif kind == "elif" and stack:
            stack[-1] = [bool(DEBUG_VM.search(rest)), bool(re.match(r"\s*!", rest)), False]
        elif kind == "else" and stack:
            stack[-1][2] = True
        elif kind == "endif" and stack:
            stack.pop()
    return any(mentions and negated == in_else for mentions, negated, in_else in stack)


def shortcut_or_why(rel, read, found, code, lines, gathers):
    """(Shortcut, None) for the read READ (its mmu_read fact) of file REL,
    or (None, Excluded): FOUND are the facts at its position, by kind; CODE
    and LINES the blanked text of the file; GATHERS the functions of the
    file that take a struct mmu_gather."""
    line, function = read["line"], read["func"]
    cond = found.get("mmu_condition") or found.get("mmu_stored")
    condition = _extent(lines, cond["start_line"], cond["start_col"], cond["end_line"],
                        cond["end_col"]) if cond else None

    def excluded(reason):
        return None, Excluded(rel, line, function, condition, reason)
    if "mmu_assertion" in found:
        return excluded("in the arguments of %s(): an assertion, not a flush decision"
                        % found["mmu_assertion"]["macro"])
    if under_debug_vm(code, line):
        return excluded("under #if CONFIG_DEBUG_VM: a debug kernel's check")
    if condition is not None and DEBUG_VM.search(condition):
        return excluded("its condition tests CONFIG_DEBUG_VM: a debug kernel's check")
    if "mmu_debug_only" in found:
        return excluded("%s() returns before it unless CONFIG_DEBUG_VM: a debug kernel's check"
                        % function)
    compared = found.get("mmu_compared")
    if compared is None:
        return excluded("mm_users is not compared with a constant")
    test = test_of(compared["op"], compared["value"])
    if test is None:
        return excluded("mm_users %s %s tells neither a single user nor a dying mm"
                        % (compared["op"], compared["value"]))
    if condition is None:
        return excluded("%s is not in the condition of an if, a while or a return, nor "
                        "stored for one" % test)
    if function is None:
        return excluded("outside a function")
    if not (FLUSH_CODE.search(function) or FLUSH_CODE.search(os.path.basename(rel))
            or function in gathers):
        return excluded("%s() is not TLB flush or shootdown code (neither it nor the file "
                        "is named for tlb, flush or shootdown, and it takes no struct "
                        "mmu_gather)" % function)
    return Shortcut(rel, line, function, condition, kind_of(test), test), None


def judge_file(tree, rel, file_facts, cover):
    """([Shortcut], [Excluded], reason or None) of one file from its facts."""
    with open(os.path.join(tree, rel), "rb") as f:
        code = scan.blank_non_code(f.read().decode("latin-1"))
    lines = code.split("\n")
    candidates = textual_reads(code)
    at = collections.defaultdict(dict)
    gathers = set()
    reads = []
    for fact in file_facts:
        if fact["kind"] == "mmu_gather":
            gathers.add(fact["func"])
        elif fact["kind"] == "mmu_read":
            if fact["line"] in candidates:      # not in #if 0 or a comment
                if fact["func"] == "something_else":    # spatch's name for no function
                    fact = dict(fact, func=None)
                reads.append(fact)
        else:
            at[(fact["line"], fact["col"])][fact["kind"]] = fact
    macros = scan.macro_lines(code)
    missing = cover.missing(rel, sorted(candidates), macros, {r["line"] for r in reads},
                            "the mm_users read")
    # spatch parses an expression macro's body, but what the test decides
    # depends on where the macro is used, which it does not follow.
    missing += sorted({(r["line"], coverage.why_unseen(tree, rel, r["line"], macros, None))
                       for r in reads if r["line"] in macros})
    if missing:
        return [], [], "; ".join("the mm_users read at line %d was not analyzed: %s"
                                 % (line, why) for line, why in sorted(set(missing)))
    found, left = [], []
    for read in sorted(reads, key=lambda r: (r["line"], r["col"])):
        shortcut, why = shortcut_or_why(rel, read, at[(read["line"], read["col"])], code,
                                        lines, gathers)
        if shortcut:
            found.append(shortcut)
        else:
            left.append(why)
    return found, left, None


def shortcuts(tree, jobs=1, cache=None, timeout=120):
    """The Table ({arch: [Shortcut]}, with .excluded and .failed) of TREE's
    architectures.  CACHE is a facts.FactCache, or None to run spatch on
    every file."""
    if not os.path.isdir(tree):
        raise UsageError("%s: not a directory" % tree)
    tree = os.path.abspath(tree)        # spatch runs in a scratch directory
    files, failed = candidate_files(tree)
    runner = facts.FactRunner(tree, jobs, timeout, cache)
    all_facts, spatch_failed = runner.run(RULE, files)
    failed.update(spatch_failed)
    by_file = collections.defaultdict(list)
    for fact in all_facts:
        by_file[fact["file"]].append(fact)
    cover = coverage.Coverage(tree, timeout)
    table, excluded = {}, []
    for rel in files:
        if rel in failed:
            continue
        try:
            found, left, why = judge_file(tree, rel, by_file.get(rel, []), cover)
        except OSError as err:
            failed[rel] = "cannot read the file: %s" % err.strerror
            continue
        if why:
            failed[rel] = why
            continue
        parts = rel.split("/")
        for entry in found:
            if len(parts) > 2:
                table.setdefault(parts[1], []).append(entry)
        excluded += left
    return Table(((arch, sorted(entries)) for arch, entries in sorted(table.items())),
                 sorted(excluded, key=lambda e: (e.file, e.line)), failed, files)


def shortcuts_in_text(text, name="tlb.c"):
    """[Shortcut] of one C file's TEXT, as if it were arch/x/NAME of a tree
    (NAME, a base name, counts for "flush code").  A text that spatch cannot
    wholly analyze is an error."""
    if os.path.basename(name) != name or name in ("", ".", ".."):
        raise UsageError("%s: expected a file name without a directory" % name)
    with tempfile.TemporaryDirectory(prefix="mmaudit-arches-") as tmp:
        os.makedirs(os.path.join(tmp, "arch", "x"))
        with open(os.path.join(tmp, "arch", "x", name), "w", encoding="latin-1",
                  errors="replace") as f:
            f.write(text)
        table = shortcuts(tmp)
    if table.failed:
        raise UsageError("; ".join("%s: %s" % item for item in sorted(table.failed.items())))
    return [e._replace(file=name) for entries in table.values() for e in entries]


def describe(entry):
    """'arch/mips/kernel/smp.c:545 flush_tlb_mm(): mm_users == 0'."""
    return "%s:%d %s%s" % (entry.file, entry.line,
                           "%s(): " % entry.function if entry.function else "", entry.test)


def to_json(tree, table):
    """The document `mmaudit arches --format json` prints."""
    return {"schema": "mmaudit-arches/1",
            "tree": {"version": kernel_version(tree)},
            "architectures": arch_names(tree),
            "shortcuts": [dict(arch=arch, **entry._asdict())
                          for arch, entries in table.items() for entry in entries],
            "excluded": [e._asdict() for e in table.excluded],
            "files_scanned": len(table.files),
            "files_failed": [{"file": rel, "reason": why}
                             for rel, why in sorted(table.failed.items())]}


def to_text(tree, table, printable=str):
    """The table `mmaudit arches` prints: one line per shortcut (arch,
    file:line, function, kind, condition and its normalised test), the
    architectures with one, then the reads left out and why, and the files
    that could not be analyzed."""
    out = []
    rows = [("arch", "file:line", "function", "kind", "condition")]
    for arch, entries in table.items():
        for e in entries:
            rows.append((arch, "%s:%d" % (e.file, e.line), e.function + "()", e.kind,
                         "%s  [%s]" % (e.condition, e.test)))
    if len(rows) > 1:
        rows = [tuple(printable(c) for c in row) for row in rows]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        out += ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]
                for r in rows] + [""]
    out.append("%d of %d architectures skip or narrow a TLB flush on mm_users%s" % (
        len(table), len(arch_names(tree)),
        ": " + ", ".join(printable(a) for a in table) if table else "."))
    if table.excluded:
        out.append("")
        out.append("Reads of mm_users not counted:")
        for e in table.excluded:
            out.append("  %s:%d %s%s" % (printable(e.file), e.line,
                                         printable(e.function) + "(): " if e.function else "",
                                         printable(e.reason)))
    if table.failed:
        out.append("")
        out.append("Files not analyzed (their shortcuts are unknown):")
        for rel, why in sorted(table.failed.items()):
            out.append("  %s: %s" % (printable(rel), printable(why)))
    return "\n".join(out) + "\n"
