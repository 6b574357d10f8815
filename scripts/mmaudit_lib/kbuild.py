"""Which architectures can build a file of a kernel tree.

Two halves, joined by `buildable()`:

- `required_symbols(tree, rel)` reads the kbuild Makefiles from the file's
  directory up to the top and gives the Kconfig symbols that must be set for
  its object to be built: `obj-$(CONFIG_X) += f.o`, a composite object
  (`m-y := f.o` / `m-objs` / `m-$(CONFIG_Y) += f.o`, then `m.o` itself), an
  object named with its subdirectory in a Makefile above (`kvm-y +=
  vmx/vmx.o`), and every directory on the way descended into by the one above
  (`obj-$(CONFIG_Z) += dir/`, `subdir-y`, the top-level Kbuild's list, and
  the `core-y`/`drivers-y`/`libs-y` lists of the top Makefile and of
  arch/<arch>/Makefile).  `ifdef`/`ifeq` blocks around a line add their
  condition.  The answer is a disjunction of conjunctions: any one of the
  `alternatives` suffices.  Whatever cannot be read (a variable we cannot
  expand, an `include` we cannot follow, a condition other than a CONFIG_ or
  ARCH test, a file named by no Makefile) makes the answer unknown, with
  why; it never makes it buildable.

- `ArchConfigs(tree, cache_dir)` asks the tree's own Kconfig, per
  architecture: `make -s O=<scratch> ARCH=<arch> allmodconfig` (a kconfig
  target only: no compiler for the target is needed; the host's gcc answers
  Kconfig's cc-option tests).  scripts/kconfig/conf is built once, for the
  first architecture, and copied (with its timestamps and .cmd files, so
  make takes it as up to date) into the other architectures' scratch
  directories; two architectures run at a time.  The symbols set (y or m)
  are cached per tree and architecture, see `tree_key()`.

Literals of a conjunction: `CONFIG_X` (set, y or m), `CONFIG_X=y`,
`CONFIG_X=m`, `ARCH=a` (built with ARCH=a), `!` before any of these (not so),
and `?text` for a condition that could not be read (always unknown).

A variable whose value depends on a condition (`BITS` under `ifeq
($(CONFIG_X86_32),y)`, kbuild's `x-y` lists built by `x-$(CONFIG_Y)` lines
and used as `$(x-y)`) stands for each of its values in turn, under that
value's condition.  The top Makefile and arch/<arch>/Makefile are read
leniently: conditions other than CONFIG_/ARCH tests count as true and items
that cannot be expanded are skipped (libgcc, the EFI stub library).

Limits: "no" means "not set by allmodconfig" (a symbol that allmodconfig
leaves off, such as the other side of a choice or of `depends on !FOO`, is
reported as not set; allyesconfig gives the same answers for every finding
of 6.12); a file that is not compiled but `#include`d by another one
is unknown; `:=` is read as adding to a list; a part listed as
`x-$(CONFIG_Y)` of a built-in composite x.o counts when CONFIG_Y is m too.
"""

import collections
import concurrent.futures
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time

from . import facts

SCHEMA = "mmaudit-kconfig/1"
TARGETS = ("allmodconfig", "allyesconfig")
MAX_ALTERNATIVES = 512
MAX_ENTRY = 16 * 1024 * 1024
MAX_DEPTH = 40

# Directory lists of the top Makefile and of arch/<arch>/Makefile; their
# items are relative to the top of the tree (head-y names objects).
TOP_LISTS = ("core", "drivers", "libs", "init", "net", "virt", "head")
# Lists whose objects a directory builds itself.
DIRECT = ("obj", "lib", "extra")
# Lists that name no object of the kernel: a name ending -y/-objs that is
# one of these is not a composite object.
NOT_COMPOSITE = frozenset((
    "ccflags", "asflags", "ldflags", "cflags", "subdir-ccflags", "subdir-asflags",
    "ccflags-remove", "asflags-remove", "always", "targets", "clean-files", "clean-dirs",
    "hostprogs", "userprogs", "header-test", "no-header-test", "dtb", "dtbo",
    "userccflags", "userldflags", "hostccflags", "hostldflags", "subdir"))
# Variables a kbuild Makefile may use in an object list that we know to
# expand to nothing that matters here (the top Kbuild's arch lists are read
# from the Makefiles that set them).
EMPTY_VARS = {"ARCH_CORE": "", "ARCH_LIB": "", "ARCH_DRIVERS": ""}

Requirement = collections.namedtuple("Requirement", "alternatives reason steps")
Requirement.__doc__ = """What required_symbols() found.

alternatives: a list of conjunctions (tuples of literals, sorted); the file
is built when every literal of any one of them holds.  reason: None when the
Makefiles were read completely; otherwise why not (more alternatives may
exist, so a "no" cannot be given; with no alternatives at all the answer is
simply unknown).  steps: the Makefile lines the answer rests on, as
"path:line: text"."""


def requirement_symbols(req):
    """The CONFIG_ symbols a Requirement names, sorted."""
    out = set()
    for conj in req.alternatives or ():
        for lit in conj:
            m = re.match(r"!?(CONFIG_\w+)", lit)
            if m:
                out.add(m.group(1))
    return sorted(out)


# -- the Makefile reader -------------------------------------------------------

Assign = collections.namedtuple("Assign", "name suffix items conds where raw")


def _logical_lines(text):
    """(first line number, line) with continuations joined and comments cut."""
    out, buf, start = [], [], None
    for n, line in enumerate(text.split("\n"), 1):
        if start is None:
            start = n
        stripped = line.rstrip("\r")
        backslashes = len(stripped) - len(stripped.rstrip("\\"))
        if backslashes % 2:
            buf.append(stripped[:-1])
            continue
        buf.append(stripped)
        out.append((start, " ".join(buf)))
        buf, start = [], None
    if buf:
        out.append((start, " ".join(buf)))
    result = []
    for n, line in out:
        cut = re.search(r"(?<!\\)#", line)
        if cut:
            line = line[:cut.start()]
        result.append((n, line))
    return result


def _scan_word(line, i):
    """The end of a make word starting at I: whitespace or an assignment
    operator outside $(...) ends it."""
    depth = 0
    while i < len(line):
        c = line[i]
        if c == "$" and i + 1 < len(line) and line[i + 1] in "({":
            depth += 1
            i += 2
            continue
        if depth:
            if c in ")}":
                depth -= 1
            elif c in "({":
                depth += 1
            i += 1
            continue
        if c.isspace() or c in ":+?=!":
            return i
        i += 1
    return i


