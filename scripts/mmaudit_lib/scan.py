"""Fast text search: pick the files worth handing to spatch."""

import os
import re
import subprocess

from . import UsageError

BORROW_RE = r"\b(kthread_use_mm|use_mm)[[:space:]]*\("
BORROW_PY = re.compile(r"\b(kthread_use_mm|use_mm)\s*\(")
# A definition or prototype, not a call: "void kthread_use_mm(struct ...".
DECLARATION_PY = re.compile(r"\bvoid\s+(kthread_use_mm|use_mm)\s*\(")


def _grep(tree, pattern, count=False, unreadable=None):
    """Run grep over the tree's C files; return {relative path: count}.

    Files and directories grep cannot read go to UNREADABLE, if given."""
    cmd = ["grep", "-r", "-E", "-Z", "-c" if count else "-l", "--include=*.c",
           "--include=*.h", "-e", pattern, "."]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True)
    other = []
    for line in proc.stderr.decode("utf-8", "surrogateescape").splitlines():
        m = re.match(r"grep: \./(.*): (Permission denied|No such file or directory|"
                     r"Input/output error|.*loop.*)$", line)
        if not m:
            other.append(line)
        elif unreadable is not None and (m.group(2) == "Permission denied"
                                         or m.group(1).endswith((".c", ".h"))):
            unreadable.add(m.group(1))
    if proc.returncode > 1 and not proc.stdout and other:
        raise UsageError("grep failed in %s: %s" % (tree, other[0]))
    out = {}
    if count:
        for rec in proc.stdout.split(b"\n"):
            if b"\0" in rec:
                name, num = rec.split(b"\0", 1)
                out[os.fsdecode(name)[2:]] = int(num or 0)
    else:
        for name in proc.stdout.split(b"\0"):
            if name:
                out[os.fsdecode(name)[2:]] = 1
    return out


def borrow_files(tree):
    """(number of C files searched, sorted files that mention a borrow,
    sorted files and directories that could not be read)."""
    unreadable = set()
    counts = _grep(tree, BORROW_RE, count=True, unreadable=unreadable)
    return len(counts), sorted(f for f, n in counts.items() if n), sorted(unreadable)


def store_files(tree, field_tags):
    """Files that store to a field and mention one of the struct tags that
    own that field: FIELD_TAGS maps a field name to its set of tags."""
    chosen = set()
    for field, tags in sorted(field_tags.items()):
        if not tags:
            continue
        wanted = re.compile("|".join(r"\b%s\b" % re.escape(t) for t in sorted(tags)))
        for rel in _grep(tree, r"(->|\.)[[:space:]]*%s[[:space:]]*=[^=]" % re.escape(field)):
            with open(os.path.join(tree, rel), "rb") as f:
                if wanted.search(f.read().decode("latin-1")):
                    chosen.add(rel)
    return sorted(chosen)


def strip_comments(text):
    """Blank out comments and string literals, keeping offsets and lines."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"', blank, text, flags=re.S)


def macro_lines(text):
    """Line numbers (1-based) that belong to a #define, continuations included."""
    lines = set()
    in_define = False
    for number, line in enumerate(text.split("\n"), 1):
        if in_define or re.match(r"\s*#\s*define\b", line):
            lines.add(number)
            in_define = line.rstrip().endswith("\\")
        else:
            in_define = False
    return lines


def textual_borrows(tree, rel):
    """Every call of the two functions outside comments: [(line, col, api, in_macro)].

    Columns are 0-based like spatch's."""
    with open(os.path.join(tree, rel), "rb") as f:
        text = strip_comments(f.read().decode("latin-1"))
    macros = macro_lines(text)
    found = []
    for m in BORROW_PY.finditer(text):
        start = text.rfind("\n", 0, m.start()) + 1
        line = text.count("\n", 0, m.start()) + 1
        if DECLARATION_PY.search(text[start:m.end()]):
            continue
        found.append((line, m.start() - start, m.group(1), line in macros))
    return found


def enclosing_macro(tree, rel, line):
    """Name of the #define whose body holds LINE."""
    with open(os.path.join(tree, rel), "rb") as f:
        lines = f.read().decode("latin-1").split("\n")[:line]
    for text in reversed(lines):
        m = re.match(r"\s*#\s*define\s+(\w+)", text)
        if m:
            return m.group(1)
    return None


def caller_files(tree, callee):
    """Files that call CALLEE."""
    return sorted(_grep(tree, r"\b%s[[:space:]]*\(" % re.escape(callee)))
