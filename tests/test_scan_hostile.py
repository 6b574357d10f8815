"""The text scan on hostile input: C that fools a naive comment stripper,
and file names that fool a line-based reading of grep's output.

Each test marked FAILED-BEFORE failed before the fix: run on a copy of
HEAD d519b71 (`git archive HEAD`, so scan.py and audit.py of that commit),
for the reason its docstring gives. Tests marked GUARD passed before too, or
failed only because the function they call is new; they pin down cases the
new scanner must keep right."""

import functools
import json
import os
import random
import re
import shutil

import pytest

import support
from mmaudit_lib import UsageError, scan

FIXTURES = os.path.join(support.ROOT, "tests", "fixtures", "scan")
KUM = "kthread_use_mm"
BORROW = b"struct c { struct mm_struct *mm; };\nvoid f(struct c *x) { kthread_use_mm(x->mm); }\n"
STORE = b"struct c { struct mm_struct *mm; };\nvoid s(struct c *x, struct mm_struct *m) { x->mm = m; }\n"
CALLER = b"void h(struct mm_struct *m) { borrow_it(m); }\n"


def calls(name):
    return scan.textual_borrows(FIXTURES, name)


# --- blank_non_code: comments, literals, #if 0 -------------------------------

def test_char_literal_quote_does_not_start_a_string():
    """FAILED-BEFORE: '"' opened a string that blanked the borrow after it."""
    assert calls("char_quote.c") == [(5, 18, KUM, False)]


def test_escaped_quotes_in_strings_and_chars():
    """FAILED-BEFORE: '\\"' opened a string (line 6). Lines 7 and 8 hold '\\''
    and '\\\\', which a scanner without escapes gets wrong."""
    assert calls("escaped_quotes.c") == [(6, 16, KUM, False), (7, 16, KUM, False),
                                         (8, 16, KUM, False)]


def test_comment_markers_inside_a_string():
    """GUARD: "/*", "//" and "*/" in strings comment nothing out."""
    assert calls("comment_in_string.c") == [(6, 1, KUM, False)]


def test_quotes_inside_comments():
    """GUARD: a lone " or ' in a comment opens no literal."""
    assert calls("quote_in_comment.c") == [(6, 1, KUM, False)]


def test_line_comment_continued_by_a_backslash():
    """FAILED-BEFORE: line 6 is the comment's continuation, not a call."""
    assert calls("line_comment_continued.c") == [(7, 1, KUM, False)]


def test_crlf_lines_and_a_continued_comment():
    """FAILED-BEFORE: a backslash before CR LF splices too."""
    assert calls("crlf.c") == [(7, 1, KUM, False)]


def test_if0_with_nested_if_and_else():
    """FAILED-BEFORE: calls inside #if 0 (nested #ifdef/#else included) were
    listed; #else and #elif of the #if 0 are live again."""
    assert calls("if0_nested_else.c") == [(14, 1, KUM, False), (16, 1, KUM, False),
                                          (23, 1, KUM, False)]


def test_if0_means_literally_zero():
    """FAILED-BEFORE (line 6). #if 01, #if 0x1 and #if 0 || X are not dead:
    their calls stay (spatch skips them, so they come out unanalyzed rather
    than unseen)."""
    assert [c[0] for c in calls("if0_literal.c")] == [9, 12, 15, 18]


def test_real_call_after_every_trap_keeps_line_and_column():
    """FAILED-BEFORE: the continued comment (line 5) and the #if 0 block
    (line 10) gave calls."""
    assert calls("everything.c") == [(14, 38, KUM, False)]


def test_define_continued_inside_a_comment():
    """FAILED-BEFORE: the old stripper blanked the splice's backslash inside a
    comment, so the #define seemed to end there; and a #define inside a
    comment was taken for the enclosing macro."""
    assert calls("macro_comment_splice.c") == [(3, 7, KUM, True), (7, 4, KUM, True)]
    assert scan.enclosing_macro(FIXTURES, "macro_comment_splice.c", 3) == "BORROW"
    assert scan.enclosing_macro(FIXTURES, "macro_comment_splice.c", 7) == "OTHER"


@pytest.mark.parametrize("name", sorted(os.listdir(FIXTURES)))
def test_blanking_keeps_offsets_and_lines(name):
    """FAILED-BEFORE (blank_non_code is new): every character stays or
    becomes one space; newlines never move."""
    with open(os.path.join(FIXTURES, name), "rb") as f:
        text = f.read().decode("latin-1")
    blanked = scan.blank_non_code(text)
    assert len(blanked) == len(text)
    assert all(b == t or (b == " " and t != "\n") for b, t in zip(blanked, text))


def test_digit_separators_and_prefixed_chars():
    """GUARD (failed before only as blank_non_code is new): 1'000 holds no
    char literal; u8'a' and L'\\'' are ones."""
    text = "n = 1'000; c = u8'a'; d = L'\\''; kthread_use_mm(m); e = 'x';"
    blanked = scan.blank_non_code(text)
    assert "1'000" in blanked and "kthread_use_mm(m)" in blanked
    assert "'a'" not in blanked and "'x'" not in blanked


