"""The architectures whose TLB code trusts mm_users
(scripts/mmaudit_lib/arches.py, cocci/arch_shortcuts.cocci, `mmaudit
arches`): a made-up tree with one architecture that has shortcuts and one
whose reads of mm_users are all debug checks, assertions or not TLB code,
the files that must fail closed, the cache, and the Debian 6.1 and 6.12
trees."""

import json
import os
import re
import sys

import pytest

import support

sys.path.insert(0, os.path.join(support.ROOT, "scripts"))
from mmaudit_lib import arches, facts  # noqa: E402

FIXTURE = os.path.join(support.ROOT, "tests", "fixtures", "arches")


@pytest.fixture(scope="module")
def fixture_table():
    return arches.shortcuts(FIXTURE)


def _rows(table):
    return [(arch, e.file, e.line, e.function, e.kind, e.test)
            for arch, entries in table.items() for e in entries]


# --------------------------------------------------------------------------
# The made-up tree

def test_fixture_shortcuts(fixture_table):
    """foo's flush code trusts mm_users in every way the rule knows; bar's
    reads are all left out, and qux only initialises mm_users."""
    assert _rows(fixture_table) == [
        ("foo", "arch/foo/include/asm/tlbflush.h", 11, "foo_flush_tlb_mm", "single user",
         "mm_users == 1"),          # the #else of #ifdef CONFIG_DEBUG_VM, "1 == ..."
        ("foo", "arch/foo/kernel/range.c", 6, "foo_flush_tlb_range", "single user",
         "mm_users == 1"),          # bool single = ...;
        ("foo", "arch/foo/kernel/range.c", 18, "foo_flush_tlb_kernel_range", "single user",
         "mm_users <= 1"),          # single = ...;
        ("foo", "arch/foo/kernel/smp.c", 7, "flush_tlb_mm", "dying mm", "mm_users == 0"),
        ("foo", "arch/foo/kernel/smp.c", 11, "flush_tlb_mm", "single user", "mm_users != 1"),
        ("foo", "arch/foo/kernel/smp.c", 22, "flush_tlb_page", "single user",
         "mm_users <= 1"),          # 2 > atomic_read(&(vma->vm_mm)->mm_users)
        ("foo", "arch/foo/kernel/smp.c", 30, "ipi_shootdown", "dying mm",
         "mm_users == 0"),          # while (!atomic_read(...))
        ("foo", "arch/foo/mm/pgtable.c", 6, "free_pte_range", "single user",
         "mm_users > 1"),           # takes a struct mmu_gather
        ("foo", "arch/foo/mm/tlb.c", 6, "single_user", "single user",
         "mm_users <= 1"),          # return ...; in a file named for the TLB
    ]
    assert fixture_table.failed == {}
    assert "bar" not in fixture_table and "qux" not in fixture_table
    assert "arch/qux/kernel/tboot.c" in fixture_table.files


def test_fixture_conditions_as_written(fixture_table):
    """The whole condition, over two lines, without the comment above it."""
    conditions = {(e.file, e.line): e.condition for e in fixture_table["foo"]}
    assert conditions[("arch/foo/kernel/smp.c", 11)] == \
        "(atomic_read(&mm->mm_users) != 1) || (current->mm != mm)"
    assert conditions[("arch/foo/kernel/smp.c", 30)] == "!atomic_read(&mm->mm_users)"
    assert conditions[("arch/foo/kernel/range.c", 6)] == "atomic_read(&mm->mm_users) == 1"


def test_fixture_excluded(fixture_table):
    """Every other read is listed with the reason it does not count; the
    comment and the #if 0 block are no reads at all."""
    why = {(e.file, e.line): e.reason for e in fixture_table.excluded}
    expected = {
        ("arch/bar/include/asm/mmu_context.h", 8): "arguments of BUG_ON()",
        ("arch/bar/include/asm/mmu_context.h", 14): "arguments of VM_BUG_ON_MM()",
        ("arch/bar/include/asm/mmu_context.h", 15): "arguments of WARN_ON_ONCE()",
        ("arch/bar/kernel/smp.c", 8): "bar_switch_mm() is not TLB flush",
        ("arch/bar/kernel/smp.c", 10): "bar_switch_mm() is not TLB flush",
        ("arch/bar/mm/pgtable.c", 7): "returns before it unless CONFIG_DEBUG_VM",
        ("arch/bar/mm/pgtable.c", 14): "condition tests CONFIG_DEBUG_VM",
        ("arch/bar/mm/pgtable.c", 17): "under #if CONFIG_DEBUG_VM",      # #if IS_ENABLED()
        ("arch/bar/mm/pgtable.c", 23): "under #if CONFIG_DEBUG_VM",      # #else of #ifndef
        ("arch/foo/include/asm/tlbflush.h", 8): "under #if CONFIG_DEBUG_VM",
        ("arch/foo/kernel/smp.c", 37): "init_new_context() is not TLB flush",
        ("arch/foo/mm/pgtable.c", 14): "free_pmd_range() is not TLB flush",
        ("arch/foo/mm/tlb.c", 11): "not compared with a constant",
        ("arch/foo/mm/tlb.c", 13): "mm_users > 3 tells neither",
        ("arch/foo/mm/tlb.c", 15): "mm_users == 2 tells neither",
        ("arch/foo/mm/tlb.c", 17): "not compared with a constant",
    }
    assert sorted(why) == sorted(expected)
    for key, words in expected.items():
        assert words in why[key], (key, why[key])


