"""mmaudit_lib.prune: spatch sees only the function bodies a rule can match in.

The rule reader must say None (prune nothing) for any rule that could match
code naming none of its words; the C side must blank only whole function
bodies that name none of them, keep every line and column, and leave the
file alone when its braces cannot be trusted.  The last tests run the fact
rules on every fixture file, and on the real trees, pruned and not: the
facts must be the same."""

import json
import os
import random
import re

import pytest

import support
from mmaudit_lib import audit, facts, prune

COCCI = os.path.join(support.ROOT, "cocci")
FIXTURES = os.path.join(support.ROOT, "tests", "fixtures")


# --- Reading the rules ---------------------------------------------------------

def words(rule, *defines):
    return prune.rule_words(rule, defines)


def test_audit_rules_can_be_pruned():
    sites = prune.rule_file_words(os.path.join(COCCI, "audit_sites.cocci"))
    stores = prune.rule_file_words(os.path.join(COCCI, "audit_stores.cocci"), ["fld=owner_mm"])
    callers = prune.rule_file_words(os.path.join(COCCI, "audit_callers.cocci"),
                                    ["callee=start_worker", "sub=mm"])
    assert {"kthread_use_mm", "use_mm", "mmget_not_zero", "get_task_mm"} <= sites
    assert "owner_mm" in stores and "mm" not in stores     # the field asked for
    assert callers == {"start_worker"}


def test_a_tokenless_alternative_prunes_nothing():
    rule = "@r@\nexpression E, F;\n@@\n\\(mmget(E)\\|E = F\\)\n"
    assert words(rule) is None
    assert words(rule.replace("E = F", "mmput(E)")) == {"mmget", "mmput"}


def test_statement_disjunction_at_column_0():
    rule = "@r@\nexpression E;\n@@\n(\nmmget(E);\n|\nE++;\n)\n"
    assert words(rule) is None
    assert words(rule.replace("E++;", "mmput(E);")) == {"mmget", "mmput"}


def test_words_only_in_when_clauses_do_not_count():
    rule = "@r exists@\nexpression E;\n@@\n... when != mmget(E)\nE = 1;\n"
    assert words(rule) is None


def test_optional_pattern_does_not_count_required_does():
    optional = "@r@\nexpression E;\n@@\nf(E) {\n<... mmget(E) ...>\n}\n"
    assert "f" in words(optional)       # f() is there whatever the body holds
    free = "@r@\nexpression E;\nidentifier fn;\n@@\nfn(E) {\n<... mmget(E) ...>\n}\n"
    assert words(free) is None
    assert words(free.replace("<...", "<+...").replace("...>", "...+>")) == {"mmget"}
    assert words("@r@\nexpression E;\n@@\n? mmget(E);\n") is None


def test_anchored_rule_needs_a_confined_anchor():
    anchored = ("@a@\nexpression E;\nposition p;\n@@\nmmget@p(E)\n"
                "@b@\nposition a.p;\nexpression E, F;\n@@\nE@p = F\n")
    assert words(anchored) == {"mmget"}
    # The anchor used only in a when clause anchors nothing.
    assert words(anchored.replace("E@p = F", "... when != E@p\nE = F")) is None
    # An anchor on a rule that is not there, or on a script rule.
    assert words(anchored.replace("position a.p", "position z.p")) is None
    # An anchor in one branch of a disjunction bounds that branch only.
    branch = anchored.replace("E@p = F", "\\(E@p\\|E = F\\)")
    assert words(branch) is None
    assert words(branch.replace("E = F", "mmput(E)")) == {"mmget", "mmput"}
    script = ("@script:python s@\np;\n@@\ncoccinelle.p = None\n"
              "@b@\nposition s.p;\nexpression E, F;\n@@\nE@p = F\n")
    assert words(script) is None


def test_position_sets_anchor_when_every_member_does():
    rule = ("@a@\nposition p;\n@@\nmmget@p(...)\n@c@\nposition p;\nexpression E;\n@@\nE@p = 1\n"
            "@b@\nposition q = {a.p, c.p};\nexpression E;\n@@\nE@q\n")
    assert words(rule) is None          # c is not confined: b is not anchored
    assert words(rule.replace("E@p = 1", "mmput@p(E)")) == {"mmget", "mmput"}


def test_virtual_identifiers_and_sets():
    rule = "@r@\nidentifier virtual.fld;\nexpression X, E;\n@@\nX->fld = E\n"
    assert words(rule, "fld=owner") == {"owner"}
    assert words(rule) == frozenset()           # without a value spatch skips the rule
    rule = "@r@\nidentifier hold = {bind, attach};\nexpression E;\n@@\nhold(E)\n"
    assert words(rule) == {"bind", "attach"}
    rule = "@r@\nidentifier f : script:python() { f in X };\nexpression E;\n@@\nf(E)\n"
    assert words(rule) is None