def test_directive_spelled_over_a_splice_and_comments():
    """GUARD (failed before only as blank_non_code is new): `# if /* c */ 0`
    and `#if 0 \\ (newline)` are #if 0; `#if 0 \\ (newline) || X` is not."""
    dead = "#  if /* c */ 0\nkthread_use_mm(a);\n#endif\n#if 0 \\\n\nkthread_use_mm(b);\n#endif\n"
    live = "#if 0 \\\n || X\nkthread_use_mm(c);\n#endif\n"
    assert KUM not in scan.blank_non_code(dead)
    assert KUM in scan.blank_non_code(live)


# --- grep output and odd file names ----------------------------------------

ODD_BORROWERS = [b"ok.c", b"a\nb.c", b"tab\t.c", b"-x.c", b" lead.c", b"sp ace.c",
                 b"..x.c", b"x\n./y.c", b"bad\xff.c", b"sub\ndir/in.c"]   # x\n. is a directory
DECOY = b"zz\nXXok.c"       # no borrow: read line by line it was "ok.c": 0


def odd_tree(root, content=BORROW + STORE + CALLER):
    """A tree whose C files have hostile names; returns its path."""
    tree = os.path.join(os.fsencode(str(root)), b"tree")
    for name in ODD_BORROWERS:
        os.makedirs(os.path.dirname(os.path.join(tree, name)), exist_ok=True)
        with open(os.path.join(tree, name), "wb") as f:
            f.write(content)
    with open(os.path.join(tree, DECOY), "wb") as f:
        f.write(b"int decoy;\n")
    return os.fsdecode(tree)


def expected_names(names):
    return sorted(os.fsdecode(n) for n in names)


def test_borrow_files_reads_names_with_any_byte(tmp_path):
    """FAILED-BEFORE: "a\\nb.c" came back as "c", and so on."""
    tree = odd_tree(tmp_path)
    searched, found, unreadable = scan.borrow_files(tree)
    assert found == expected_names(ODD_BORROWERS)
    assert searched == len(ODD_BORROWERS) + 1 and unreadable == []
    for rel in found:
        assert scan.textual_borrows(tree, rel) == [(2, 22, KUM, False)]


def test_store_and_caller_files_read_names_with_any_byte(tmp_path):
    """GUARD (grep -l -Z was right already)."""
    tree = odd_tree(tmp_path)
    assert scan.store_files(tree, {"mm": {"c"}}) == expected_names(ODD_BORROWERS)
    assert scan.caller_files(tree, "borrow_it") == expected_names(ODD_BORROWERS)


