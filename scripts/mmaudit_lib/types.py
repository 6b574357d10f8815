"""Struct field types read from the tree's C text, without a compiler.

spatch runs with --no-includes: in `kthread_use_mm(vcpu->kvm->mm)` it knows
that `vcpu` is a `struct kvm_vcpu *` but not what `vcpu->kvm` is, as struct
kvm_vcpu is defined in a header. StructIndex answers that from the source:
the struct tag of a field's type (a pointer to a struct, an embedded
struct, or an array of either), and follows chains of fields.

Where definitions are found. One grep over the tree's headers lists every
line that may open a struct definition (`struct TAG {`, `struct TAG` at the
end of a line with its brace on the next, `struct __packed TAG {`,
`struct __attribute__((...)) TAG {`, `struct TAG /* comment */ {`); it runs
once per StructIndex, at the first lookup. On the 6.12 tree (60k C files)
it takes about 0.6 s, less than one grep for a single tag over the .h and
.c files (0.9 s): the answers to all later lookups then cost a file parse
at most (milliseconds). grep runs in the C locale, which is much faster
than a UTF-8 one for this pattern; files with a NUL byte are skipped as
binary (-I). A struct defined in a .c file is visible in that file alone,
so .c files are not indexed: the `near` file is read itself, with the files
it includes by a quoted path; with no `near` file, a tag with the field in
no header is looked for in the .c files, one grep per such tag. A typedef
name is looked up with one grep over the headers per name (names such as
u64 and size_t, known scalars, are not).

Which definition counts. Files are tried in tiers, and the first tier that
holds a definition of the tag with that field decides:
  1. the near file itself;
  2. the files it includes with `#include "..."` (resolved from its
     directory; one level: not what those include);
  3. the other headers in its directory;
  4. every other header it can see: not those of another arch/X/ (nor, if
     given, of an arch other than ARCH for a file outside arch/), not those
     of tools/ or scripts/ (host programs) unless near is there too.
With no near file, the tiers are the headers (but those of tools/ and
scripts/, and of arches other than ARCH if given), then the .c files.
A definition without the field is not the one the code uses (it would not
compile), so it is passed over. Within the deciding tier every definition
(and every #ifdef branch of each) must give the same struct tag, else the
answer is None. So is any field whose type is not a struct: a union, an
enum, an anonymous struct, a scalar, a function pointer, or a typedef name
that does not resolve (through `typedef struct X name;`, `typedef struct X
{...} name;` or a chain of typedefs) to a struct tag.

Parsing. Comments, literals and `#if 0` code are blanked first
(scan.blank_non_code); then every preprocessor line, so that the fields of
all #ifdef/#else branches are seen. The body of a definition is split into
declarations at the `;` outside parentheses and braces. Handled: several
declarators (`struct kvm *kvm, *other;`), qualifiers and kernel annotations
before or after the name (`const`, `__rcu`, `__iomem`, `__percpu`,
`____cacheline_aligned_in_smp`, `__attribute__((...))`, `__aligned(8)`,
`__counted_by(n)`), arrays, bitfields, nested anonymous struct and union
members (their fields are the outer struct's), nested named definitions
(`struct in { ... } x;`: x is a struct in), struct_group() and its kin,
function pointers (fields whose type is no struct). Between `struct` and
the tag, only identifiers that start with `__` (`__packed`, maybe with an
argument list) and `__attribute__((...))` are taken: that is what the
kernel writes there (some 200 `struct __packed TAG {`, 10 `struct
__attribute__((...)) TAG {` in 6.12). Not handled, and so None: a field
declared by a macro (DECLARE_BITMAP(name, n)), or followed by a macro we do
not know that does not start with `__` (`fpu FPU_ALIGN`: the name is then
unsure), a struct whose braces only balance once #ifdef branches are
chosen, union tags (only struct tags are followed), typedefs of anonymous
structs, definitions spelled through macros (`struct FOO(name) {`) or with
`struct` and the tag on different lines.

Lookups never raise on bad input: a tag or field that is not an
identifier, an unknown one, a tree that does not exist or no grep give
None; a file that cannot be read, is gone, is not a regular file or is
over max_bytes is passed over; bytes that are not UTF-8 are read as
Latin-1 (one character per byte; identifiers are ASCII). The header index,
file parses, include lists, .c and typedef greps and typedef answers are
memoized in the object; nothing is kept between objects.
"""