def test_arch_names():
    """Directories of arch/ with a Kconfig; arch/include is none."""
    assert arches.arch_names(FIXTURE) == ["bar", "foo", "qux"]


def test_no_arch_directory(tmp_path):
    assert arches.arch_names(str(tmp_path)) == []
    table = arches.shortcuts(str(tmp_path))
    assert table == {} and table.failed == {} and table.excluded == []


@pytest.mark.parametrize("op, value, test", [
    ("==", "0", "mm_users == 0"), ("<", "1", "mm_users == 0"), ("<=", "0", "mm_users == 0"),
    ("!=", "0", "mm_users != 0"), (">", "0", "mm_users != 0"), (">=", "1", "mm_users != 0"),
    ("==", "1", "mm_users == 1"), ("!=", "1U", "mm_users != 1"),
    ("<=", "1", "mm_users <= 1"), ("<", "2", "mm_users <= 1"), ("<", "0x2", "mm_users <= 1"),
    (">", "1", "mm_users > 1"), (">=", "2", "mm_users > 1"),
    ("==", "2", None), ("<=", "2", None), (">", "3", None), ("<", "0", None),
    ("==", "N", None), ("==", "'1'", None),
])
def test_normalised_test(op, value, test):
    assert arches.test_of(op, value) == test


def test_kinds():
    assert [arches.kind_of(t) for t in ("mm_users == 0", "mm_users != 0")] == ["dying mm"] * 2
    assert {arches.kind_of(t) for t in ("mm_users == 1", "mm_users != 1", "mm_users <= 1",
                                        "mm_users > 1")} == {"single user"}


# --------------------------------------------------------------------------
# Fail closed