def test_isomorphisms_and_literals():
    # X == NULL matches !X (standard.iso): NULL is no evidence.
    assert words("@r@\nexpression X;\n@@\nX == NULL\n") is None
    assert words("@r@\nexpression E;\n@@\nif (unlikely(E)) mmput(E);\n") == {"mmput"}
    # A "//" in a string starts no comment: the branch after it still counts.
    rule = '@r@\nexpression E, F;\n@@\n\\(mmget(E, "a//b") \\| E = F\n\\)\n'
    assert words(rule) is None
    # A when clause that goes on to the next line: not read as pattern.
    rule = "@r exists@\nexpression E;\n@@\n... when != foo(E,\n       bar)\nE = 1;\n"
    assert words(rule) is None


def test_every_word_of_standard_iso_is_known():
    """The isomorphisms' own words are KEYWORDS or ISO_WORDS: a new one in
    spatch's standard.iso must be added to ISO_WORDS."""
    path = "/usr/lib/coccinelle/standard.iso"
    text = prune._uncommented(open(path).read())
    marks = list(prune.RULE_LINE.finditer(text))
    found = set()
    for k in range(0, len(marks), 2):
        metas = set(prune.IDENT.findall(text[marks[k].end():marks[k + 1].start()]))
        end = marks[k + 2].start() if k + 2 < len(marks) else len(text)
        found |= set(prune.IDENT.findall(text[marks[k + 1].end():end])) - metas
    kinds = {"ArgExpression", "Declaration", "Expression", "Statement", "TestExpression",
             "ToTestExpression", "TopLevel", "Type"}
    assert found - kinds - prune.KEYWORDS == set(prune.ISO_WORDS)


def test_malformed_rules_prune_nothing():
    assert words("@r@\nexpression E;\n@@\n\\(mmget(E)\\|mmput(E)\n") is None
    assert words("@r@\nexpression E;\n@@\nmmget(E) \\)\n") is None
    assert words("@r@\nexpression E;\n") is None


# --- Blanking the bodies ---------------------------------------------------------

C_FILE = """\
#include <linux/mm.h>
struct holder __attribute__((packed)) {
\tint x;
};
static const struct ops ops = {
\t.run = run,
};
static int idle(int a)
{
\treturn a + 1;  /* kthread_use_mm in a comment */
}
static void borrow(struct holder *h)
{
\tkthread_use_mm(h->mm);
}
static void quoted(void)
{
\tpr_info("kthread_use_mm");
}
#define BORROW(h) kthread_use_mm((h)->mm)
static void by_macro(struct holder *h)
{
\tBORROW(h);
}
static int kthread_use_mm_stub(void)
{
\treturn 0;
}
static int kthread_use_mm(void)
{
\treturn 0;
}
static void with_ifdef(void)
{
#ifdef CONFIG_X
\tidle(1);
#endif
}
"""


def body(text, name):
    m = re.search(r"\b%s\([^)]*\)\s*\{(.*?)\n\}" % name, text, re.S)
    return m.group(1)


def test_only_bodies_without_words_are_blanked():
    out = prune.prune(C_FILE, frozenset({"kthread_use_mm"}))
    assert len(out) == len(C_FILE) and out.count("\n") == C_FILE.count("\n")
    assert body(out, "idle").strip() == ""
    assert body(out, "quoted").strip() == ""         # the word is in a string
    assert body(out, "borrow") == body(C_FILE, "borrow")
    assert body(out, "by_macro") == body(C_FILE, "by_macro")   # the macro names it
    assert body(out, "with_ifdef") == body(C_FILE, "with_ifdef")
    # A pattern may name the function: a word in the head keeps the body.
    assert body(out, "kthread_use_mm") == body(C_FILE, "kthread_use_mm")
    assert body(out, "kthread_use_mm_stub").strip() == ""
    assert "\tint x;" in out and ".run = run," in out
    # Everything outside the blanked bodies is byte for byte the file.
    for a, b in zip(C_FILE.split("\n"), out.split("\n")):
        assert a == b or not b.strip() or b.strip() in ("{", "}") or a.startswith("\t")


def test_columns_and_crlf_are_kept():
    text = C_FILE.replace("\n", "\r\n")
    out = prune.prune(text, frozenset({"kthread_use_mm"}))
    assert out.count("\r\n") == text.count("\r\n") and len(out) == len(text)
    assert out.index("kthread_use_mm(h->mm)") == text.index("kthread_use_mm(h->mm)")