_OPS = ("::=", ":=", "+=", "?=", "!=", "=")


def _split_assignment(line):
    """(lhs, op, value) of a make assignment, or None."""
    s = line.lstrip()
    while True:
        m = re.match(r"(override|export|private)\s+", s)
        if not m:
            break
        s = s[m.end():]
    end = _scan_word(s, 0)
    lhs = s[:end]
    if not lhs:
        return None
    rest = s[end:].lstrip(" \t")
    for op in _OPS:
        if rest.startswith(op):
            return lhs, op, rest[len(op):].strip()
    return None


def _split_top(text, sep=","):
    """TEXT split at SEP outside parentheses."""
    parts, depth, cur = [], 0, []
    for c in text:
        if c in "({":
            depth += 1
        elif c in ")}":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def _find_ref(text, start=0):
    """(start, end, inner) of the first $(...) or ${...} from START, or None."""
    i = text.find("$", start)
    while i != -1 and i + 1 < len(text):
        if text[i + 1] in "({":
            close = ")" if text[i + 1] == "(" else "}"
            depth, j = 0, i + 1
            while j < len(text):
                if text[j] in "({":
                    depth += 1
                elif text[j] in ")}":
                    depth -= 1
                    if depth == 0:
                        if text[j] != close:
                            return None
                        return i, j + 1, text[i + 2:j]
                j += 1
            return None
        i = text.find("$", i + 2)
    return None


class _Vars:
    """The simple variables of one Makefile, for expanding object lists."""

    def __init__(self, context, defs=None):
        self.values = dict(EMPTY_VARS)
        self.values.update(context)
        # name -> [(value, conditions)]: every piece assigned, for the
        # variables some of whose pieces are assigned under a condition.
        self.defs = {k: list(v) for k, v in (defs or {}).items()}

    def assign(self, name, op, value, conds=()):
        if op != "!=":
            self.defs.setdefault(name, []).append((value, tuple(conds)))
        if op == "+=" and name in self.values:
            self.values[name] = (self.values[name] + " " + value).strip()
        elif op == "?=" and name in self.values:
            pass
        elif op != "!=":
            self.values[name] = value

    def expand(self, text, depth=0):
        """TEXT with the variables and the few functions we know expanded;
        CONFIG_ references are kept as they are.  Anything else is left
        in place (the caller sees a `$`)."""
        if depth > MAX_DEPTH or "$" not in text:
            return text
        out, pos = [], 0
        while True:
            ref = _find_ref(text, pos)
            if ref is None:
                out.append(text[pos:])
                break
            start, end, inner = ref
            out.append(text[pos:start])
            out.append(self._expand_ref(inner, text[start:end], depth))
            pos = end
        return "".join(out)

    def _expand_ref(self, inner, whole, depth):
        inner_x = self.expand(inner, depth + 1)
        m = re.match(r"(addprefix|addsuffix|strip|subst|patsubst|filter-out|filter)\s+(.*)$",
                     inner_x, re.S)
        if m:
            args = [a for a in _split_top(m.group(2))]
            fn = m.group(1)
            if fn == "strip" and len(args) == 1:
                return " ".join(args[0].split())
            if fn in ("addprefix", "addsuffix") and len(args) == 2:
                p, words = args[0].strip(), args[1].split()
                return " ".join((p + w) if fn == "addprefix" else (w + p) for w in words)
            if fn == "subst" and len(args) == 3 and "$" not in args[2]:
                return args[2].replace(args[0], args[1])
            if fn == "patsubst" and len(args) == 3 and "$" not in args[2]:
                return " ".join(_patsubst(args[0].strip(), args[1].strip(), w)
                                for w in args[2].split())
            if fn in ("filter", "filter-out") and len(args) == 2 and "$" not in inner_x:
                pats = args[0].split()
                keep = [w for w in args[1].split()
                        if any(_pattern_match(p, w) for p in pats) == (fn == "filter")]
                return " ".join(keep)
            return whole
        name = inner_x.strip()
        if name.startswith("CONFIG_"):
            return whole
        if re.match(r"^[A-Za-z0-9_.-]+$", name) and name in self.values:
            return self.expand(self.values[name], depth + 1)
        return whole


def _split_words(text):
    """TEXT split at whitespace outside $(...)."""
    words, depth, cur = [], 0, []
    for c in text:
        if c in "({":
            depth += 1
        elif c in ")}":
            depth = max(0, depth - 1)
        if c.isspace() and depth == 0:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(c)
    if cur:
        words.append("".join(cur))
    return words


def _pattern_match(pat, word):
    if "%" not in pat:
        return pat == word
    pre, post = pat.split("%", 1)
    return word.startswith(pre) and word.endswith(post) and len(word) >= len(pre) + len(post)


def _patsubst(pat, rep, word):
    if not _pattern_match(pat, word):
        return word
    if "%" not in pat:
        return rep
    pre, post = pat.split("%", 1)
    stem = word[len(pre):len(word) - len(post)]
    return rep.replace("%", stem, 1)


def _negate(lit):
    if lit.startswith("?"):
        return "?!" + lit[1:]
    return lit[1:] if lit.startswith("!") else "!" + lit


def _suffix_literal(suffix, want):
    """The literals under which a `x-SUFFIX` line adds to the list `x-WANT`
    (WANT: y or m), or None when it never does."""
    if suffix == want or (want == "y" and suffix == "objs"):
        return []
    if suffix in ("y", "m", "n", "", "objs"):
        return None
    m = re.match(r"^\$[({](CONFIG_\w+)[)}]$", suffix)
    if m:
        return [m.group(1) + "=" + want]
    sym = _config_ref(suffix)
    if sym:
        return [sym] if want == "y" else None
    return ["?x-%s" % suffix]


_CONFIG_REF = re.compile(r"^\$[({](CONFIG_\w+)(?::m=y)?[)}]$")
_CONFIG_SUBST = re.compile(r"^\$[({]subst\s+m\s*,\s*y\s*,\s*\$[({](CONFIG_\w+)[)}]\s*[)}]$")
_CONFIG_IF = re.compile(r"^\$[({]if\s+\$[({](CONFIG_\w+)[)}]\s*,\s*y\s*[)}]$")
_ARCH_REF = re.compile(r"^\$[({](S?R?C?ARCH)[)}]$")