def _tree(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for arch in {rel.split("/")[1] for rel in files}:
        (tmp_path / "arch" / arch / "Kconfig").write_text("")
    return str(tmp_path)


def test_read_in_a_macro_fails(tmp_path):
    """What a test in a macro body decides depends on where the macro is
    used: the file fails, it is not left out."""
    tree = _tree(tmp_path, {"arch/m/mm/tlb.c": (
        "#define single_user(mm) (atomic_read(&(mm)->mm_users) == 1)\n\n"
        "void flush_tlb_mm(struct mm_struct *mm)\n{\n\tif (single_user(mm))\n\t\treturn;\n"
        "\tflush_all(mm);\n}\n")})
    table = arches.shortcuts(tree)
    assert table == {} and table.excluded == []
    assert list(table.failed) == ["arch/m/mm/tlb.c"]
    assert "line 1" in table.failed["arch/m/mm/tlb.c"]
    assert "macro single_user()" in table.failed["arch/m/mm/tlb.c"]


def test_read_spatch_cannot_parse_fails(tmp_path):
    """A read in a function spatch drops makes its file fail, naming the line;
    the other file's shortcut is still found."""
    tree = _tree(tmp_path, {
        "arch/m/mm/tlb.c": ("void flush_tlb_page(struct mm_struct *mm)\n{\n"
                            "\tif (atomic_read(&mm->mm_users) == 0)\n\t\treturn;\n"
                            "\tasm volatile ( \"x\" : : : ) ) ;\n}\n"),
        "arch/n/mm/tlb.c": ("void flush_tlb_page(struct mm_struct *mm)\n{\n"
                            "\tif (atomic_read(&mm->mm_users) == 0)\n\t\treturn;\n}\n")})
    table = arches.shortcuts(tree)
    assert list(table) == ["n"]
    assert list(table.failed) == ["arch/m/mm/tlb.c"]
    assert "the mm_users read at line 3 was not analyzed" in table.failed["arch/m/mm/tlb.c"]


def test_unfinished_file_fails(tmp_path, monkeypatch):
    """A spatch run that does not reach the rule's last fact gives nothing
    for the file: it fails, its shortcuts are not dropped in silence."""
    with open(arches.RULE) as f:
        text = f.read()
    rule = tmp_path / "no_done.cocci"
    rule.write_text(text[:text.index("// Last rule")])
    monkeypatch.setattr(arches, "RULE", str(rule))
    table = arches.shortcuts(FIXTURE)
    assert table == {} and table.excluded == []
    assert sorted(table.failed) == sorted(table.files) and len(table.files) == 9
    assert set(table.failed.values()) == {"spatch did not finish this file"}


def test_cache(tmp_path, monkeypatch, fixture_table):
    """The second scan takes every fact from the cache: spatch sees no file."""
    seen = []
    real = facts.FactRunner._spatch

    def spy(self, rule, files, defines, started=None):
        seen.append(list(files))
        return real(self, rule, files, defines, started)
    monkeypatch.setattr(facts.FactRunner, "_spatch", spy)
    cache = facts.FactCache(str(tmp_path / "facts"))
    first = arches.shortcuts(FIXTURE, cache=cache)
    second = arches.shortcuts(FIXTURE, cache=facts.FactCache(str(tmp_path / "facts")))
    assert len(seen) == 1 and len(seen[0]) == 9      # no spatch run the second time
    for table in (first, second):
        assert table == fixture_table
        assert table.excluded == fixture_table.excluded and table.failed == {}


# --------------------------------------------------------------------------
# mmaudit arches

def test_cli_text():
    proc = support.run_mmaudit("arches", "-j", "1", "--no-cache", FIXTURE)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0].split() == ["arch", "file:line", "function", "kind", "condition"]
    row = [line for line in lines if "arch/foo/kernel/smp.c:11 " in line]
    assert len(row) == 1 and re.match(
        r"foo +arch/foo/kernel/smp\.c:11 +flush_tlb_mm\(\) +single user +"
        r"\(atomic_read\(&mm->mm_users\) != 1\) \|\| \(current->mm != mm\)  "
        r"\[mm_users != 1\]$", row[0]), row
    assert len(lines) == 1 + 9 + 1 + 1 + 1 + 1 + 16 + 1     # the rows, the summary, the reads
    assert "1 of 3 architectures skip or narrow a TLB flush on mm_users: foo" in lines
    assert "  arch/bar/include/asm/mmu_context.h:8 init_new_context(): in the arguments of " \
        "BUG_ON(): an assertion, not a flush decision" in lines


def test_cli_json():
    proc = support.run_mmaudit("arches", "--format", "json", FIXTURE)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "mmaudit-arches/1"
    assert doc["architectures"] == ["bar", "foo", "qux"]
    assert doc["shortcuts"][3] == {"arch": "foo", "file": "arch/foo/kernel/smp.c", "line": 7,
                                   "function": "flush_tlb_mm",
                                   "condition": "atomic_read(&mm->mm_users) == 0",
                                   "kind": "dying mm", "test": "mm_users == 0"}
    assert len(doc["shortcuts"]) == 9 and len(doc["excluded"]) == 16
    assert doc["files_scanned"] == 9 and doc["files_failed"] == []


