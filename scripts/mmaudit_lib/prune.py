"""Hand spatch only the function bodies a fact rule can match in.

A rule matches inside one top-level element, and a match contains the words
the pattern names, unless the rule is anchored on the position of an
earlier rule's match (then it lies in the same element as that match).
`rule_words()` reads a rule file and says which words those are, or None
when some rule could match code that names none of them (then nothing is
pruned).  `prune()` blanks the inside of every function body that names
none of the words: same length, same line ends, so every line and column
spatch reports is the one of the real file.  The words are plain C
identifiers: a body that mentions one keeps all its code.

Bodies are blanked only where the braces can be trusted: every branch of
an #if balances its braces, a body holds no directive (a #define inside
would vanish for the code after it), and the text before the brace is a
function's head, not a struct's."""

import bisect
import re

from . import UsageError, scan

# Rule headers and the "@@" that ends a rule's declarations.
RULE_LINE = re.compile(r"^@[^\n]*@[ \t]*$", re.M)
SCRIPT_RULE = re.compile(r"^@\s*(script|initialize|finalize)\s*:")
# Comments go; a string or character literal stays, emptied (a "//" in it
# is no comment).
COMMENT = re.compile(r"(\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')|//[^\n]*|/\*.*?\*/", re.S)
# A declaration's constraint: a script, a regex, or a set of values.
SCRIPT_CONSTRAINT = re.compile(r":\s*script:\w+\s*\([^)]*\)\s*\{[^}]*\}")
REGEX_CONSTRAINT = re.compile(r"[=!]~\s*\"(?:[^\"\\]|\\.)*\"")
SET_CONSTRAINT = re.compile(r"([A-Za-z_]\w*)\s*(!?=)\s*\{([^}]*)\}")
DOTTED = re.compile(r"\b([A-Za-z_]\w*)\s*\.\s*([A-Za-z_]\w*)")
IDENT = re.compile(r"[A-Za-z_]\w*")
WHEN = re.compile(r"\bwhen\b[^\n]*")
TOKEN = re.compile(r"(?P<dopen>\\\()|(?P<dsep>\\\|)|(?P<dclose>\\\))|(?P<dand>\\&)"
                   r"|(?P<popen><\+\.\.\.)|(?P<pclose>\.\.\.\+>)"
                   r"|(?P<oopen><\.\.\.)|(?P<oclose>\.\.\.>)|(?P<dots>\.\.\.)"
                   r"|(?P<at>@\s*[A-Za-z_]\w*)|(?P<word>[A-Za-z_]\w*)|(?P<other>\S)")
# Words that are no evidence: every body has them.
# Words an isomorphism of spatch's standard.iso can make a pattern match
# without (X == NULL matches !X, unlikely(E) matches E): no evidence either.
ISO_WORDS = frozenset({"NULL", "likely", "unlikely", "__predict_true", "__predict_false"})
KEYWORDS = frozenset("""auto break case char const continue default do double else enum
    extern float for goto if inline int long register restrict return short signed sizeof
    static struct switch typedef union unsigned void volatile while
    when any exists forall strict true false""".split())


class Malformed(Exception):
    """The rule file is not what this reader understands: prune nothing."""


def rule_words(rule_text, defines=()):
    """The words every match of RULE_TEXT's rules needs, as a frozenset, or
    None if some rule could match without them.  DEFINES: "name=value" of
    the rule's virtual identifiers."""
    values = dict(d.split("=", 1) for d in defines if "=" in d)
    try:
        return _rule_words(rule_text, values)
    except Malformed:
        return None


def _rule_words(text, values):
    marks = list(RULE_LINE.finditer(text))
    if len(marks) % 2:
        raise Malformed
    words, confined = set(), set()
    for k in range(0, len(marks), 2):
        head, end = marks[k], marks[k + 1]
        body_end = marks[k + 2].start() if k + 2 < len(marks) else len(text)
        header = head.group()
        if SCRIPT_RULE.match(header):
            continue
        name = re.match(r"@\s*(\w*)", header).group(1)
        name = None if name in ("", "depends") else name
        decls = _declarations(_uncommented(text[head.end():end.start()]), values)
        if decls is None:        # a virtual identifier without a value: the rule never runs
            if name:
                confined.add(name)
            continue
        items = _parse(_tokens(_uncommented(text[end.end():body_end])))
        # A position inherited from rules whose matches are bounded: a match
        # that binds it lies where one of theirs did.
        anchors = {"@" + pos for pos, rules in decls["positions"].items() if rules <= confined}
        consts = dict.fromkeys(anchors, set())
        for w in _words(items):
            if w in KEYWORDS or w in ISO_WORDS or w.startswith("@"):
                continue
            if w in decls["virtual"]:
                consts[w] = {decls["virtual"][w]}
            elif w in decls["sets"]:
                consts[w] = decls["sets"][w]
            elif w not in decls["metas"]:
                consts[w] = {w}
        if not _has_const(items, consts):
            raise Malformed      # this rule can match anywhere
        if not _has_const(items, anchors):      # some match needs one of its words
            for found in consts.values():
                words |= found
        if name:
            confined.add(name)
    return frozenset(words)