def _config_ref(text):
    """CONFIG_X if TEXT is $(CONFIG_X) or a variant that is y when X is
    set ($(CONFIG_X:m=y), $(subst m,y,$(CONFIG_X)), $(if $(CONFIG_X),y))."""
    text = text.strip()
    for rx in (_CONFIG_REF, _CONFIG_SUBST, _CONFIG_IF):
        m = rx.match(text)
        if m:
            return m.group(1)
    return None


def _condition(kind, arg, vars_):
    """The literal of a make conditional, "?..." when it is none we read."""
    arg = arg.strip()
    if kind in ("ifdef", "ifndef"):
        name = vars_.expand(arg).strip() if "$" in arg else arg
        if re.match(r"^CONFIG_\w+$", name):
            return name if kind == "ifdef" else "!" + name
        return "?%s %s" % (kind, arg)
    m = re.match(r"^\((.*)\)$", arg, re.S)
    if m:
        parts = _split_top(m.group(1))
    else:
        parts = re.findall(r"\"[^\"]*\"|'[^']*'", arg)
        parts = [p[1:-1] for p in parts]
    if len(parts) != 2:
        return "?%s %s" % (kind, arg)
    a, b = (p.strip() for p in parts)
    lit = None
    for x, v in ((a, b), (b, a)):
        sym = _config_ref(x)
        if sym and v in ("", "y", "m"):
            lit = "!" + sym if v == "" else (sym + "=" + v)
            break
        am = _ARCH_REF.match(x)
        if am and am.group(1) in ("ARCH", "SRCARCH") and re.match(r"^[\w-]+$", v):
            lit = "ARCH=" + v
            break
    if lit is None:
        return "?%s %s" % (kind, arg)
    return lit if kind == "ifeq" else _negate(lit)


class Makefile:
    """The assignments of one kbuild file, each with the conditions around it."""

    def __init__(self, tree, rel, context=None, lenient=False, _seen=None, defs=None):
        self.rel = rel
        self.lenient = lenient
        self._items = {}
        self.assigns = []
        self.unresolved = []      # "path:line: what" that we could not read
        self.vars = _Vars(context or {}, defs)
        seen = set(_seen or ()) | {rel}
        try:
            text = _read_text(os.path.join(tree, rel))
        except OSError as err:
            self.unresolved.append("%s: cannot read: %s" % (rel, err.strerror or err))
            return
        self._parse(tree, text, lenient, seen)

    def _parse(self, tree, text, lenient, seen):
        stack = []       # each frame: [prior negated literals, current literal or None]
        in_define = 0
        for n, line in _logical_lines(text):
            where = "%s:%d" % (self.rel, n)
            s = line.strip()
            if not s:
                continue
            if in_define:
                if re.match(r"^endef\b", s):
                    in_define -= 1
                elif re.match(r"^(override\s+|export\s+)*define\b", s):
                    in_define += 1
                continue
            if re.match(r"^(override\s+|export\s+)*define\b", s):
                in_define += 1
                continue
            m = re.match(r"^(ifeq|ifneq|ifdef|ifndef)\b\s*(.*)$", s)
            if m:
                stack.append([[], _condition(m.group(1), m.group(2), self.vars)])
                continue
            m = re.match(r"^else\b\s*(.*)$", s)
            if m:
                if stack:
                    frame = stack[-1]
                    if frame[1] is not None:
                        frame[0].append(_negate(frame[1]))
                    cm = re.match(r"^(ifeq|ifneq|ifdef|ifndef)\b\s*(.*)$", m.group(1).strip())
                    frame[1] = _condition(cm.group(1), cm.group(2), self.vars) if cm else None
                continue
            if re.match(r"^endif\b", s):
                if stack:
                    stack.pop()
                continue
            conds = []
            for prior, cur in stack:
                conds.extend(prior)
                if cur is not None:
                    conds.append(cur)
            if lenient:
                conds = [c for c in conds if not c.startswith("?")]
            m = re.match(r"^(-include|sinclude|include)\s+(.*)$", s)
            if m:
                self._include(tree, m.group(1), m.group(2), where, lenient, seen, conds)
                continue
            parsed = _split_assignment(line)
            if parsed is None:
                continue
            lhs, op, value = parsed
            if "$" not in lhs:
                self.vars.assign(lhs, op, value, conds)
            lhs_x = self.vars.expand(lhs)
            nm = re.match(r"^(.+?)-(y|m|n|objs|\$[({].*[)}]|)$", lhs_x, re.S)
            if not nm:
                continue
            self.assigns.append(Assign(nm.group(1), nm.group(2), value, tuple(conds), where,
                                       "%s %s %s" % (lhs, op, " ".join(value.split()))))

    def _include(self, tree, how, arg, where, lenient, seen, conds):
        v = _Vars(self.vars.values)
        v.values.setdefault("srctree", tree)
        for name in v.expand(arg).split():
            path = name if os.path.isabs(name) else os.path.join(tree, name)
            if "$" in path or not _inside(tree, path) or not os.path.isfile(path):
                if how == "include":
                    self.unresolved.append("%s: include %s not followed" % (where, arg.strip()))
                continue
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(tree))
            if rel in seen:
                continue
            sub = Makefile(tree, rel, self.vars.values, lenient, seen, self.vars.defs)
            for a in sub.assigns:
                self.assigns.append(a._replace(conds=tuple(conds) + a.conds))
            self.unresolved.extend(sub.unresolved)
            self.vars.values.update(sub.vars.values)
            for k, pieces in sub.vars.defs.items():
                old = len(self.vars.defs.get(k, ()))    # the included file started with these
                self.vars.defs[k] = pieces[:old] + [(v_, tuple(conds) + c)
                                                    for v_, c in pieces[old:]]

    def _pieces(self, name):
        """The pieces of variable NAME, each with its literals, when its
        value depends on a condition: a variable assigned under `ifeq`, or
        kbuild's `x-y` / `x-m` list built by `x-y` and `x-$(CONFIG_X)`
        lines.  None for any other variable (expanded as it is)."""
        defs = self.vars.defs.get(name)
        if defs and any(c for _, c in defs):
            return [(v, frozenset(c)) for v, c in defs]
        m = re.match(r"^(.+)-(y|m)$", name)
        if not m:
            return None
        want = m.group(2)
        parts = [a for a in self.assigns if a.name == m.group(1)]
        if not parts or all(a.suffix == want and not a.conds for a in parts):
            return None
        out = []
        for a in parts:
            lit = _suffix_literal(a.suffix, want)
            if lit is not None:
                out.append((a.items, frozenset(a.conds) | frozenset(lit)))
        return out

    def _variants(self, text, lits, depth, out, stack=()):
        """The words of TEXT, each with the literals it needs: a conditional
        variable a word uses is replaced by each of its pieces in turn
        (membership in a list is what matters here); a list that adds
        itself (x-y := a.o $(x-y)) adds nothing new."""
        for word in _split_words(text):
            if depth > 8 or len(out) >= 4096:
                out.append((word, lits))
                continue
            for m in re.finditer(r"\$[({]([\w.-]+)[)}]", word):
                name = m.group(1)
                refs = re.compile(r"\$(\(%s\)|\{%s\})" % (re.escape(name), re.escape(name)))
                if name in stack:
                    self._variants(refs.sub("", word), lits, depth + 1, out, stack)
                    break
                pieces = self._pieces(name)
                if pieces is None and "$" in self.vars.values.get(name, ""):
                    pieces = [(self.vars.values[name], frozenset())]
                if pieces is None:
                    continue
                for value, more in pieces:
                    self._variants(refs.sub(lambda _: value, word), lits | more,
                                   depth + 1, out, stack + (name,))
                break
            else:
                out.append((word, lits))
        return out

    def items(self, assign):
        """The expanded items of ASSIGN, each with the literals it needs
        beyond ASSIGN's own, and the items that could not be expanded."""
        if assign in self._items:
            return self._items[assign]
        seen, out, bad = set(), [], []
        for text, lits in self._variants(assign.items, frozenset(), 0, []):
            if _consistent(lits) is None:
                continue
            for w in _split_words(self.vars.expand(text)):
                if "$" in w:
                    if w not in bad:
                        bad.append(w)
                elif (w, lits) not in seen:
                    seen.add((w, lits))
                    out.append((_norm(w), lits))
        self._items[assign] = (out, bad)
        return out, bad

    def guard(self, assign):
        """The literals of ASSIGN's -suffix: a list, or None for never built."""
        suf = assign.suffix
        if suf in ("y", "objs"):
            return []
        if suf == "m":
            return ["CONFIG_MODULES"]
        if suf in ("", "n"):
            return None
        sym = _config_ref(suf)
        if sym:
            return [sym]
        x = self.vars.expand(suf)
        if x != suf:
            if x in ("y", "objs"):
                return []
            if x in ("", "n"):
                return None
            sym = _config_ref(x)
            if sym:
                return [sym]
        return ["?%s-%s" % (assign.name, suf)]