def test_cli_failed_file_exits_1(tmp_path):
    tree = _tree(tmp_path, {"arch/m/mm/tlb.c": (
        "#define single_user(mm) (atomic_read(&(mm)->mm_users) == 1)\n")})
    proc = support.run_mmaudit("arches", "--no-cache", tree)
    assert proc.returncode == 1, proc.stderr
    assert "Files not analyzed" in proc.stdout and "arch/m/mm/tlb.c:" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/tree"], "/nonexistent/tree: no such file or directory"),
    (["-j", "0", FIXTURE], "-j 0: expected 1 or more"),
    (["EMPTY"], "no arch/ directory"),
])
def test_cli_errors(tmp_path, args, message):
    args = [str(tmp_path) if a == "EMPTY" else a for a in args]
    proc = support.run_mmaudit("arches", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


# --------------------------------------------------------------------------
# The Debian trees

TABLE_612 = [
    ("alpha", "arch/alpha/kernel/smp.c", 659, "flush_tlb_mm", "single user"),
    ("alpha", "arch/alpha/kernel/smp.c", 705, "flush_tlb_page", "single user"),
    ("alpha", "arch/alpha/kernel/smp.c", 756, "flush_icache_user_page", "single user"),
    ("arc", "arch/arc/mm/tlb.c", 185, "local_flush_tlb_mm", "dying mm"),
    ("loongarch", "arch/loongarch/kernel/smp.c", 690, "flush_tlb_mm", "dying mm"),
    ("loongarch", "arch/loongarch/kernel/smp.c", 695, "flush_tlb_mm", "single user"),
    ("loongarch", "arch/loongarch/kernel/smp.c", 728, "flush_tlb_range", "single user"),
    ("loongarch", "arch/loongarch/kernel/smp.c", 775, "flush_tlb_page", "single user"),
    ("mips", "arch/mips/kernel/smp.c", 545, "flush_tlb_mm", "dying mm"),
    ("mips", "arch/mips/kernel/smp.c", 555, "flush_tlb_mm", "single user"),
    ("mips", "arch/mips/kernel/smp.c", 605, "flush_tlb_range", "single user"),
    ("mips", "arch/mips/kernel/smp.c", 672, "flush_tlb_page", "single user"),
    ("powerpc", "arch/powerpc/mm/book3s64/radix_tlb.c", 805, "flush_type_needed", "single user"),
    ("sh", "arch/sh/kernel/smp.c", 366, "flush_tlb_mm", "single user"),
    ("sh", "arch/sh/kernel/smp.c", 398, "flush_tlb_range", "single user"),
    ("sh", "arch/sh/kernel/smp.c", 441, "flush_tlb_page", "single user"),
    ("sparc", "arch/sparc/mm/srmmu.c", 1675, "smp_flush_tlb_mm", "single user"),
    ("um", "arch/um/kernel/tlb.c", 219, "flush_tlb_all", "dying mm"),
]

TABLE_61 = [
    ("alpha", "arch/alpha/kernel/smp.c", 645, "flush_tlb_mm", "single user"),
    ("alpha", "arch/alpha/kernel/smp.c", 692, "flush_tlb_page", "single user"),
    ("alpha", "arch/alpha/kernel/smp.c", 746, "flush_icache_user_page", "single user"),
    ("arc", "arch/arc/mm/tlb.c", 183, "local_flush_tlb_mm", "dying mm"),
    ("ia64", "arch/ia64/include/asm/tlbflush.h", 85, "flush_tlb_mm", "dying mm"),
    ("ia64", "arch/ia64/kernel/smp.c", 297, "smp_flush_tlb_mm", "single user"),
    ("loongarch", "arch/loongarch/kernel/smp.c", 566, "flush_tlb_mm", "dying mm"),
    ("loongarch", "arch/loongarch/kernel/smp.c", 571, "flush_tlb_mm", "single user"),
    ("loongarch", "arch/loongarch/kernel/smp.c", 604, "flush_tlb_range", "single user"),
    ("loongarch", "arch/loongarch/kernel/smp.c", 651, "flush_tlb_page", "single user"),
    ("mips", "arch/mips/kernel/smp.c", 526, "flush_tlb_mm", "dying mm"),
    ("mips", "arch/mips/kernel/smp.c", 536, "flush_tlb_mm", "single user"),
    ("mips", "arch/mips/kernel/smp.c", 586, "flush_tlb_range", "single user"),
    ("mips", "arch/mips/kernel/smp.c", 653, "flush_tlb_page", "single user"),
    ("powerpc", "arch/powerpc/mm/book3s64/radix_tlb.c", 794, "flush_type_needed", "single user"),
    ("powerpc", "arch/powerpc/mm/hugetlbpage.c", 281, "hugepd_free", "single user"),
    ("sh", "arch/sh/kernel/smp.c", 362, "flush_tlb_mm", "single user"),
    ("sh", "arch/sh/kernel/smp.c", 394, "flush_tlb_range", "single user"),
    ("sh", "arch/sh/kernel/smp.c", 437, "flush_tlb_page", "single user"),
    ("sparc", "arch/sparc/mm/srmmu.c", 1675, "smp_flush_tlb_mm", "single user"),
    ("um", "arch/um/kernel/tlb.c", 536, "flush_tlb_all", "dying mm"),
    ("um", "arch/um/kernel/tlb.c", 564, "fix_range", "dying mm"),
]


@pytest.fixture(scope="module")
def real_tables():
    return {series: (support.kernel_tree(series),
                     arches.shortcuts(support.kernel_tree(series), jobs=2))
            for series in ("6.1", "6.12")}


def _defined_function(lines, line):
    """The function whose body holds LINE, read from the text alone, in
    kernel style: the nearest "{" at column 0 above (with no "}" at column
    0 between), and the name before the first "(" of the header above it."""
    for i in range(line - 2, 0, -1):
        if lines[i].startswith("}"):
            return None
        if lines[i].startswith("{"):
            header = []
            for text in reversed(lines[:i]):
                if not text.strip() or text.rstrip().endswith((";", "}", "*/")) \
                        or text.startswith("#"):
                    break
                header.insert(0, text)
            m = re.search(r"(\w+)\s*\(", " ".join(header))
            return m.group(1) if m else None
    return None


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_real_tree_entries_are_where_they_say(real_tables, series):
    """Every entry's file:line reads mm_users in its condition, inside the
    function it names, in that architecture's directory."""
    tree, table = real_tables[series]
    assert table.failed == {}
    assert table
    for arch, entries in table.items():
        for e in entries:
            assert e.file.startswith("arch/%s/" % arch)
            with open(os.path.join(tree, e.file), encoding="utf-8", errors="replace") as f:
                lines = f.read().split("\n")
            assert "atomic_read(&" in lines[e.line - 1] and "mm_users" in lines[e.line - 1]
            assert _defined_function(lines, e.line) == e.function, (e.file, e.line)
            assert "mm_users" in e.condition
            assert e.condition in " ".join(" ".join(lines[e.line - 3:e.line + 3]).split())


@pytest.mark.parametrize("series, expected", [("6.1", TABLE_61), ("6.12", TABLE_612)])
def test_real_tree_tables(real_tables, series, expected):
    tree, table = real_tables[series]
    assert [(a, e.file, e.line, e.function, e.kind)
            for a, entries in table.items() for e in entries] == expected


def test_ia64_removed_in_67(real_tables):
    """ia64 left the tree in 6.7: a shortcut in 6.1, no directory in 6.12."""
    (tree61, table61), (tree612, table612) = real_tables["6.1"], real_tables["6.12"]
    assert "ia64" in table61 and "ia64" in arches.arch_names(tree61)
    assert "ia64" not in table612 and "ia64" not in arches.arch_names(tree612)
    assert not os.path.exists(os.path.join(tree612, "arch", "ia64"))


def test_both_trees_agree_where_nothing_changed(real_tables):
    """loongarch and arc have shortcuts in both trees; x86 is an
    architecture of both, with none."""
    for series in ("6.1", "6.12"):
        tree, table = real_tables[series]
        assert "loongarch" in table and "arc" in table
        assert "x86" in arches.arch_names(tree) and "x86" not in table
        assert set(table) <= set(arches.arch_names(tree))


def test_real_tree_debug_checks_left_out(real_tables):
    """arm64's check returns unless CONFIG_DEBUG_VM; parisc's is a BUG_ON()."""
    for series in ("6.1", "6.12"):
        _, table = real_tables[series]
        reasons = {e.file: e.reason for e in table.excluded}
        assert "arm64" not in table and "parisc" not in table
        assert "unless CONFIG_DEBUG_VM" in reasons["arch/arm64/include/asm/pgtable.h"]
        assert "BUG_ON()" in reasons["arch/parisc/include/asm/mmu_context.h"]


# --------------------------------------------------------------------------
# Nothing hard-coded

OWN_FILES = ["scripts/mmaudit_lib/arches.py", "cocci/src/arch_shortcuts.cocci.in",
             "cocci/arch_shortcuts.cocci"]


def _own_lines():
    """(file, line number, text) of the scanner, and of the section of
    message.py that cites it."""
    for rel in OWN_FILES:
        with open(os.path.join(support.ROOT, rel)) as f:
            for number, line in enumerate(f, 1):
                yield rel, number, line
    rel = "scripts/mmaudit_lib/message.py"
    with open(os.path.join(support.ROOT, rel)) as f:
        lines = f.read().split("\n")
    start = lines.index("# Architectures whose TLB code trusts mm_users")
    end = lines.index("# C text helpers (shared with fix.py)")
    for number in range(start, end):
        yield rel, number + 1, lines[number]


def test_no_architecture_list_in_the_code(real_tables):
    """The table comes from the tree: no line of the scanner (or of the
    messages that cite it) names two architectures."""
    names = set()
    for tree, _ in real_tables.values():
        names.update(arches.arch_names(tree))
    assert len(names) > 20
    word = re.compile(r"\b(%s)\b" % "|".join(sorted(names)))
    for rel, number, line in _own_lines():
        assert len(set(word.findall(line))) < 2, "%s:%d: %s" % (rel, number, line)