def _uncommented(text):
    return COMMENT.sub(lambda m: '""' if m.group(1) else " ", text)


def _declarations(decl_text, values):
    """The metavariables a rule declares: their names, the positions it
    inherits {name: the rules they come from}, its virtual identifiers
    {name: value} and the identifiers constrained to a set of names {name:
    names}; None when a virtual identifier has no value (spatch does not
    run the rule then)."""
    decls = {"metas": set(), "positions": {}, "virtual": {}, "sets": {}}
    text = REGEX_CONSTRAINT.sub(" ", SCRIPT_CONSTRAINT.sub(" ", decl_text))
    for statement in text.split(";"):
        is_position = statement.split()[:1] == ["position"]
        for m in SET_CONSTRAINT.finditer(statement):
            members = [x.strip() for x in m.group(3).split(",") if x.strip()]
            if m.group(2) != "=" or not members:
                continue
            if all(IDENT.fullmatch(x) for x in members):
                decls["sets"][m.group(1)] = set(members)
            inherited = [DOTTED.fullmatch(x) for x in members]
            if is_position and all(inherited):
                decls["positions"][m.group(1)] = {x.group(1) for x in inherited}
        statement = SET_CONSTRAINT.sub(lambda m: m.group(1), statement)
        for m in DOTTED.finditer(statement):
            rule, meta = m.groups()
            if rule == "virtual":
                if meta not in values:
                    return None
                decls["virtual"][meta] = values[meta]
            elif is_position:
                decls["positions"][meta] = {rule}
        decls["metas"].update(m.group(2) for m in DOTTED.finditer(statement))
        decls["metas"].update(IDENT.findall(DOTTED.sub(" ", statement)))
    return decls


def _tokens(body):
    """(kind, text) of BODY's tokens; the added lines and the when clauses
    are left out (they match nothing).  A position is a word "@name"."""
    out = []
    for line in body.split("\n"):
        if line.startswith("+"):
            continue
        if line[:1] in "-*":
            line = " " + line[1:]
        when = WHEN.search(line)
        if when:
            clause = when.group()
            # A when clause that goes on to the next line would be read as pattern.
            if clause.count("(") != clause.count(")"):
                raise Malformed
            line = line[:when.start()]
        bare = line.strip()
        if line[:1] in "(|)&" and bare in ("(", "|", ")", "&"):
            out.append(({"(": "dopen", "|": "dsep", ")": "dclose", "&": "dand"}[bare], None))
            continue
        optional = line.startswith("?")
        if optional:
            out.append(("oopen", None))
            line = " " + line[1:]
        for m in TOKEN.finditer(line):
            if m.lastgroup == "word":
                out.append(("word", m.group()))
            elif m.lastgroup == "at":
                out.append(("word", "@" + m.group()[1:].strip()))
            elif m.lastgroup not in ("dots", "other"):
                out.append((m.lastgroup, None))
        if optional:
            out.append(("oclose", None))
    return out


def _parse(tokens):
    items, i = _sequence(tokens, 0, ())
    if i != len(tokens):
        raise Malformed
    return items


def _sequence(tokens, i, stops):
    items = []
    while i < len(tokens) and tokens[i][0] not in stops:
        kind, value = tokens[i]
        if kind == "word":
            items.append(("word", value))
            i += 1
        elif kind == "dopen":
            branches, separators = [], set()
            i += 1
            while True:
                branch, i = _sequence(tokens, i, ("dsep", "dclose", "dand"))
                branches.append(branch)
                if i >= len(tokens):
                    raise Malformed
                i += 1
                if tokens[i - 1][0] == "dclose":
                    break
                separators.add(tokens[i - 1][0])
            if len(separators) > 1:
                raise Malformed
            items.append(("all" if separators == {"dand"} else "one", branches))
        elif kind in ("popen", "oopen"):
            close = "pclose" if kind == "popen" else "oclose"
            inner, i = _sequence(tokens, i + 1, (close,))
            if i >= len(tokens):
                raise Malformed
            i += 1
            items.append(("some" if kind == "popen" else "maybe", inner))
        else:
            raise Malformed      # a closing token with nothing open
    return items, i


def _words(items):
    for kind, value in items:
        if kind == "word":
            yield value
        elif kind in ("one", "all"):
            for branch in value:
                yield from _words(branch)
        else:
            yield from _words(value)