_USES_ARCH = re.compile(r"\$[({](SRC)?ARCH[)}]")


def _could_match(item, want):
    """Whether ITEM, with each $(...) it holds read as any text, can be WANT."""
    rx, pos = [], 0
    while True:
        ref = _find_ref(item, pos)
        if ref is None:
            rx.append(re.escape(item[pos:]))
            break
        rx.append(re.escape(item[pos:ref[0]]))
        rx.append(".*")
        pos = ref[1]
    return re.fullmatch("".join(rx), want) is not None


def _inside(tree, path):
    tree = os.path.realpath(tree)
    path = os.path.realpath(path)
    return path == tree or path.startswith(tree + os.sep)


def _norm(word):
    while word.startswith("./"):
        word = word[2:]
    return re.sub(r"/+", "/", word)


def _read_text(path):
    with open(path, "rb") as f:
        return f.read(4 << 20).decode("utf-8", "replace")


# -- the walk up -----------------------------------------------------------------

def _kbuild_file(tree, d):
    for name in ("Kbuild", "Makefile"):
        rel = os.path.join(d, name) if d else name
        if os.path.isfile(os.path.join(tree, rel)):
            return rel
    return None


def _arch_of(d):
    parts = d.split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "arch" else None


def _consistent(lits):
    """LITS without redundant ones, or None when they contradict."""
    arches = {lit for lit in lits if lit.startswith("ARCH=")}
    if len(arches) > 1:
        return None
    pos = {lit for lit in lits if not lit.startswith(("!", "?", "ARCH="))}
    neg = {lit[1:] for lit in lits if lit.startswith("!") and not lit.startswith("!?")}
    if pos & neg:
        return None
    values = {}
    for lit in pos:
        sym, _, v = lit.partition("=")
        if v:
            if values.setdefault(sym, v) != v:
                return None
    for lit in neg:
        sym, _, v = lit.partition("=")
        if not v and (sym in values or sym in pos):
            return None
    return frozenset(lit for lit in lits
                     if not (lit in pos and "=" not in lit and lit in values))


def _absorb(alts):
    """ALTS (sets of literals) without contradictions and without any that
    a smaller one implies."""
    out = []
    cleaned = set()
    for a in alts:
        c = _consistent(a)
        if c is not None:
            cleaned.add(c)
    for a in sorted(cleaned, key=lambda x: (len(x), sorted(x))):
        if any(b <= a for b in out):
            continue
        out.append(a)
    return out


def _product(xs, ys):
    return _absorb([x | y for x in xs for y in ys])


