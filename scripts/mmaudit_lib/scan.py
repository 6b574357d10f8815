"""Fast text search: pick the files worth handing to spatch."""

import concurrent.futures
import functools
import os
import re
import subprocess

from . import UsageError

# grep reads a line at a time, and a call may be split after the name
# ("kthread_use_mm\n\t(mm)"): it looks for the name, and BORROW_PY, which
# spans lines, decides.
BORROW_RE = r"use_mm"
BORROW_PY = re.compile(r"\b(kthread_use_mm|use_mm)\s*\(")
# A definition or prototype, not a call: "void kthread_use_mm(struct ...".
DECLARATION_PY = re.compile(r"\bvoid\s+(kthread_use_mm|use_mm)\s*\(")

# Names handed to one grep at most (the command line has a limit).
MAX_ARGS = 1000
# grep's complaint about one path. A name may hold newlines (grep prints it
# raw), but never spans into the next complaint.
GREP_COMPLAINT = re.compile(
    r"^grep: \./((?:(?!\ngrep: ).)*?): (Permission denied|No such file or directory|"
    r"Input/output error|[^\n]*loop[^\n]*)$", re.M | re.S)


def run_grep(tree, options, pattern, unreadable, jobs=1, files=None):
    """grep -r over the tree's C files, or over FILES (names relative to
    the tree) if given; names NUL-terminated; its stdout.

    With JOBS > 1 the tree is shared out, a few directories at a time, to
    JOBS greps at once: a walk is CPU-bound once the tree is in the page
    cache.  Paths grep cannot read go to UNREADABLE, if given."""
    cmd = (["grep", "-r", "-H", "-E", "-Z", "--include=*.c", "--include=*.h", "--exclude-dir=.git"]
           + options + ["-e", pattern, "--"])
    if files is not None:
        units = ["./" + rel for rel in files]
        if not units:
            return b""
    else:
        units = _walk_units(tree) if jobs > 1 else ["."]
    size = min(MAX_ARGS, max(1, -(-len(units) // (jobs * 8))))
    chunks = [units[k:k + size] for k in range(0, len(units), size)]
    if len(chunks) == 1:
        results = [_grep_chunk(tree, cmd, chunks[0])]
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(functools.partial(_grep_chunk, tree, cmd), chunks))
    out = b""
    for rc, stdout, stderr in results:
        for m in GREP_COMPLAINT.finditer(stderr):
            if unreadable is not None and (m.group(2) == "Permission denied"
                                           or m.group(1).endswith((".c", ".h"))):
                unreadable.add(m.group(1))
        other = GREP_COMPLAINT.sub("", stderr).split("\n")
        other = [line for line in other if line.strip()]
        if rc > 1 and not stdout and other:
            raise UsageError("grep failed in %s: %s" % (tree, other[0]))
        out += stdout
    return out


def _grep_chunk(tree, cmd, units):
    proc = subprocess.run(cmd + units, cwd=tree, capture_output=True)
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "surrogateescape")


def _walk_units(tree):
    """What a shared-out walk hands to grep: the directories two levels
    down and the C files above them, as "./a/b".  Symbolic links are left
    out, as grep -r leaves them when it recurses; a directory that cannot
    be listed is a unit itself, so that grep reports it."""
    units, files = [], []
    for top in _entries(tree, "."):
        if top is None:
            return ["."]
        name, is_dir = top
        if not is_dir:
            files.append(name)
            continue
        below = list(_entries(tree, name))
        if None in below:
            units.append(name)
            continue
        for sub, sub_is_dir in below:
            (units if sub_is_dir else files).append(sub)
    return units + [f for f in files if f.endswith((".c", ".h"))]


def _entries(tree, rel):
    """(./rel/name, is a directory) of each directory and regular file of
    REL but .git; one None if REL cannot be listed.  A FIFO or device is
    left out: grep reads one named on its command line, and would block."""
    try:
        with os.scandir(os.path.join(tree, rel)) as it:
            found = [("%s/%s" % (rel, e.name), e.is_dir(follow_symlinks=False))
                     for e in it if e.name != ".git" and (e.is_dir(follow_symlinks=False)
                                                          or e.is_file(follow_symlinks=False))]
    except OSError:
        return [None]
    return sorted(found)


def _tree_name(raw):
    """A name grep printed ("./dir/x.c", any byte but NUL), relative to the tree."""
    name = os.fsdecode(raw)
    return name[2:] if name.startswith("./") else name


def parse_names(out):
    """grep -l -Z: every name ends with a NUL."""
    return [_tree_name(raw) for raw in out.split(b"\0")[:-1]]


def _parse_counts(out):
    """grep -c -Z: NAME NUL COUNT newline, over and over: (how many files,
    the names whose count is not 0).  A name may hold newlines but no NUL,
    so the text after each NUL is COUNT newline and the next name."""
    if not out:
        return 0, []
    parts = out.split(b"\0")
    found = []
    for k in range(1, len(parts)):
        count, newline, _ = parts[k].partition(b"\n")
        if not newline or not count.isdigit() or (k == len(parts) - 1) != (_ == b""):
            raise UsageError("cannot read grep -c output: %r" % parts[k][:200])
        if count != b"0":
            found.append(_tree_name(parts[k - 1] if k == 1 else
                                    parts[k - 1].partition(b"\n")[2]))
    if parts and len(parts) == 1:
        raise UsageError("cannot read grep -c output: %r" % parts[0][:200])
    return len(parts) - 1, found


class Walk:
    """Candidate files found by grep -r over the whole tree."""

    note = None     # why another way of selecting files was not taken

    def __init__(self, tree, jobs=1):
        self.tree = tree
        self.jobs = jobs

    def counted(self, pattern, unreadable):
        """(how many C files were searched, the files with a line matching PATTERN)."""
        return _parse_counts(run_grep(self.tree, ["-c"], pattern, unreadable, self.jobs))

    def matching(self, pattern, unreadable):
        """The C files with a line matching PATTERN (an ERE)."""
        return parse_names(run_grep(self.tree, ["-l"], pattern, unreadable, self.jobs))


def borrow_files(tree, jobs=1, select=None):
    """(number of C files searched, sorted files that mention a borrow,
    sorted files and directories that could not be read).  SELECT is how
    files are found (a Walk of the tree unless given)."""
    unreadable = set()
    searched, found = (select or Walk(tree, jobs)).counted(BORROW_RE, unreadable)
    return searched, _which_match(tree, found, BORROW_PY, unreadable), sorted(unreadable)


def _which_match(tree, files, regex, unreadable):
    """The sorted FILES whose text REGEX finds (it may span lines)."""
    out = []
    for rel in sorted(files):
        text = _read_text(tree, rel, unreadable)
        if text is not None and regex.search(text):
            out.append(rel)
    return out


def grep_files(tree, pattern, unreadable=None, jobs=1, select=None):
    """Sorted C files of the tree with a line that matches PATTERN (an ERE)."""
    return sorted((select or Walk(tree, jobs)).matching(pattern, unreadable))


def store_files(tree, field_tags, unreadable=None, callees=None, jobs=1, select=None):
    """Files that store to a field and mention one of the struct tags that
    own that field: FIELD_TAGS maps a field name to its set of tags.  With
    CALLEES, the same walk of the tree also finds the files that call each:
    then (store files, {callee: files}).

    A file that vanished or cannot be read is skipped and, if UNREADABLE (a
    set) is given, added to it."""
    wanted = {field: (sorted(tags),
                      re.compile("|".join(r"\b%s\b" % re.escape(t) for t in sorted(tags))),
                      functools.partial(_stores_to, re.compile(r"%s\s*=(?=[^=])"
                                                               % re.escape(field))))
              for field, tags in field_tags.items() if tags}
    calls = {c: call_of(c) for c in callees or ()}
    # grep looks for plain words, which it searches fastest: a store file
    # must name one of the tags, a caller the callee.  The exact patterns
    # above then run on the files it finds, over the whole text, so a store
    # or call split over lines ("c->mm\n\t= x;") is found too.
    patterns = [re.escape(w) for w in sorted({t for tags, _, _ in wanted.values()
                                              for t in tags} | set(calls))]
    chosen, callers = set(), {c: [] for c in calls}
    for rel in grep_files(tree, "|".join(patterns), unreadable, jobs, select) if patterns else []:
        text = _read_text(tree, rel, unreadable)
        if text is None:
            continue
        # The substring tests first: they are cheap, and most files fail them.
        if any(field in text and any(t in text for t in tags) and store(text)
               and tag.search(text) for field, (tags, tag, store) in wanted.items()):
            chosen.add(rel)
        for c, call in calls.items():
            if c in text and call.search(text):
                callers[c].append(rel)
    return (sorted(chosen), callers) if callees is not None else sorted(chosen)


def _stores_to(assignment, text):
    """True when TEXT stores to the field ASSIGNMENT names ("fld = x", not
    "=="), through "->" or "." with any blanks between.  The same as a
    search for (->|\\.)\\s*fld\\s*=[^=], but a pattern that starts with the
    field's name is searched for ten times faster (the "->" or "." before
    it also rules out a longer name that ends with it)."""
    for m in assignment.finditer(text):
        i = m.start()
        while i and text[i - 1].isspace():
            i -= 1
        if text.endswith(("->", "."), 0, i):
            return True
    return False


def tags_in(tree, rel, tags):
    """The struct tags of TAGS that REL names (as words), or None if it
    cannot be read: then it might name any."""
    text = _read_text(tree, rel, None)
    if text is None:
        return None
    return frozenset(t for t in tags if re.search(r"\b%s\b" % re.escape(t), text))


def _read_text(tree, rel, unreadable):
    """The file as latin-1 text (one char per byte), or None if it cannot be read."""
    try:
        with open(os.path.join(tree, rel), "rb") as f:
            return f.read().decode("latin-1")
    except OSError:
        if unreadable is not None:
            unreadable.add(rel)
        return None


def caller_files(tree, callee, unreadable=None, jobs=1, select=None):
    """Files that call CALLEE (grep for the name, then the call, which may
    span lines)."""
    return _which_match(tree, grep_files(tree, re.escape(callee), unreadable, jobs, select),
                        call_of(callee), unreadable)


def call_of(name):
    """A call of function NAME (or its declaration: the name and "("), with
    any blanks, newlines included, between them."""
    return re.compile(r"\b%s\s*\(" % re.escape(name))


def spatch_can_take(path):
    """Why spatch cannot analyze the file named PATH, or None if it can."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not UTF-8, which spatch cannot analyze"
    if "\n" in path:
        return "the file name contains a newline, which spatch's --file-groups cannot take"
    return None


# --- What the compiler sees -------------------------------------------------

# A line splice: backslash, newline (C's translation phase 2). CRLF too.
SPLICE = re.compile(r"\\\r?\n")
# What a blanked region keeps: line ends, and the backslash of each splice
# so that the continuation lines of a #define stay visible.
BLANKABLE = re.compile(r"[^\r\n\\]+|\\(?!\r?\n)")
BLOCK_COMMENT_END = re.compile(r"\*(?:\\\r?\n)*/")
STRING_STOP = re.compile(r'[\\\n"]')
CHAR_STOP = re.compile(r"[\\\n']")
CODE_STOP = re.compile(r"[/\"']")
NUMBER_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ_.'")
DIRECTIVE = re.compile(r"\s*#\s*(\w+)(.*)", re.S)
MAYBE_IF0 = re.compile(r"#[\s\\]*if[\s\\]+0")     # a quick test, splices allowed
OPENS_IF = ("if", "ifdef", "ifndef")
ENDS_IF0 = ("else", "elif", "elifdef", "elifndef")


def blank_non_code(text):
    """TEXT with comments, string and char literals, and the code inside
    `#if 0` blanked to spaces: what is left is code the compiler sees.

    Offsets and line numbers are kept: only characters other than newlines
    are replaced, and each by one space. The backslash of a line splice is
    kept too, so continued #define lines still end with one. Splices are
    followed as C does: a // comment that ends in a backslash goes on to the
    next line. C has no raw strings: R"(...)" is an identifier and a string.

    `#if 0` means the expression is literally 0 (comments aside). Its dead
    code ends at its own #else, #elif or #endif; nested #if blocks inside it
    are dead too."""
    return _blank_if0(_blank_comments_and_literals(text))


def blank(chunk):
    """CHUNK with every character but line ends and splices' backslashes
    turned into a space: lines and columns are kept."""
    return BLANKABLE.sub(lambda m: " " * len(m.group()), chunk)


def _past_splices(text, i):
    """Index of the first character at or after I that is not part of a splice."""
    m = SPLICE.match(text, i)
    while m:
        i = m.end()
        m = SPLICE.match(text, i)
    return i


def code_text(text):
    """TEXT as far as the compiler (and spatch) can tell: comments blanked,
    trailing blanks of each line and blank lines at the end dropped.  Every
    token keeps its line and column, so facts found in one text hold for
    any other with the same code_text."""
    lines = _blank_comments_and_literals(text, literals=False).split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(line.rstrip() for line in lines)


def _blank_comments_and_literals(text, literals=True):
    """One pass of a small C scanner; see blank_non_code.  LITERALS: blank
    string and char literals too."""
    out = []
    kept = 0    # text[kept:i] is code, still to be copied
    i = 0
    while True:
        m = CODE_STOP.search(text, i)
        if not m:
            break
        i = m.start()
        end = _token_end(text, i)
        if end is None:         # a lone /, or a digit separator
            i += 1
            continue
        if not literals and text[i] != "/":
            i = end             # a literal, kept as it is
            continue
        out += [text[kept:i], blank(text[i:end])]
        kept = i = end
    out.append(text[kept:])
    return "".join(out)


def _token_end(text, i):
    """End of the comment or literal that starts at I, or None if none does."""
    c = text[i]
    if c == "/":
        j = _past_splices(text, i + 1)
        if text.startswith("*", j):
            return _block_comment_end(text, j + 1)
        if text.startswith("/", j):
            return _line_comment_end(text, j + 1)
        return None
    if c == "'" and _in_number(text, i):
        return None
    return _literal_end(text, i + 1, c)


def _block_comment_end(text, i):
    m = BLOCK_COMMENT_END.search(text, i)
    return m.end() if m else len(text)


def _line_comment_end(text, i):
    """The newline that ends the comment; a spliced one does not."""
    while True:
        nl = text.find("\n", i)
        if nl < 0:
            return len(text)
        if not text.endswith(("\\", "\\\r"), 0, nl):
            return nl
        i = nl + 1


def _literal_end(text, i, quote):
    """End of a string or char literal whose body starts at I. An unclosed
    one ends at the end of its line, as the compiler gives up there."""
    stop = STRING_STOP if quote == '"' else CHAR_STOP
    while True:
        m = stop.search(text, i)
        if not m:
            return len(text)
        c = m.group()
        if c == quote:
            return m.end()
        if c == "\n":
            return m.start()
        if SPLICE.match(text, m.start()):
            i = _past_splices(text, m.start())
        else:   # an escape: the next character (after any splice) is taken
            i = min(_past_splices(text, m.end()) + 1, len(text))


def _in_number(text, i):
    """True if the quote at I is a digit separator (C23: 1'000'000): the
    token it sits in starts with a digit. u8'a', L'a' are char literals."""
    start = i
    while start > 0 and text[start - 1] in NUMBER_CHARS:
        start -= 1
    head = text[start:i].lstrip(".")
    return head[:1].isdigit()


def _blank_if0(text):
    """Blank the lines inside each `#if 0` (see blank_non_code)."""
    if not MAYBE_IF0.search(text):
        return text
    lines = text.split("\n")
    depth = 0       # inside #if 0: how many #if are open, its own included
    for first, last in logical_lines(lines):
        name, rest = directive(lines, first, last)
        was_dead = depth > 0
        if not was_dead:
            depth = 1 if (name, rest) == ("if", "0") else 0
        elif name in OPENS_IF:
            depth += 1
        elif name == "endif":
            depth -= 1
        elif name in ENDS_IF0 and depth == 1:
            depth = 0
        if was_dead and depth:
            lines[first:last + 1] = [blank(line) for line in lines[first:last + 1]]
    return "\n".join(lines)


def directive(lines, first, last):
    """(name, the rest stripped) of the directive on LINES[first..last], or
    (None, None) if they hold none."""
    if first == last and not lines[first].lstrip().startswith("#"):
        return None, None      # the usual case, made quick
    m = DIRECTIVE.match(SPLICE.sub("", "\n".join(lines[first:last + 1])))
    return (m.group(1), m.group(2).strip()) if m else (None, None)


def logical_lines(lines):
    """(first, last) index of the physical LINES that form each logical line."""
    first = 0
    for k, line in enumerate(lines):
        if not line.endswith(("\\", "\\\r")):
            yield first, k
            first = k + 1
    if first < len(lines):
        yield first, len(lines) - 1


DEFINE_LINE = re.compile(r"\s*#\s*define\b")


def macro_lines(text):
    """Line numbers (1-based) that belong to a #define, continuations included."""
    lines = set()
    in_define = False
    for number, line in enumerate(text.split("\n"), 1):
        if in_define or ("#" in line and DEFINE_LINE.match(line)):
            lines.add(number)
            in_define = line.rstrip().endswith("\\")
        else:
            in_define = False
    return lines


def textual_borrows(tree, rel):
    """Every call of the two functions in code the compiler sees (not in
    comments, literals or #if 0): [(line, col, api, in_macro)].

    Columns are 0-based like spatch's."""
    with open(os.path.join(tree, rel), "rb") as f:
        text = blank_non_code(f.read().decode("latin-1"))
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
    """Name of the #define whose body holds LINE (a #define in a comment or
    in #if 0 does not count)."""
    with open(os.path.join(tree, rel), "rb") as f:
        lines = blank_non_code(f.read().decode("latin-1")).split("\n")[:line]
    for text in reversed(lines):
        m = re.match(r"\s*#\s*define\s+(\w+)", text)
        if m:
            return m.group(1)
    return None