def _has_const(items, consts):
    """True when every match of ITEMS contains one of the CONSTS."""
    for kind, value in items:
        if kind == "word" and value in consts:
            return True
        if kind == "one" and all(_has_const(b, consts) for b in value):
            return True
        if kind == "all" and any(_has_const(b, consts) for b in value):
            return True
        if kind == "some" and _has_const(value, consts):
            return True
    return False


def rule_file_words(path, defines=()):
    try:
        with open(path) as f:
            return rule_words(f.read(), defines)
    except OSError as err:
        raise UsageError("cannot read %s: %s" % (path, err.strerror))


# --- The C side -------------------------------------------------------------

STRUCT_HEAD = re.compile(r"\b(struct|union|enum)\b[\s\w]*$")
PARENS = re.compile(r"\([^()]*\)")
ENDS_WITH_NAME = re.compile(r"[A-Za-z_]\w*\s*$")
DEFINE = re.compile(r"\s*#\s*define\s+([A-Za-z_]\w*)(.*)", re.S)
# A longer head is not taken for a function's (and its parentheses are not
# worth untangling): the body stays.
MAX_HEAD = 4096


def prune(text, words):
    """TEXT with the inside of each function body that names none of WORDS
    blanked; TEXT itself when its braces cannot be trusted."""
    if words is None:
        return text
    code = scan.blank_non_code(text)
    found = _bodies(code)
    if not found:
        return text
    bodies, directives, macros = found
    words = _with_macros(words, macros)
    out, kept = [], 0
    for head, start, end in bodies:
        # The words may be in the head too: a pattern can name the function.
        if bisect.bisect(directives, start) != bisect.bisect(directives, end) or \
                not words.isdisjoint(IDENT.findall(code, head, end)):
            continue
        out += [text[kept:start + 1], scan.blank(text[start + 1:end])]
        kept = end
    return "".join(out) + text[kept:] if out else text


def _with_macros(words, macros):
    """WORDS and the names of the file's macros that expand to one of them
    (spatch may expand a macro of the file to parse it)."""
    words = set(words)
    grew = True
    while grew:
        grew = False
        for name, replacement in macros:
            if name not in words and not words.isdisjoint(IDENT.findall(replacement)):
                words.add(name)
                grew = True
    return words


def _bodies(code):
    """([(offset of the head, of "{", of "}")] of the functions of CODE,
    offsets of its directives, [(macro, replacement)]), or None when its
    braces do not balance in every branch of every #if."""
    lines = code.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    flat = list(lines)
    events, macros = [], []
    for first, last in scan.logical_lines(lines):
        name, rest = scan.directive(lines, first, last)
        if name is None:
            continue
        events.append((starts[first], name))
        if name == "define":
            m = DEFINE.match(scan.SPLICE.sub("", "\n".join(lines[first:last + 1])))
            if m:
                macros.append((m.group(1), m.group(2)))
        flat[first:last + 1] = [scan.blank(line) for line in lines[first:last + 1]]
    flat = "\n".join(flat)
    bodies, stack, depth, boundary, head, opened, head_ok = [], [], 0, -1, 0, None, False
    e = 0
    for m in re.finditer(r"[{};]", flat):
        pos = m.start()
        while e < len(events) and events[e][0] < pos:
            if not _branch_balanced(events[e][1], stack, depth):
                return None
            e += 1
        c = m.group()
        if c == "{":
            if depth == 0:
                head, opened, head_ok = boundary + 1, pos, _function_head(flat[boundary + 1:pos])
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return None
            if depth == 0:
                if head_ok:
                    bodies.append((head, opened, pos))
                boundary = pos
        elif depth == 0:
            boundary = pos
    if not all(_branch_balanced(name, stack, depth) for _, name in events[e:]):
        return None
    if depth or stack:
        return None
    return bodies, [pos for pos, _ in events], macros


def _branch_balanced(name, stack, depth):
    """Follow directive NAME at brace DEPTH; STACK holds the depth at each
    open #if.  False when the branch NAME ends left the braces unbalanced."""
    if name in scan.OPENS_IF:
        stack.append(depth)
    elif name in scan.ENDS_IF0 or name == "endif":
        if not stack or stack[-1] != depth:
            return False
        if name == "endif":
            stack.pop()
    return True


def _function_head(head):
    """True when HEAD, the code between the last top-level ";" or "}" and a
    "{", is a function's: it ends with a parameter list, and is neither a
    struct, union or enum (with attributes) nor an initializer."""
    head = head.rstrip()
    if not head.endswith(")") or len(head) > MAX_HEAD:
        return False
    collapsed, before = head, None
    while collapsed != before:
        before, collapsed = collapsed, PARENS.sub(" ", collapsed)
    if "(" in collapsed or ")" in collapsed or "=" in collapsed:
        return False
    return not STRUCT_HEAD.search(collapsed) and bool(ENDS_WITH_NAME.search(collapsed))