class _Walker:
    def __init__(self, tree, arches):
        self.tree = tree
        self.arches = arches
        self.host = host_srcarch()
        self.cache = {}
        self.steps = []
        self.problems = []

    def step(self, where, raw):
        s = "%s: %s" % (where, raw)
        if s not in self.steps:
            self.steps.append(s)

    def problem(self, what):
        if what not in self.problems:
            self.problems.append(what)

    def makefiles(self, d):
        """The parsed kbuild file(s) of directory D, as (Makefile, arch):
        a file outside arch/ that uses $(SRCARCH) or $(ARCH) is read once
        per architecture, and its lines that use them hold only there.  A
        file under arch/<a>/ sees the variables of arch/<a>/Makefile (BITS)."""
        key = ("mk", d)
        if key in self.cache:
            return self.cache[key]
        out = []
        rel = _kbuild_file(self.tree, d)
        if rel is not None:
            base = {"SUBARCH": self.host, "srctree": self.tree,
                    "src": os.path.join(self.tree, d) if d else self.tree, "obj": d or "."}
            arch = _arch_of(d)
            if arch:
                ctx = dict(base, SRCARCH=arch, ARCH=arch)
                defs = self.arch_defs(arch)
                out.append((Makefile(self.tree, rel, ctx, defs=defs), None))
            else:
                try:
                    text = _read_text(os.path.join(self.tree, rel))
                except OSError:
                    text = ""
                if _USES_ARCH.search(text) and self.arches:
                    for a in self.arches:
                        ctx = dict(base, SRCARCH=a, ARCH=a)
                        out.append((Makefile(self.tree, rel, ctx), a))
                else:
                    out.append((Makefile(self.tree, rel, base), None))
        self.cache[key] = out
        return out

    def arch_defs(self, arch):
        for mk, a in self.top_lists():
            if a == "=" + arch:
                return {k: v for k, v in mk.vars.defs.items()
                        if k not in ("src", "obj", "srctree")}
        return None

    def top_lists(self):
        """(Makefile, arch) of the files with the top-level directory lists:
        the top Makefile, and arch/<a>/Makefile for each arch ("=a": every
        line of it holds only on a).  Read leniently: conditions other than
        CONFIG_ and ARCH tests count as true, and items that cannot be
        expanded (libgcc, the EFI stub library) are skipped."""
        key = ("top",)
        if key in self.cache:
            return self.cache[key]
        out = []
        if os.path.isfile(os.path.join(self.tree, "Makefile")) and \
                _kbuild_file(self.tree, "") != "Makefile":
            out.append((Makefile(self.tree, "Makefile", {"SUBARCH": self.host}, lenient=True),
                        None))
        for a in self.arches:
            rel = "arch/%s/Makefile" % a
            if os.path.isfile(os.path.join(self.tree, rel)):
                ctx = {"SRCARCH": a, "ARCH": a, "SUBARCH": self.host}
                out.append((Makefile(self.tree, rel, ctx, lenient=True), "=" + a))
        self.cache[key] = out
        return out

    def _match(self, mk, arch, want, names, is_dir):
        """(literals, assign) for each assignment of MK to a list in NAMES
        (None: any composite object) that names WANT.  ARCH: None, "a" (MK
        was read for arch a: its lines that use the arch hold only there,
        and the others are taken from the first arch's reading), or "=a"
        (every line holds only on a)."""
        out = []
        first = self.arches[0] if self.arches else None
        for a in mk.assigns:
            if names is not None and a.name not in names:
                continue
            if names is None and (a.name in NOT_COMPOSITE or a.name in DIRECT
                                  or a.name in TOP_LISTS):
                continue
            extra = frozenset()
            if arch and arch.startswith("="):
                extra = frozenset({"ARCH" + arch})
            elif arch:
                if _USES_ARCH.search(a.raw):
                    extra = frozenset({"ARCH=" + arch})
                elif arch != first:
                    continue
            items, bad = mk.items(a)
            for b in bad:
                if not mk.lenient and _could_match(b, want):
                    self.problem("%s: cannot expand %s" % (a.where, b))
            guard = None
            for it, more in items:
                if is_dir and a.name == "subdir" and not it.endswith("/"):
                    it += "/"
                if it != want:
                    continue
                if guard is None:
                    guard = mk.guard(a)
                    if guard is None:
                        break
                out.append((frozenset(a.conds) | frozenset(guard) | extra | more, a))
        if not mk.lenient:
            for p in mk.unresolved:
                self.problem(p)
        return out

    def object_alts(self, d, name, depth=0):
        """Alternatives for NAME (an object, relative to D) being built by
        D's Makefile, given that D is descended into."""
        key = ("obj", d, name)
        if key in self.cache:
            return self.cache[key]
        self.cache[key] = []     # a cycle adds nothing
        alts = []
        if depth > MAX_DEPTH:
            self.problem("%s: composite objects nest too deep at %s" % (d or ".", name))
            return alts
        for mk, extra in self.makefiles(d):
            for lits, a in self._match(mk, extra, name, DIRECT, False):
                self.step(a.where, a.raw)
                alts.append(lits)
            for lits, a in self._match(mk, extra, name, None, False):
                composite = a.name + ".o"
                sub = self.object_alts(d, composite, depth + 1)
                if sub:
                    self.step(a.where, a.raw)
                    alts.extend(_product([lits], sub))
        alts = _absorb(alts)
        self.cache[key] = alts
        return alts

    def dir_alts(self, d, depth=0):
        """Alternatives for directory D being descended into."""
        if d == "":
            return [frozenset()]
        key = ("dir", d)
        if key in self.cache:
            return self.cache[key]
        self.cache[key] = []
        alts = []
        if depth > MAX_DEPTH:
            self.problem("%s: directories nest too deep" % d)
            return alts
        parts = d.split("/")
        for i in range(len(parts) - 1, -1, -1):
            parent = "/".join(parts[:i])
            want = "/".join(parts[i:]) + "/"
            for mk, extra in self.makefiles(parent):
                found = self._match(mk, extra, want, DIRECT + ("subdir",), True)
                if found:
                    up = self.dir_alts(parent, depth + 1)
                    for lits, a in found:
                        if up:
                            self.step(a.where, a.raw)
                        alts.extend(_product([lits], up))
            if parent == "":
                for mk, extra in self.top_lists():
                    for lits, a in self._match(mk, extra, want, TOP_LISTS, True):
                        self.step(a.where, a.raw)
                        alts.append(lits)
        alts = _absorb(alts)
        if len(alts) > MAX_ALTERNATIVES:
            self.problem("%s/: more than %d ways to reach it" % (d, MAX_ALTERNATIVES))
            alts = []
        self.cache[key] = alts
        return alts

    def file_alts(self, rel):
        base, ext = os.path.splitext(rel)
        if ext not in (".c", ".S", ".rs"):
            return [], "%s is not a C, assembler or Rust source file" % rel
        d = os.path.dirname(rel)
        parts = d.split("/") if d else []
        alts, named = [], False
        for i in range(len(parts), -1, -1):
            anc = "/".join(parts[:i])
            name = os.path.relpath(base + ".o", anc) if anc else base + ".o"
            if not self.makefiles(anc):
                continue
            objs = self.object_alts(anc, name)
            if not objs:
                continue
            named = True
            up = self.dir_alts(anc)
            if not up:
                self.problem("%s/ is not descended into by any Makefile above it"
                             % anc if anc else "the top directory is not built")
            alts.extend(_product(objs, up))
        alts = _absorb(alts)
        if not named:
            self.problem("%s.o is named by no Makefile from %s/ up (the file may be "
                         "#include'd by another one)" % (os.path.basename(base), d or "."))
        return alts, None


def host_srcarch():
    """The SRCARCH of this machine, as the top Makefile's SUBARCH gives it."""
    m = platform.machine()
    if re.match(r"^(i.86|x86_64)$", m):
        return "x86"
    table = {"aarch64": "arm64", "arm64": "arm64", "sun4u": "sparc", "sparc64": "sparc",
             "s390x": "s390", "parisc64": "parisc", "ppc": "powerpc", "ppc64": "powerpc",
             "ppc64le": "powerpc", "mips64": "mips", "sh64": "sh", "riscv64": "riscv",
             "riscv32": "riscv", "loongarch64": "loongarch"}
    if m in table:
        return table[m]
    if m.startswith("arm"):
        return "arm"
    if m.startswith("sh"):
        return "sh"
    return m