import os
import re
import subprocess
import time

from .scan import blank_non_code

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# A file bigger than this is not read (the kernel's biggest headers are
# register lists of ~24 MB, with no struct in them).
MAX_BYTES = 32 * 1024 * 1024

# Host programs: their headers are not seen by kernel code.
HOST_DIRS = ("tools", "scripts")

# --- What grep looks for (ERE), and the same in Python ----------------------

_GREP_ATTR = (r"(__attribute__[[:space:]]*\(\([^;{}]*\)\)"
              r"|__[A-Za-z0-9_]+(\([^;{}()]*\))?)")
_GREP_AFTER_TAG = r"[[:space:]]*(\{|/[*/]|$)"


def _grep_head(tag_re):
    return (r"\<struct([[:space:]]+" + _GREP_ATTR + r")*[[:space:]]+" + tag_re
            + _GREP_AFTER_TAG)


GREP_ANY_HEAD = _grep_head(r"[A-Za-z_][A-Za-z0-9_]*")

_PY_ATTR = r"(?:__attribute__\s*\(\([^;{}]*\)\)|__\w+(?:\s*\([^;{}()]*\))?)"
# A definition, in code without comments: the tag, then the opening brace.
HEAD = re.compile(r"\bstruct(?:\s+" + _PY_ATTR + r")*\s+([A-Za-z_]\w*)\s*\{")
# One line of grep -o -H -Z GREP_ANY_HEAD: the file name (any byte but NUL,
# newlines too), a NUL, the match; the tag is the match's last identifier.
GREP_RECORD = re.compile(rb"([^\0]*)\0[^\n]*?(?<![A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)"
                         rb"[ \t\r\f\v]*(?:\{|/[*/])?[ \t\r\f\v]*\n")
TYPEDEF = re.compile(r"\btypedef\b")
QUOTED_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"', re.M)
STRUCT_GROUP = re.compile(r"(struct_group_tagged|struct_group_attr|struct_group|__struct_group)"
                          r"\s*\(")
# How many arguments come before the members: NAME; NAME, ATTRS; TAG,
# NAME; TAG, NAME, ATTRS. And which one is the tag, if any.
GROUP_ARGS = {"struct_group": (1, None, 0), "struct_group_attr": (2, None, 0),
              "struct_group_tagged": (2, 0, 1), "__struct_group": (3, 0, 1)}
ATTR_CALL = re.compile(r"\b__\w+\s*\(")
FUNCTION_POINTER = re.compile(
    r"\(\s*\*[\s*]*(?:(?:const|volatile|__\w+)\s+)*([A-Za-z_]\w*)\s*(?:\[[^\]]*\]\s*)*\)\s*\(")
POINTER_TO_ARRAY = re.compile(r"\(\s*\*[\s*]*([A-Za-z_]\w*)\s*\)\s*\[")
WORD = re.compile(r"[A-Za-z_]\w*")
PUNCT = re.compile(r"[;,(){}\[\]]")
BRACKETS = {"{": re.compile(r"[{}]"), "(": re.compile(r"[()]"), "[": re.compile(r"[\[\]]")}

QUALIFIERS = frozenset(("const", "volatile", "restrict", "__restrict", "__restrict__",
                        "_Atomic", "__volatile__", "__const", "static", "extern",
                        "register", "inline", "__inline", "__inline__", "mutable"))
ANNOTATION = re.compile(
    r"_*cacheline_\w*|__(?:rcu|iomem|user|percpu|force|kernel|private|bitwise|safe|nocast"
    r"|packed|aligned|randomize_layout|no_randomize_layout|designated_init|read_mostly"
    r"|ro_after_init|maybe_unused|always_unused|used|weak|deprecated|nonstring|data_racy"
    r"|attribute__|counted_by|guarded_by|pt_guarded_by|must_check|may_alias)\Z")
