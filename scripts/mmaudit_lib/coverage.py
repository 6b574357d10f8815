"""Coverage of every file a verdict rests on: each textual store to an
owning field, and each textual call of a function that borrows its
parameter, must be in spatch's facts.  One that is not (spatch dropped the
function it is in, or it is in a macro body) makes the verdicts that rest
on it unanalyzed, with the file, line and spatch's parse error."""

import os
import re
import subprocess

from . import scan, spatch

# Words that can come right before a call but never before a declarator.
_NOT_A_TYPE = {"return", "else", "do", "case", "sizeof", "typeof", "__typeof__", "goto"}


def _code(tree, rel):
    with open(os.path.join(tree, rel), "rb") as f:
        return scan.blank_non_code(f.read().decode("latin-1"))


def _line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def store_candidates(tree, rel, field):
    """Lines of REL that store to FIELD: "->field =", ".field =" (a member
    or a designated initializer), in code the compiler sees."""
    text = _code(tree, rel)
    pattern = re.compile(r"(?:->|\.)\s*%s\s*=(?!=)" % re.escape(field))
    return sorted({_line_of(text, m.start()) for m in pattern.finditer(text)}), \
        scan.macro_lines(text)


def call_candidates(tree, rel, callee):
    """Lines of REL that call CALLEE (its definition and prototypes excluded)."""
    text = _code(tree, rel)
    found = set()
    for m in scan.call_of(callee).finditer(text):
        # A declarator follows a type: a word that is not a keyword, with
        # any "*" between ("int callee(", "struct mm_struct *callee(").
        prev = re.search(r"(\w+)\s*[\s*]*$", text[max(0, m.start() - 200):m.start()])
        if prev and prev.group(1) not in _NOT_A_TYPE and not prev.group(1).isdigit():
            continue
        found.add(_line_of(text, m.start()))
    return sorted(found), scan.macro_lines(text)


_PARSE_ERROR = re.compile(r'parse error\s*\n\s*= File "[^"]*", line (\d+), column \d+, '
                          r"charpos = \d+\n\s*around = '([^\n]*)',")


def parse_errors(tree, rel, timeout=120):
    """[(line, token)] of spatch's parse errors in REL, with our macro file."""
    cmd = [spatch.spatch_path(), "--parse-c", "--no-includes", "--include-headers",
           "--macro-file", spatch.MACRO_FILE, rel]
    try:
        proc = subprocess.run(cmd, cwd=tree, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    return [(int(line), token) for line, token in _PARSE_ERROR.findall(out)]


def why_unseen(tree, rel, line, macros, errors_of):
    """Why spatch has no fact for the candidate at REL:LINE."""
    if line in macros:
        macro = scan.enclosing_macro(tree, rel, line)
        return "it is in the body of macro %s(), whose invocations are not followed" % macro
    errors = [e for e in errors_of(rel) if e[0] <= line]
    if errors:
        at, token = errors[-1]
        return "spatch could not parse the function around it (parse error at line %d, " \
            "near '%s')" % (at, token.strip("'"))
    return "spatch did not parse the code around it"


class Coverage:
    """The candidates spatch did not account for, and why; parse errors are
    asked of spatch once per file, only for files that have such a candidate."""

    def __init__(self, tree, timeout=120):
        self.tree = tree
        self.timeout = timeout
        self._errors = {}
        self.unseen = {}        # file: [(line, what, why)]

    def errors_of(self, rel):
        if rel not in self._errors:
            self._errors[rel] = parse_errors(self.tree, rel, self.timeout)
        return self._errors[rel]

    def missing(self, rel, candidates, macros, seen_lines, what):
        """Candidate lines of REL with no fact: [(line, reason)]."""
        out = []
        for line in candidates:
            if line in seen_lines:
                continue
            why = why_unseen(self.tree, rel, line, macros, self.errors_of)
            self.unseen.setdefault(rel, []).append((line, what, why))
            out.append((line, why))
        return out

    def account(self, files, facts, kind, candidates, what, noun, failed):
        """Check FILES (but those already in FAILED) against FACTS of KIND:
        CANDIDATES(rel) gives a file's candidate lines and macro lines.  A
        file with a candidate spatch has no fact for goes into FAILED, with
        the reason ("NOUN at line N was not analyzed: why")."""
        seen = {(f["file"], f["line"]) for f in facts if f["kind"] == kind}
        for rel in files:
            if rel in failed:
                continue
            missed = self.missing(rel, *candidates(rel),
                                  seen_lines={l for r, l in seen if r == rel}, what=what)
            if missed:
                failed[rel] = "; ".join("%s at line %d was not analyzed: %s" % (noun, line, why)
                                        for line, why in missed)

    def file_reasons(self):
        """{file: reason} for stats.files_failed."""
        return {rel: "; ".join("%s at line %d: %s" % (what, line, why)
                               for line, what, why in sorted(items))
                for rel, items in self.unseen.items()}