def tree_arches(tree):
    """The directories of arch/ that have a Kconfig, sorted."""
    try:
        names = os.listdir(os.path.join(tree, "arch"))
    except OSError:
        return []
    return sorted(n for n in names
                  if os.path.isfile(os.path.join(tree, "arch", n, "Kconfig")))


def required_symbols(tree, rel, arches=None):
    """The Requirement of REL (a source file, relative to TREE).  ARCHES
    (default: those of arch/) are the architectures `$(SRCARCH)` can be."""
    rel = _norm(rel.replace(os.sep, "/")).lstrip("/")
    if rel.startswith("../") or "/../" in rel:
        return Requirement(None, "%s is not inside the tree" % rel, [])
    if not os.path.isfile(os.path.join(tree, rel)):
        return Requirement(None, "%s: no such file in the tree" % rel, [])
    w = _Walker(tree, list(arches) if arches is not None else tree_arches(tree))
    alts, why = w.file_alts(rel)
    if why:
        return Requirement(None, why, [])
    reason = "; ".join(w.problems) if w.problems else None
    if not alts:
        return Requirement(None, reason or "no Makefile names %s" % rel, w.steps)
    return Requirement([tuple(sorted(a)) for a in sorted(alts, key=lambda a: (len(a), sorted(a)))],
                       reason, w.steps)


# -- evaluation ------------------------------------------------------------------

def _lit_value(lit, arch, symbols):
    """True, False or None (unknown) of LIT on ARCH with SYMBOLS (None when
    the arch's configuration is unknown)."""
    if lit.startswith("?"):
        return None
    if lit.startswith("!"):
        v = _lit_value(lit[1:], arch, symbols)
        return None if v is None else not v
    if lit.startswith("ARCH="):
        return lit[5:] == arch
    if symbols is None:
        return None
    sym, _, want = lit.partition("=")
    have = symbols.get(sym)
    if not want:
        return have is not None
    return have == want


def _lit_text(lit, arch, symbols):
    if lit.startswith("ARCH="):
        return "arch/%s" % lit[5:]
    if lit.startswith("!") or lit.startswith("?") or symbols is None:
        return lit
    sym = lit.partition("=")[0]
    return "%s=%s" % (sym, symbols[sym]) if sym in symbols else lit


def evaluate(req, arch, symbols, target="allmodconfig", config_error=None):
    """(state, why) of REQ on ARCH whose configuration sets SYMBOLS (a dict
    symbol -> "y"/"m", or None when it is unknown; CONFIG_ERROR says why)."""
    if not req.alternatives:
        return "unknown", req.reason or "no Makefile names the file"
    undecided = []
    falses = []
    for conj in req.alternatives:
        values = [(lit, _lit_value(lit, arch, symbols)) for lit in conj]
        if symbols is None:
            # nothing is built where Kconfig itself fails
            values.append(("(the configuration of %s)" % arch, None))
        if all(v for _, v in values):
            return "yes", "%s: %s" % (target, " ".join(_lit_text(lit, arch, symbols)
                                                       for lit in conj) or "always built")
        false = [lit for lit, v in values if v is False]
        if false:
            falses.append(false)
        else:
            undecided.append([lit for lit, v in values if v is None])
    if undecided:
        if symbols is None:
            return "unknown", "%s of %s failed: %s" % (target, arch, config_error or "no result")
        return "unknown", "cannot tell: %s" % "; ".join(" ".join(u) for u in undecided[:3])
    if req.reason:
        return "unknown", "no listed way holds (%s), but the Makefiles were not read " \
            "completely: %s" % (_falses_text(falses, target), req.reason)
    return "no", _falses_text(falses, target)


def _falses_text(falses, target):
    """Why no alternative holds: FALSES has the false literals of each."""
    if all(any(f.startswith("ARCH=") for f in fs) for fs in falses):
        arches = sorted({f[5:] for fs in falses for f in fs if f.startswith("ARCH=")})
        return "built only on %s" % ", ".join(arches)
    parts = []
    for fs in falses:
        if any(f.startswith("ARCH=") for f in fs):
            continue
        syms = [f[1:] for f in fs if f.startswith("!")]
        unset = [f for f in fs if not f.startswith("!")]
        t = []
        if unset:
            t.append("%s %s not set" % (", ".join(unset), "is" if len(unset) == 1 else "are"))
        if syms:
            t.append("%s %s set" % (", ".join(syms), "is" if len(syms) == 1 else "are"))
        text = " and ".join(t)
        if text not in parts:
            parts.append(text)
    more = " / ..." if len(parts) > 4 else ""
    return "%s by %s" % (" / ".join(parts[:4]) + more, target)


def buildable(tree, rel, configs, req=None):
    """{arch: (state, why)} with state "yes", "no" or "unknown", for every
    architecture of CONFIGS (an ArchConfigs, or a mapping arch -> symbol
    dict or None).  A file under arch/X/ is built only with ARCH=X (and,
    through its Makefile's HOST_DIR, by um for the host's arch/X/um/)."""
    if req is None:
        arches = configs.arches() if hasattr(configs, "arches") else sorted(configs)
        req = required_symbols(tree, rel, arches)
    own = _arch_of(os.path.dirname(_norm(rel)))
    target = getattr(configs, "target", "allmodconfig")
    out = {}
    arches = configs.arches() if hasattr(configs, "arches") else sorted(configs)
    if hasattr(configs, "prefetch"):
        # all at once: they share one build of scripts/kconfig/conf
        configs.prefetch([a for a in arches if needs_config(req, a, rel)])
    for arch in arches:
        # Decide first without the configuration: it is not needed when the
        # Makefiles alone settle it (an arch/ file on another arch).
        state, why = evaluate(req, arch, None, target, "not needed")
        if state == "unknown" and own and arch != own and arch != "um":
            state, why = "no", "arch/%s/ is built only with ARCH=%s" % (own, own)
        if state == "unknown" and req.alternatives:
            if hasattr(configs, "config"):
                symbols, error = configs.config(arch), configs.failure(arch)
            else:
                symbols, error = configs.get(arch), None
            state, why = evaluate(req, arch, symbols, target, error)
        out[arch] = (state, why)
    return out