BUILTINS = frozenset(("void", "char", "short", "int", "long", "float", "double", "signed",
                      "unsigned", "_Bool", "bool", "__int128", "_Complex", "__signed__",
                      "__unsigned__"))
# Typedef names known to be scalars: no need to look them up.
SCALAR_TYPEDEF = re.compile(
    r"(?:__)?[us](?:8|16|32|64|128)|__(?:le|be)(?:16|32|64)|u?int(?:8|16|32|64)_t"
    r"|(?:s?size|ptrdiff|u?intptr|l?off|pid|uid|gid|gfp|fmode|umode|dev|sector|blkcnt"
    r"|dma_addr|phys_addr|resource_size|time64|ktime|slab_flags|vm_fault|pgoff)_t\Z")

# A field's type when it is no struct tag; typedefs are ("typedef", name).
OTHER = ("other",)
UNKNOWN = ("unknown",)

MAX_NESTING = 64
MAX_TYPEDEF_CHAIN = 8


class StructIndex:
    """Struct definitions of one source tree, looked up lazily."""

    def __init__(self, tree, arch=None, max_bytes=MAX_BYTES):
        """TREE is a directory. ARCH (e.g. "x86") is the arch/ directory
        whose headers a file outside arch/ sees; by default, all of them."""
        self.tree = os.path.abspath(os.fsdecode(tree)) if isinstance(tree, (str, bytes)) else None
        self.arch = arch if isinstance(arch, str) and IDENT.match(arch) else None
        self.max_bytes = max_bytes
        self.stats = {"greps": 0, "grep_seconds": 0.0, "files_parsed": 0}
        self._heads = None          # tag -> headers that may define it
        self._files = {}            # rel -> (struct defs, typedefs)
        self._includes = {}         # rel -> files it includes by a quoted path
        self._c_defs = {}           # tag -> .c files that may define it
        self._typedef_files = {}    # name -> headers that may define it
        self._typedefs = {}         # (name, near) -> answer

    # --- API ----------------------------------------------------------------

    def field_struct(self, tag, field, near=None):
        """The struct tag of the type of FIELD of struct TAG (a pointer to it,
        or it embedded), or None when unknown or ambiguous. NEAR, a C file
        relative to the tree, is where the field is used: its definitions
        win."""
        if not (_is_ident(tag) and _is_ident(field)) or self.tree is None:
            return None
        return self._lookup_field(tag, field, self._near(near))

    def resolve(self, tag, fields, near=None):
        """The struct tag at the end of the chain TAG.F1.F2..., or None.
        An empty chain gives TAG."""
        if not _is_ident(tag) or isinstance(fields, (str, bytes)):
            return None
        try:
            chain = list(fields)
        except TypeError:
            return None
        for field in chain:
            tag = self.field_struct(tag, field, near)
            if tag is None:
                return None
        return tag

    # --- Tiers of files -----------------------------------------------------

    def _near(self, near):
        """NEAR as a normalized path relative to the tree, or None."""
        if isinstance(near, bytes):
            near = os.fsdecode(near)
        if not isinstance(near, str) or not near or "\0" in near:
            return None
        if os.path.isabs(near):
            near = os.path.relpath(near, self.tree)
        near = os.path.normpath(near)
        if near == "." or near.startswith(".." + os.sep) or near == "..":
            return None
        return near

    def _tiers(self, candidates, near, c_files=None):
        """Lists of files to try in turn: see the module's docstring.
        CANDIDATES are the headers grep found; C_FILES gives the .c files
        (called only when there is no near file)."""
        if near is not None:
            yield [near]
            included = [f for f in self._included(near) if f != near]
            yield included
            seen = set(included) | {near}
            directory = os.path.dirname(near)
            local = [f for f in candidates if os.path.dirname(f) == directory and f not in seen]
            yield local
            seen.update(local)
            yield [f for f in candidates if f not in seen and self._visible(f, near)]
        else:
            yield [f for f in candidates if self._visible(f, None)]
            if c_files is not None:
                yield [f for f in c_files() if self._visible(f, None)]

    def _visible(self, rel, near):
        parts = rel.split(os.sep)
        near_parts = near.split(os.sep) if near else []
        if parts[0] in HOST_DIRS and near_parts[:1] != parts[:1]:
            return False
        if parts[0] == "arch" and len(parts) > 2:
            arch = near_parts[1] if near_parts[:1] == ["arch"] and len(near_parts) > 2 else self.arch
            if arch is not None and parts[1] != arch and not (arch == "um" and parts[1] == "x86"):
                return False
        return True

    def _included(self, near):
        """Files NEAR includes by a quoted path that resolves from its directory."""
        if near not in self._includes:
            found = []
            raw = self._read(near)
            if raw is not None:
                directory = os.path.dirname(near)
                for name in QUOTED_INCLUDE.findall(raw):
                    rel = os.path.normpath(os.path.join(directory, name))
                    if (not os.path.isabs(rel) and rel != ".." and not rel.startswith(".." + os.sep)
                            and rel not in found and os.path.isfile(os.path.join(self.tree, rel))):
                        found.append(rel)
            self._includes[near] = found
        return self._includes[near]

    # --- Deciding -----------------------------------------------------------

    def _lookup_field(self, tag, field, near):
        def c_files():
            return self._grep_c_definitions(tag)
        for files in self._tiers(self._headers().get(tag, ()), near, c_files):
            entries = []
            for rel in files:
                for fields in self._parse(rel)[0].get(tag, ()):
                    entries += fields.get(field, ())
            if entries:
                return self._decide(entries, near, 0)
        return None

    def _decide(self, entries, near, depth):
        """The one struct tag all ENTRIES give, or None."""
        answers = set()
        for entry in entries:
            if isinstance(entry, str):
                answers.add(entry)
            elif entry[0] == "typedef" and depth < MAX_TYPEDEF_CHAIN:
                answers.add(self._typedef(entry[1], near, depth + 1))
            else:
                answers.add(None)
            if len(answers) > 1:
                return None
        return answers.pop() if answers else None

    def _typedef(self, name, near, depth):
        """The struct tag typedef NAME stands for, or None."""
        if SCALAR_TYPEDEF.match(name):
            return None
        key = (name, near)
        if key not in self._typedefs:
            self._typedefs[key] = None          # a loop of typedefs ends here
            answer = None
            for files in self._tiers(self._grep_typedefs(name), near):
                entries = []
                for rel in files:
                    entries += self._parse(rel)[1].get(name, ())
                if entries:
                    answer = self._decide(entries, near, depth)
                    break
            self._typedefs[key] = answer
        return self._typedefs[key]

    # --- grep ---------------------------------------------------------------

    def _grep(self, options, pattern):
        """grep -r over the tree, in the C locale (much faster), binary files
        skipped; its stdout, or b"" if it cannot run."""
        cmd = ["grep", "-r", "-I", "-Z", "-E"] + options + ["-e", pattern, "."]
        env = dict(os.environ, LC_ALL="C")
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=self.tree, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        except (OSError, ValueError):       # no grep, no tree, a NUL in its name
            return b""
        finally:
            self.stats["greps"] += 1
            self.stats["grep_seconds"] += time.monotonic() - started
        return proc.stdout

    def _headers(self):
        """tag -> headers with a line that may open its definition."""
        if self._heads is None:
            heads = {}
            out = self._grep(["-o", "-H", "--include=*.h"], GREP_ANY_HEAD)
            for name, tag in GREP_RECORD.findall(out):
                files = heads.setdefault(tag.decode("ascii"), [])
                if not files or files[-1] != name:
                    files.append(name)
            for files in heads.values():
                files[:] = [_tree_name(name) for name in files]
            self._heads = heads
        return self._heads

    def _grep_c_definitions(self, tag):
        if tag not in self._c_defs:
            out = self._grep(["-l", "--include=*.c"], _grep_head(re.escape(tag)))
            self._c_defs[tag] = [_tree_name(raw) for raw in out.split(b"\0")[:-1]]
        return self._c_defs[tag]

    def _grep_typedefs(self, name):
        if name not in self._typedef_files:
            pattern = r"(\<typedef\>|\}).*\<%s\>" % re.escape(name)
            out = self._grep(["-l", "--include=*.h"], pattern)
            self._typedef_files[name] = [_tree_name(raw) for raw in out.split(b"\0")[:-1]]
        return self._typedef_files[name]

    # --- Files --------------------------------------------------------------

    def _read(self, rel):
        """The file as text (latin-1: one character per byte, so any byte
        goes and offsets are kept), or None."""
        path = os.path.join(self.tree, rel)
        try:
            if not os.path.isfile(path):     # a FIFO would block
                return None
            with open(path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        except (OSError, ValueError):
            return None
        if len(data) > self.max_bytes:
            return None
        return data.decode("latin-1")

    def _parse(self, rel):
        """({tag: [fields of each definition]}, {typedef name: [types]}) of
        one file; fields map a name to the types it is declared with."""
        if rel not in self._files:
            raw = self._read(rel)
            self.stats["files_parsed"] += 1
            self._files[rel] = parse_text(raw) if raw is not None else ({}, {})
        return self._files[rel]


# --- Parsing (pure functions of the text) ------------------------------------

def parse_text(raw):
    """See StructIndex._parse."""
    text = _blank_directives(blank_non_code(raw))
    structs = {}
    for m in HEAD.finditer(text):
        close = _matching(text, m.end() - 1)
        if close < 0:
            continue
        fields = {}
        _parse_body(text[m.end():close], fields, True, 0)
        structs.setdefault(m.group(1), []).append(fields)
    typedefs = {}
    for m in TYPEDEF.finditer(text):
        end = _statement_end(text, m.end())
        if end >= 0:
            _parse_statement(text[m.end():end], typedefs, False, 0)
    return structs, typedefs


def _blank_directives(text):
    """TEXT with each preprocessor line (and its continuations) blanked, so
    that the code of every #ifdef branch is kept. Offsets are kept."""
    if "#" not in text:
        return text
    lines = text.split("\n")
    continued = False
    for i, line in enumerate(lines):
        if continued or line.lstrip().startswith("#"):
            continued = line.endswith(("\\", "\\\r"))
            lines[i] = " " * len(line)
    return "\n".join(lines)


def _matching(text, i):
    """Index of the bracket that closes the one at I, or -1."""
    opening = text[i]
    depth = 0
    for m in BRACKETS[opening].finditer(text, i):
        depth += 1 if m.group() == opening else -1
        if depth == 0:
            return m.start()
    return -1


def _statement_end(text, i):
    """Index of the `;` that ends the statement starting at I, or -1."""
    depth = 0
    for m in PUNCT.finditer(text, i):
        c = m.group()
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
            if depth < 0:
                return -1
        elif c == ";" and depth == 0:
            return m.start()
    return -1


def _split(text, separator):
    """TEXT cut at each SEPARATOR outside brackets."""
    parts = []
    depth = 0
    start = 0
    for m in PUNCT.finditer(text):
        c = m.group()
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth = max(depth - 1, 0)
        elif c == separator and depth == 0:
            parts.append(text[start:m.start()])
            start = m.end()
    parts.append(text[start:])
    return parts


def _parse_body(body, fields, members, nesting):
    for statement in _split(body, ";"):
        _parse_statement(statement, fields, members, nesting)


def _add(fields, name, entry):
    fields.setdefault(name, []).append(entry)


def _parse_statement(statement, fields, members, nesting):
    """Add to FIELDS the names STATEMENT declares. MEMBERS: it is in a struct
    body (not a typedef), where anonymous structs and unions add their
    members."""
    s = statement.strip()
    if not s or nesting > MAX_NESTING:
        return
    group = STRUCT_GROUP.match(s)
    if group and members:
        _parse_group(s, group, fields, nesting)
        return
    brace = s.find("{")
    if brace >= 0:
        _parse_nested(s, brace, fields, members, nesting)
        return
    s = _strip_attributes(s)
    if "(" in s:
        for name in FUNCTION_POINTER.findall(s):
            _add(fields, name, OTHER)
        for name in POINTER_TO_ARRAY.findall(s):
            _add(fields, name, UNKNOWN)
        return      # or a macro: what it declares is unknown
    _parse_declaration(s, fields)


def _parse_group(s, group, fields, nesting):
    """struct_group(NAME, MEMBERS...) and its kin: an anonymous union of the
    members and of a struct NAME that holds them too."""
    close = _matching(s, group.end() - 1)
    if close < 0:
        return
    before, tag_at, name_at = GROUP_ARGS[group.group(1)]
    args = _split(s[group.end():close], ",")
    if len(args) <= before:
        return
    tag = args[tag_at].strip() if tag_at is not None else ""
    name = args[name_at].strip()
    if _is_ident(name):
        _add(fields, name, tag if _is_ident(tag) else OTHER)
    _parse_body(",".join(args[before:]), fields, True, nesting + 1)


def _parse_nested(s, brace, fields, members, nesting):
    """`struct TAG { ... } declarators`, `union { ... };` and the like."""
    close = _matching(s, brace)
    if close < 0:
        return
    head = [w for w in WORD.findall(_strip_attributes(s[:brace])) if not _ignored(w)]
    kinds = [i for i, w in enumerate(head) if w in ("struct", "union", "enum")]
    if not kinds:
        return
    kind = head[kinds[-1]]
    tag = head[kinds[-1] + 1] if kinds[-1] + 1 < len(head) else None
    names = []
    for part in _split(_strip_attributes(s[close + 1:]), ","):
        names += _declarator_names(_words(part))
    if not names:
        if members and kind != "enum" and tag is None:
            _parse_body(s[brace + 1:close], fields, True, nesting + 1)
        return
    entry = tag if kind == "struct" and tag is not None else OTHER
    for name, certain in names:
        _add(fields, name, entry if certain else UNKNOWN)


def _parse_declaration(s, fields):
    """`[qualifiers] type declarator, declarator...` with no parentheses."""
    parts = _split(s, ",")
    first = _words(parts[0])
    kinds = [i for i, w in enumerate(first) if w in ("struct", "union", "enum")]
    if kinds:
        k = kinds[0]
        if k + 1 >= len(first):
            return
        entry = first[k + 1] if first[k] == "struct" else OTHER
        declarators = [first[k + 2:]]
    else:
        builtin = any(w in BUILTINS for w in first)
        words = [w for w in first if w not in BUILTINS]
        keep = 1 if builtin else 2
        while len(words) > keep and words[-1].startswith("__"):
            words.pop()
        if len(words) < keep:
            return      # a macro, or an unnamed bitfield
        if builtin:
            entry = OTHER
        elif len(words) == 2:
            entry = ("typedef", words[0])
        else:
            entry = UNKNOWN
        _add(fields, words[-1], entry)
        declarators = []
    declarators += [_words(p) for p in parts[1:]]
    for words in declarators:
        for name, certain in _declarator_names(words):
            _add(fields, name, entry if certain else UNKNOWN)


def _words(part):
    """The identifiers of one declarator, without array sizes, bitfield
    widths, qualifiers and annotations."""
    part = re.sub(r"\[[^\]]*\]", " ", part).split(":", 1)[0]
    return [w for w in WORD.findall(part) if not _ignored(w)]


def _declarator_names(words):
    """[(name, certain)] that a declarator's WORDS declare: one sure name, or
    each candidate marked unsure when the words leave it open."""
    words = list(words)
    while len(words) > 1 and words[-1].startswith("__"):
        words.pop()     # an annotation we do not know, after the name
    if len(words) == 1:
        return [(words[0], True)]
    return [(w, False) for w in words]


def _ignored(word):
    return word in QUALIFIERS or bool(ANNOTATION.match(word))


def _strip_attributes(s):
    """S without `__attribute__((...))`, `__aligned(8)` and such calls."""
    while True:
        m = ATTR_CALL.search(s)
        if not m:
            return s
        close = _matching(s, m.end() - 1)
        if close < 0:
            return s[:m.start()]
        s = s[:m.start()] + " " + s[close + 1:]


def _is_ident(name):
    return isinstance(name, str) and bool(IDENT.match(name))


def _tree_name(raw):
    """A name grep printed ("./dir/x.h", any byte but NUL), relative to the tree."""
    name = os.fsdecode(raw)
    return name[2:] if name.startswith("./") else name