@pytest.mark.parametrize("damage", [
    # A branch of an #if that does not balance its braces.
    "#ifdef A\nstatic int f(int a) {\n#else\nstatic int f(long a) {\n#endif\n\treturn 0;\n}\n",
    # One brace too many, one too few.
    "static int f(void)\n{\n\treturn 0;\n}\n}\n",
    "static int f(void)\n{\n\treturn 0;\n",
])
def test_untrusted_braces_prune_nothing(damage):
    text = C_FILE + damage
    assert prune.prune(text, frozenset({"kthread_use_mm"})) == text


def test_none_prunes_nothing():
    assert prune.prune(C_FILE, None) == C_FILE


# --- The same facts, pruned or not ------------------------------------------------

def fixture_files():
    out = []
    for top, _, names in os.walk(FIXTURES):
        out += [os.path.relpath(os.path.join(top, n), FIXTURES) for n in names
                if n.endswith((".c", ".h"))]
    return sorted(out)


def both_ways(rule, files, defines=()):
    runs = []
    for pruned in (False, True):
        runner = facts.FactRunner(FIXTURES, jobs=2, cache=None, pruned=pruned)
        found, failed = runner.run(os.path.join(COCCI, rule), files, list(defines))
        runs.append((sorted(json.dumps(f, sort_keys=True) for f in found), sorted(failed)))
    return runs


def test_fixture_facts_do_not_change():
    files = fixture_files()
    sites = os.path.join(COCCI, "audit_sites.cocci")
    pruned = [rel for rel in files
              if prune.prune(open(os.path.join(FIXTURES, rel), encoding="latin-1").read(),
                             prune.rule_file_words(sites)) !=
              open(os.path.join(FIXTURES, rel), encoding="latin-1").read()]
    assert len(pruned) >= 20, "the fixtures must exercise the pruning"
    plain, cut = both_ways("audit_sites.cocci", files)
    assert plain == cut and len(plain[0]) > 100
    found = [json.loads(f) for f in plain[0]]
    for field in sorted({f["field"] for f in found if f["kind"] == "owner"}):
        plain, cut = both_ways("audit_stores.cocci", files, ["fld=" + field])
        assert plain == cut, field
    for f in sorted({(f["callee"], f.get("field", "")) for f in found
                     if f["kind"] in ("param", "owner_param")}):
        defines = ["callee=" + f[0]] + (["sub=" + f[1]] if f[1] else [])
        plain, cut = both_ways("audit_callers.cocci", files, defines)
        assert plain == cut, defines


@pytest.mark.parametrize("series", ["6.12", "6.1"])
def test_real_tree_audit_does_not_change(series):
    tree = support.kernel_tree(series)
    plain, _ = audit.audit(tree, jobs=2, risk=False, use_git=False, pruned=False)
    cut, _ = audit.audit(tree, jobs=2, risk=False, use_git=False)
    assert json.dumps(plain, sort_keys=True) == json.dumps(cut, sort_keys=True)
    assert plain["sites"]


def test_damaged_c_keeps_its_shape():
    """Random damage to real fixture files: prune never fails, and only
    turns characters other than line ends into spaces, inside bodies."""
    rng = random.Random(20261126)
    sources = [open(os.path.join(FIXTURES, rel), encoding="latin-1").read()
               for rel in fixture_files()[:40]] + [C_FILE]
    words = frozenset({"kthread_use_mm", "mmget"})
    pruned = 0
    for n in range(400):
        text = list(rng.choice(sources))
        for _ in range(rng.randint(1, 6)):
            k = rng.randrange(len(text) + 1)
            text[k:k + rng.randint(0, 3)] = rng.choice(["{", "}", "(", ")", "#if X\n", "#endif\n",
                                                        "\\\n", "/*", "\"", "\0", "\xff", ";"])
        text = "".join(text)
        out = prune.prune(text, words)
        assert len(out) == len(text), n
        changed = [i for i, (a, b) in enumerate(zip(text, out)) if a != b]
        assert all(out[i] == " " and text[i] not in "\r\n" for i in changed), n
        pruned += bool(changed)
    assert pruned > 50


def test_long_heads_and_many_directives_stay_quick():
    deep = "int f" + "(" * 20000 + ")" * 20000 + "\n{\n\treturn 0;\n}\n"
    assert prune.prune(deep, frozenset({"mmget"})) == deep
    many = "".join("#define M%d %d\nstatic int f%d(void)\n{\n\treturn %d;\n}\n" % (k, k, k, k)
                   for k in range(20000))
    out = prune.prune(many, frozenset({"mmget"}))
    assert len(out) == len(many) and "return 7;" not in out