@pytest.fixture
def fake_grep(tmp_path, monkeypatch):
    """Put a grep first on PATH that prints what the test sets."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "grep"
    script.write_text('#!/bin/sh\nd=$(dirname "$0")\ncat "$d/out"; cat "$d/err" >&2\n'
                      'exit $(cat "$d/rc")\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))

    def set_output(out, err=b"", rc=0):
        (bin_dir / "out").write_bytes(out)
        (bin_dir / "err").write_bytes(err)
        (bin_dir / "rc").write_text(str(rc))
    return set_output


def test_decoy_name_does_not_overwrite_a_count(tmp_path, fake_grep):
    """FAILED-BEFORE: the decoy's record, split at its newline, read as
    "ok.c": 0 and hid ok.c."""
    (tmp_path / "ok.c").write_bytes(BORROW)
    fake_grep(b"./ok.c\x001\n./zz\nXXok.c\x000\n", rc=0)
    assert scan.borrow_files(str(tmp_path)) == (2, ["ok.c"], [])


def test_unreadable_names_with_newlines(tmp_path, fake_grep):
    """FAILED-BEFORE: grep prints the raw name in its complaint, newline and all."""
    (tmp_path / "ok.c").write_bytes(BORROW)
    fake_grep(b"./ok.c\x001\n",
              b"grep: ./locked\nx.c: Permission denied\ngrep: ./closed\ndir: Permission denied\n",
              rc=2)
    assert scan.borrow_files(str(tmp_path)) == (1, ["ok.c"], ["closed\ndir", "locked\nx.c"])


def test_unknown_grep_complaint_is_not_swallowed(tmp_path, fake_grep):
    """GUARD: a complaint the scan does not know still stops the run."""
    fake_grep(b"", b"grep: memory exhausted\ngrep: ./l.c: Permission denied\n", rc=2)
    with pytest.raises(UsageError, match="memory exhausted"):
        scan.borrow_files(str(tmp_path))


def test_store_files_skips_a_file_that_vanished(tmp_path, fake_grep):
    """FAILED-BEFORE: open() of a file grep had listed raised."""
    (tmp_path / "real.c").write_bytes(STORE)
    fake_grep(b"./gone.c\x00./real.c\x00", rc=0)
    unreadable = set()
    assert scan.store_files(str(tmp_path), {"mm": {"c"}}, unreadable) == ["real.c"]
    assert unreadable == {"gone.c"}
    assert scan.store_files(str(tmp_path), {"mm": {"c"}}) == ["real.c"]


def test_spatch_can_take():
    """FAILED-BEFORE (spatch_can_take is new)."""
    assert scan.spatch_can_take("ok.c") is None
    assert scan.spatch_can_take("tab\t -x.c") is None
    assert "not UTF-8" in scan.spatch_can_take(os.fsdecode(b"bad\xff.c"))
    assert "newline" in scan.spatch_can_take("a\nb.c")


# --- end to end --------------------------------------------------------------

def audit_json(tree):
    proc = support.run_mmaudit("audit", "-q", "--format", "json", "--no-cache", tree)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_audit_lists_a_site_for_every_odd_name(tmp_path):
    """FAILED-BEFORE: a traceback (the file "c" of "a\\nb.c" did not exist).

    The newline reason needs audit to ask scan.spatch_can_take() which files
    spatch can take (wired in facts.py). Borrows only: a store in such a
    file is reported by audit.py, which this test leaves alone."""
    data = audit_json(odd_tree(tmp_path, BORROW))
    sites = {s["file"]: s for s in data["sites"]}
    shown = [os.fsdecode(n).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
             for n in ODD_BORROWERS]
    assert sorted(sites) == sorted(shown)
    assert data["stats"]["files_searched"] == len(ODD_BORROWERS) + 1
    for name, site in sites.items():
        if "\n" in name:
            assert site["verdict"] == "unanalyzed"
            assert site["reason"] == ("the file name contains a newline, "
                                      "which spatch's --file-groups cannot take")
        elif "\\xff" in name:
            assert site["verdict"] == "unanalyzed" and "not UTF-8" in site["reason"]
        else:
            assert site["verdict"] != "unanalyzed", site


def test_audit_sees_calls_as_the_compiler_does(tmp_path):
    """FAILED-BEFORE: the borrow after '"' was dropped, and the calls in
    #if 0 were parse failures."""
    for name in ("char_quote.c", "if0_nested_else.c"):
        shutil.copy(os.path.join(FIXTURES, name), tmp_path)
    data = audit_json(str(tmp_path))
    got = [(s["file"], s["line"], s["column"], s["verdict"] == "unanalyzed")
           for s in data["sites"]]
    # spatch does not see the #elif branch of an #if 0 (line 23): unanalyzed, not unseen.
    assert got == [("char_quote.c", 5, 18, False), ("if0_nested_else.c", 14, 1, False),
                   ("if0_nested_else.c", 16, 1, False), ("if0_nested_else.c", 23, 1, True)]


@pytest.mark.parametrize("store", ["c->mm\n\t= get_task_mm(current);",
                                   "c->\n\tmm = get_task_mm(current);",
                                   "c -> mm =\n\tget_task_mm(current);"])
def test_store_split_over_lines_is_found(tmp_path, store):
    """FAILED-BEFORE (the first): grep reads a line at a time, and "mm"
    and "=" on two lines matched no line."""
    (tmp_path / "split.c").write_text("void f(struct c *c)\n{\n\t%s\n}\n" % store)
    (tmp_path / "other.c").write_text("int mm;\n")
    assert scan.store_files(str(tmp_path), {"mm": {"c"}}) == ["split.c"]
    assert scan.store_files(str(tmp_path), {"mm": {"c"}}, jobs=2) == ["split.c"]


def test_calls_split_after_the_name_are_found(tmp_path):
    """FAILED-BEFORE: grep reads a line at a time; "kthread_use_mm" and its
    "(" on two lines matched no line, and the borrow was never seen."""
    (tmp_path / "split.c").write_text("void f(struct mm_struct *mm)\n{\n\tkthread_use_mm\n"
                                      "\t\t(mm);\n\thelper\n\t(mm);\n}\n")
    (tmp_path / "comment.c").write_text("/* kthread_use_mm is not called here */\n")
    for jobs in (1, 2):
        assert scan.borrow_files(str(tmp_path), jobs) == (2, ["split.c"], [])
        assert scan.caller_files(str(tmp_path), "helper", jobs=jobs) == ["split.c"]
    assert scan.textual_borrows(str(tmp_path), "split.c") == [(3, 1, "kthread_use_mm", False)]


def test_store_check_is_the_plain_pattern():
    """scan._stores_to() searches for the field's name first; it must say
    what (->|\\.)\\s*fld\\s*=[^=] says, on any text."""
    plain = re.compile(r"(->|\.)\s*mm\s*=[^=]")
    fast = functools.partial(scan._stores_to, re.compile(r"mm\s*=(?=[^=])"))
    rng = random.Random(20261126)
    pieces = ["->", ".", " ", "\n", "\t", "mm", "=", "==", "x", "m", "\x85", "\xa0", "(", "*",
              "_", "\x1c", "-", ">"]
    for _ in range(100000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert bool(plain.search(text)) == fast(text), repr(text)