def needs_config(req, arch, rel):
    """Whether deciding REQ on ARCH needs ARCH's configuration."""
    if not req.alternatives:
        return False
    state, _ = evaluate(req, arch, None)
    own = _arch_of(os.path.dirname(_norm(rel)))
    if state == "unknown" and own and arch != own and arch != "um":
        return False
    return state == "unknown"


# -- the configurations ------------------------------------------------------------

def _stat_line(tree, rel):
    try:
        st = os.stat(os.path.join(tree, rel))
    except OSError:
        return "%s -\n" % rel
    return "%s %d %d\n" % (rel, st.st_size, st.st_mtime_ns)


def _tool_line(name):
    path = shutil.which(name)
    if not path:
        return "%s -\n" % name
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return "%s %s -\n" % (name, real)
    return "%s %s %d %d\n" % (name, real, st.st_size, st.st_mtime_ns)


def tree_key(tree):
    """What a cached configuration depends on, hashed.

    The tree's real path and its top Makefile (the version), the path, size
    and mtime of every Kconfig* file in it (what `make allmodconfig` reads),
    of arch/*/Makefile and of scripts/kconfig/ and scripts/*.sh (what sets
    Kconfig's environment and checks the toolchain), whether the tree holds
    an in-tree build's .config (then `make O=` refuses), and the host tools
    Kconfig asks (gcc, ld, as, make: their real path, size and mtime).
    Stat data, not contents: one walk of the tree (a quarter second on 6.12
    once the tree is in the page cache) and no file read beyond the top
    Makefile.  An edit in place changes the mtime; a tarball unpacked
    again gets new mtimes too, so at worst the cache misses."""
    tree = os.path.realpath(tree)
    h = hashlib.sha256()
    h.update(("%s\n%s\n" % (SCHEMA, tree)).encode())
    try:
        with open(os.path.join(tree, "Makefile"), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    except OSError:
        h.update(b"no Makefile\n")
    lines = []
    for top, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        reltop = os.path.relpath(top, tree)
        reltop = "" if reltop == "." else reltop
        for name in sorted(files):
            rel = os.path.join(reltop, name)
            if name.startswith("Kconfig") or reltop == "scripts/kconfig" or \
                    (reltop == "scripts" and name.endswith(".sh")) or \
                    (name == "Makefile" and re.match(r"^arch/[^/]+$", reltop)):
                lines.append(_stat_line(tree, rel))
    # an in-tree build makes `make O=` refuse ("the source tree is not clean")
    for rel in (".config", "include/config/auto.conf", "include/generated"):
        lines.append(_stat_line(tree, rel))
    h.update("".join(lines).encode())
    for tool in ("gcc", "cc", "ld", "as", "make"):
        h.update(_tool_line(tool).encode())
    return h.hexdigest()


_ENV_DROP = re.compile(r"^(ARCH|SRCARCH|SUBARCH|CROSS_COMPILE|CROSS_COMPILE_COMPAT|LLVM|LLVM_IAS|"
                       r"CC|HOSTCC|LD|AR|NM|OBJCOPY|OBJDUMP|AS|CPP|RUSTC|BINDGEN|CLANG_FLAGS|"
                       r"KCONFIG_.*|KBUILD_.*|KCFLAGS|KCPPFLAGS|KAFLAGS|KRUSTFLAGS|O|V|W|C|M|"
                       r"MAKEFLAGS|MFLAGS|MAKELEVEL|MAKEFILES|MAKE_TERMOUT|MAKE_TERMERR|"
                       r"GNUMAKEFLAGS|INSTALL_.*|USERCFLAGS|USERLDFLAGS|CFLAGS|CPPFLAGS|"
                       r"LDFLAGS|srctree|objtree|LOCALVERSION)$")


def _make_env():
    env = {k: v for k, v in os.environ.items() if not _ENV_DROP.match(k)}
    env["LC_ALL"] = "C"
    return env


def first_error(text):
    """The line of make's output that says best why it failed."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for rx in (r"Kconfig[\w.-]*:\d+:", r"^\*\*\* (?!\[)", r"(?i)\berror\b(?!: unrecognized)",
               r"(?i)error"):
        for ln in lines:
            if re.search(rx, ln) and not re.search(r"make(\[\d+\])?: \*\*\* \[", ln):
                return ln[:300]
    return lines[0][:300] if lines else "no output"


def read_config(path):
    """{symbol: "y"|"m"} of a .config."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"^(CONFIG_\w+)=([ym])$", line.rstrip("\n"))
            if m:
                out[m.group(1)] = m.group(2)
    return out


ArchResult = collections.namedtuple("ArchResult", "symbols error seconds cached rebuilt_conf")


class ArchConfigs:
    """The symbols `make ARCH=<arch> TARGET` sets, per architecture of TREE,
    cached in CACHE_DIR/<tree_key>/<arch>.<target>.json.

    config(arch): {symbol: "y"|"m"}, or None when Kconfig failed (failure()
    says why).  prefetch() fills the missing ones, JOBS at a time.  `runs`
    lists the arches make was run for by this object, `timings` their
    seconds (the arch whose run built scripts/kconfig/conf first)."""

    def __init__(self, tree, cache_dir=None, target="allmodconfig", jobs=2, timeout=300,
                 reuse_conf=True):
        if target not in TARGETS:
            raise ValueError("target must be one of %s" % ", ".join(TARGETS))
        self.tree = os.path.realpath(tree)
        if cache_dir is None:
            from . import tree as treemod
            cache_dir = os.path.join(treemod.cache_dir(), "kconfig")
        self.cache_dir = cache_dir
        self.target = target
        self.jobs = max(1, int(jobs))
        self.timeout = timeout
        self.reuse_conf = reuse_conf
        self._arches = tree_arches(self.tree)
        self._key = None
        self._results = {}
        self.runs = []
        self.timings = {}
        self._template = None

    def arches(self):
        return list(self._arches)

    @property
    def key(self):
        if self._key is None:
            self._key = tree_key(self.tree)
        return self._key

    def _entry_path(self, arch):
        return os.path.join(self.cache_dir, self.key[:32], "%s.%s.json" % (arch, self.target))

    def config(self, arch):
        return self._result(arch).symbols

    def failure(self, arch):
        return self._result(arch).error

    def result(self, arch):
        return self._result(arch)

    def _result(self, arch):
        if arch not in self._arches:
            raise KeyError("%s is not an architecture of %s" % (arch, self.tree))
        if arch not in self._results:
            self.prefetch([arch])
        return self._results[arch]

    def prefetch(self, arches=None):
        """Load or compute the configurations of ARCHES (default: all)."""
        want = [a for a in (self._arches if arches is None else arches)
                if a not in self._results]
        todo = []
        for arch in want:
            if arch not in self._arches:
                raise KeyError("%s is not an architecture of %s" % (arch, self.tree))
            entry = self._load(arch)
            if entry is not None:
                self._results[arch] = entry
            else:
                todo.append(arch)
        if not todo:
            return
        scratch = tempfile.mkdtemp(prefix="mmaudit-kconfig-")
        self._template = None
        try:
            host = host_srcarch()
            first = host if host in todo else todo[0]
            rest = [a for a in todo if a != first]
            self._compute(first, scratch, seed=True)
            if rest:
                with concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs) as pool:
                    list(pool.map(lambda a: self._compute(a, scratch), rest))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _compute(self, arch, scratch, seed=False):
        """Run the kconfig target for ARCH.  A failure is cached only when a
        second run fails the same way (not a killed make or a full disk)."""
        res, transient = self._run(arch, os.path.join(scratch, arch), seed)
        if res.error and not transient:
            again, transient = self._run(arch, os.path.join(scratch, arch + ".again"), seed)
            if again.error != res.error:
                res, transient = again, True
        self._results[arch] = res
        if not transient:
            self._store(arch, res)
        return res

    def _run(self, arch, odir, seed):
        os.makedirs(odir, exist_ok=True)
        if not seed and self._template:
            for sub in ("basic", "kconfig"):
                src = os.path.join(self._template, sub)
                if os.path.isdir(src):
                    shutil.copytree(src, os.path.join(odir, "scripts", sub), symlinks=True)
        conf = os.path.join(odir, "scripts", "kconfig", "conf")
        before = _mtime(conf)
        cmd = ["make", "-s", "-C", self.tree, "O=" + odir, "ARCH=" + arch, self.target]
        if seed:
            cmd.insert(1, "-j%d" % self.jobs)
        t0 = time.monotonic()
        self.runs.append(arch)
        symbols, error, transient = None, None, False
        try:
            proc = subprocess.run(cmd, cwd=odir, env=_make_env(), stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            error, transient = "make %s timed out after %ds" % (self.target, self.timeout), True
        except OSError as err:
            error, transient = "cannot run make: %s" % (err.strerror or err), True
        else:
            out = proc.stderr.decode("utf-8", "replace") + "\n" + \
                proc.stdout.decode("utf-8", "replace")
            cfg = os.path.join(odir, ".config")
            if proc.returncode != 0:
                error = "exit %d: %s" % (proc.returncode, first_error(out))
                transient = proc.returncode < 0
            elif not os.path.isfile(cfg):
                error = "no .config written: %s" % first_error(out)
            else:
                symbols = read_config(cfg)
                if not symbols:
                    symbols, error = None, ".config sets no symbol"
        seconds = time.monotonic() - t0
        self.timings[arch] = seconds
        after = _mtime(conf)
        rebuilt = after is not None and after != before
        if seed and after is not None and self.reuse_conf:
            self._template = os.path.join(odir, "scripts")
        return ArchResult(symbols, error, round(seconds, 2), False, rebuilt), transient

    def _load(self, arch):
        entry = facts.load_entry(self._entry_path(arch), MAX_ENTRY,
                                 {"schema", "key", "arch", "target", "symbols", "error",
                                  "seconds", "digest"})
        if entry is None:
            return None
        if (entry["schema"], entry["key"], entry["arch"], entry["target"]) != \
                (SCHEMA, self.key, arch, self.target):
            return None
        symbols, error = entry["symbols"], entry["error"]
        if entry["digest"] != _digest(entry):
            return None
        if symbols is None:
            if not isinstance(error, str) or not error:
                return None
        elif not isinstance(symbols, dict) or not symbols or error is not None or \
                not all(isinstance(k, str) and k.startswith("CONFIG_") and v in ("y", "m")
                        for k, v in symbols.items()):
            return None
        seconds = entry["seconds"] if isinstance(entry["seconds"], (int, float)) else 0
        return ArchResult(symbols, error, seconds, True, False)

    def _claim_dir(self, directory):
        """Make the cache directory of this key, and drop the entries of
        earlier keys of the same tree and of trees that are gone (each
        directory names its tree in TREE)."""
        if os.path.isdir(directory):
            return
        os.makedirs(directory, exist_ok=True)
        _write_atomic(os.path.join(directory, "TREE"), self.tree + "\n")
        for name in os.listdir(self.cache_dir):
            other = os.path.join(self.cache_dir, name)
            if other == directory or os.path.islink(other) or not os.path.isdir(other):
                continue
            try:
                with open(os.path.join(other, "TREE")) as f:
                    named = f.read()
            except OSError:
                continue
            if named == self.tree + "\n" or not os.path.isdir(named.rstrip("\n")):
                shutil.rmtree(other, ignore_errors=True)

    def _store(self, arch, res):
        path = self._entry_path(arch)
        entry = {"schema": SCHEMA, "key": self.key, "arch": arch, "target": self.target,
                 "symbols": res.symbols, "error": res.error, "seconds": res.seconds}
        entry["digest"] = _digest(entry)
        try:
            self._claim_dir(os.path.dirname(path))
            _write_atomic(path, json.dumps(entry, sort_keys=True))
        except OSError:
            pass


def _write_atomic(path, text):
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _digest(entry):
    body = {k: v for k, v in entry.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


_SHARED = {}


def shared_configs(tree, cache_dir=None, target="allmodconfig"):
    """One ArchConfigs per tree, cache directory and target for the whole
    process: the tree key (a walk of the tree) and the cached symbol sets
    are read once however many times triage() is called."""
    key = (os.path.realpath(tree), cache_dir, target)
    if key not in _SHARED:
        _SHARED[key] = ArchConfigs(tree, cache_dir, target)
    return _SHARED[key]


def triage(tree, rels, configs=None, cache_dir=None):
    """{rel: {arch: (state, why)}} for the files RELS, running Kconfig only
    for the architectures some answer needs.  Without CONFIGS, the
    process's shared_configs() of TREE."""
    if configs is None:
        configs = shared_configs(tree, cache_dir)
    arches = configs.arches()
    reqs = {rel: required_symbols(tree, rel, arches) for rel in rels}
    needed = sorted({a for rel, req in reqs.items() for a in arches
                     if needs_config(req, a, rel)})
    if needed:
        configs.prefetch(needed)
    return {rel: buildable(tree, rel, configs, reqs[rel]) for rel in rels}
