"""mmaudit_lib.types: the struct tag of a field's type, from the tree's text.

The fixture tree tests/fixtures/types/ holds one field per case the parser
handles or refuses (include/linux/kvm_host.h), several definitions of one
tag in different places (drivers/, arch/, tools/), and odd files (not
UTF-8, a NUL byte, braces that never close). The last tests run on the
real 6.12 tree, on chains read in its headers."""

import os
import shutil
import signal

import pytest

import support
from mmaudit_lib import types
from mmaudit_lib.types import StructIndex

FIXTURE = os.path.join(support.ROOT, "tests", "fixtures", "types")


@pytest.fixture(scope="module")
def index():
    return StructIndex(FIXTURE)


# --- One field per case, in struct kvm_vcpu ----------------------------------

FIELDS = {
    "kvm": "kvm",                   # struct kvm *kvm;
    "kvm2": "kvm",                  # struct kvm *kvm2, *other;
    "other": "kvm",
    "mm_late": "mm_struct",         # struct mm_struct *mm_late __rcu;
    "mm_early": "mm_struct",        # struct mm_struct __rcu *mm_early;
    "cfoo": "foo",                  # const struct foo *cfoo;
    "embedded": "foo",              # struct foo embedded;
    "arr": "foo",                   # struct foo arr[4];
    "parr": "foo",                  # struct foo *parr[NR_FOO + 1], plain_after_array;
    "plain_after_array": "foo",
    "after_bits": "foo",            # after unsigned int bits_a:1, bits_b:3; and :2
    "in_union": "foo",              # in an anonymous union
    "deep": "bar",                  # in an anonymous struct in it
    "stat": "vcpu_stat",            # struct vcpu_stat { ... } stat, *stat_ptr;
    "stat_ptr": "vcpu_stat",
    "tk": "kvm",                    # typedef struct kvm kvm_t;
    "tk2": "kvm",                   # typedef kvm_t kvm2_t;
    "tptr": "kvm",                  # typedef struct kvm *kvm_ptr_t, kvm_alias_t;
    "talias": "kvm",
    "wq": "wq_head",                # typedef struct wq_head { ... } wq_head_t;
    "lock": "foo",                  # struct foo lock ____cacheline_aligned_in_smp;
    "sect": "foo",                  # __attribute__((section("x; struct bar *kvm;")))
    "grouped": "foo",               # in struct_group(regs, ...)
    "tregs": "vcpu_regs",           # struct_group_tagged(vcpu_regs, tregs, ...)
    "tgrouped": "bar",
    "cond_same": "foo",             # #ifdef/#else, the same type in both
    "aligned_p": "foo",             # struct foo *aligned_p __aligned(8);
    "flex": "foo",                  # struct foo *flex[] __counted_by(count);
}

NO_STRUCT = {
    "bits_a": "a bitfield",
    "count": "an int",
    "u_tagged": "a union",
    "mode": "an enum",
    "hidden": "a field of anon_member, not of kvm_vcpu",
    "anon_member": "an anonymous struct type has no tag",
    "inner": "a field of the nested struct vcpu_stat",
    "get_kvm": "a function pointer that returns a struct kvm *",
    "cb": "a function pointer",
    "cb2": "the second function pointer of a declaration",
    "an": "a typedef of an anonymous struct",
    "unk": "a typedef defined nowhere",
    "fn": "a typedef of a function pointer",
    "stamp": "u64",
    "regs": "the struct of struct_group(regs, ...) has no tag",
    "plain": "an int in struct_group()",
    "cond_conflict": "#ifdef branches disagree: struct foo, int, struct bar",
    "cond_fnptr": "#ifdef branches disagree: a function pointer, a struct foo *",
    "dead": "only in #if 0",
    "flags": "declared by a macro",
    "nonexistent": "absent",
}


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_field(index, field):
    assert index.field_struct("kvm_vcpu", field) == FIELDS[field]


@pytest.mark.parametrize("field", sorted(NO_STRUCT))
def test_no_struct(index, field):
    assert index.field_struct("kvm_vcpu", field) is None, NO_STRUCT[field]


def test_comments_strings_if0_and_macros_do_not_count(index):
    # kvm_vcpu mentions `struct bar *kvm;` in #if 0, in two comments, in a
    # string and in a #define: any of them would make kvm ambiguous.
    with open(os.path.join(FIXTURE, "include", "linux", "kvm_host.h")) as f:
        assert f.read().count("struct bar *kvm;") == 5
    assert index.field_struct("kvm_vcpu", "kvm") == "kvm"


def test_the_parse_sees_every_branch():
    with open(os.path.join(FIXTURE, "include", "linux", "kvm_host.h")) as f:
        structs, typedefs = types.parse_text(f.read())
    assert structs["kvm_vcpu"][0]["cond_conflict"] == ["foo", types.OTHER, "bar"]
    assert typedefs["kvm2_t"] == [("typedef", "kvm_t")]
    assert "dead" not in structs["kvm_vcpu"][0]


# --- Chains ------------------------------------------------------------------

def test_resolve(index):
    assert index.resolve("kvm_vcpu", ["kvm", "mm"]) == "mm_struct"
    assert index.resolve("kvm_vcpu", ("stat", "inner")) == "bar"
    assert index.resolve("outer", ["in", "b"]) == "bar"
    assert index.resolve("kvm_vcpu", []) == "kvm_vcpu"
    assert index.resolve("kvm_vcpu", ["kvm", "nonexistent"]) is None
    assert index.resolve("kvm_vcpu", ["count", "mm"]) is None
    assert index.resolve("kvm_vcpu", iter(["tk", "mm"])) == "mm_struct"


# --- How a definition opens --------------------------------------------------

@pytest.mark.parametrize("tag", ["pk", "pk2", "brace_next", "cmt", "latin"])
def test_definition_heads(index, tag):
    assert index.field_struct(tag, "p") == "foo"


def test_a_function_is_not_a_definition(index):
    assert index.field_struct("not_a_definition", "p") is None


def test_braces_that_never_close(index):
    assert index.field_struct("broken", "p") is None


def test_a_file_with_a_nul_byte_is_skipped(index):
    # grep -I passes over it, as a binary file.
    assert index.field_struct("nul_inside", "p") is None


# --- Several definitions of one tag ------------------------------------------

def test_conflicting_definitions_are_ambiguous(index):
    assert index.field_struct("dup_conf", "p") is None
    assert index.field_struct("dup_conf", "p", near="drivers/e/e.c") is None


def test_agreeing_definitions(index):
    assert index.field_struct("dup_same", "q") == "foo"


def test_a_definition_without_the_field_is_passed_over(index):
    assert index.field_struct("partial", "only_a") == "foo"
    assert index.field_struct("partial", "other_field") is None       # an int


def test_near_file_directory_headers(index):
    assert index.field_struct("dup_conf", "p", near="drivers/a/a.c") == "foo"
    assert index.field_struct("dup_conf", "p", near="drivers/b/b.c") == "bar"
    assert index.field_struct("dup_conf", "p", near="./drivers/b/../b/b.c") == "bar"
    # A file not in the tree: its directory still counts.
    assert index.field_struct("dup_conf", "p", near="drivers/b/gone.c") == "bar"


def test_near_file_itself_wins(index):
    assert index.field_struct("dup_conf", "p", near="drivers/c/c.c") == "baz"
    assert index.field_struct("c_typed", "cb", near="drivers/c/c.c") == "baz"


def test_near_file_quoted_include(index):
    assert index.field_struct("dup_conf", "p", near="drivers/d/d.c") == "bar"


def test_directory_header_shadows_include_linux(index):
    assert index.field_struct("shadowed", "s") is None
    assert index.field_struct("shadowed", "s", near="drivers/a/a.c") == "bar"
    assert index.field_struct("shadowed", "s", near="drivers/e/e.c") is None


def test_a_c_file_struct(index):
    # With no near file, the .c files are searched after the headers.
    assert index.field_struct("c_local", "cl") == "foo"
    # Another .c file cannot see it.
    assert index.field_struct("c_local", "cl", near="drivers/e/e.c") is None
    assert index.field_struct("c_local", "cl", near="drivers/c/c.c") == "foo"


def test_arch_headers(index):
    assert index.field_struct("kvm_arch", "arch_p") is None
    assert index.field_struct("kvm_arch", "arch_p", near="arch/alpha/kvm/x.c") == "foo"
    assert index.resolve("kvm", ["arch", "arch_p"], near="arch/alpha/kvm/x.c") == "foo"
    assert index.field_struct("kvm_arch", "arch_p", near="arch/beta/kvm/y.c") == "bar"
    assert StructIndex(FIXTURE, arch="beta").field_struct("kvm_arch", "arch_p") == "bar"
    assert StructIndex(FIXTURE, arch="alpha").field_struct("kvm_arch", "arch_p") == "foo"


def test_tools_headers_are_not_the_kernels(index):
    assert index.field_struct("kvm_vcpu", "kvm", near="drivers/e/e.c") == "kvm"
    # Code in tools/ sees both.
    assert index.field_struct("kvm_vcpu", "kvm", near="tools/x/y.c") is None


# --- Memoizing, bad input, odd trees -------------------------------------------

def test_lookups_are_memoized_per_object():
    a = StructIndex(FIXTURE)
    assert a.stats["greps"] == 0                    # nothing done up front
    assert a.field_struct("kvm_vcpu", "kvm") == "kvm"
    assert a.stats["greps"] == 1                    # the header index
    parsed = a.stats["files_parsed"]
    assert a.resolve("kvm_vcpu", ["kvm", "mm"]) == "mm_struct"
    assert a.field_struct("kvm_vcpu", "kvm") == "kvm"
    assert a.stats["greps"] == 1
    assert a.stats["files_parsed"] == parsed
    b = StructIndex(FIXTURE)
    assert b.field_struct("kvm_vcpu", "kvm") == "kvm"
    assert b.stats["greps"] == 1 and a.stats["greps"] == 1
    # A scalar typedef is not looked up; another typedef is, once.
    assert b.field_struct("kvm_vcpu", "stamp") is None
    assert b.stats["greps"] == 1
    assert b.field_struct("kvm_vcpu", "tk") == "kvm"
    assert b.field_struct("kvm_vcpu", "tk") == "kvm"
    assert b.stats["greps"] == 2


@pytest.mark.parametrize("tag, field", [
    ("", "kvm"), ("kvm vcpu", "kvm"), (None, "kvm"), ("kvm_vcpu", None),
    ("kvm_vcpu", "kvm->mm"), ("kvm_vcpu", 3), (b"kvm_vcpu", "kvm"), ("kvm_vcpu", "k\0vm"),
])
def test_bad_names(index, tag, field):
    assert index.field_struct(tag, field) is None


@pytest.mark.parametrize("near", ["/nonexistent/x.c", "../x.c", "", 42, "a\0b"])
def test_bad_near_is_no_near(index, near):
    assert index.field_struct("dup_same", "q", near=near) == "foo"
    assert index.field_struct("dup_conf", "p", near=near) is None


def test_absolute_near_inside_the_tree(index):
    near = os.path.join(FIXTURE, "drivers", "b", "b.c")
    assert index.field_struct("dup_conf", "p", near=near) == "bar"


@pytest.mark.parametrize("fields", ["kvm", None, 3, [None], [["kvm"]]])
def test_bad_chains(index, fields):
    assert index.resolve("kvm_vcpu", fields) is None


def test_no_tree(tmp_path):
    assert StructIndex(str(tmp_path / "missing")).field_struct("kvm_vcpu", "kvm") is None
    assert StructIndex(None).resolve("kvm_vcpu", ["kvm"]) is None
    assert StructIndex(str(tmp_path)).field_struct("kvm_vcpu", "kvm") is None
    assert StructIndex(str(tmp_path) + "\0x").field_struct("kvm_vcpu", "kvm") is None


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode())


def test_odd_file_names(tmp_path):
    write(str(tmp_path / "dir with space" / "we ird.h"), "struct spaced {\n\tstruct foo *p;\n};\n")
    write(str(tmp_path / "new\nline" / "x\ny.h"), "struct newline {\n\tstruct bar *p;\n};\n")
    write(str(tmp_path / "new\nline" / "user.c"), "void f(void);\n")
    index = StructIndex(str(tmp_path))
    assert index.field_struct("spaced", "p") == "foo"
    assert index.field_struct("newline", "p") == "bar"
    assert index.field_struct("newline", "p", near="new\nline/user.c") == "bar"
    assert index.field_struct("spaced", "p", near="dir with space/u.c") == "foo"


def test_vanished_and_unreadable_files(tmp_path):
    write(str(tmp_path / "include" / "a.h"), "struct a { struct foo *p; };\n")
    write(str(tmp_path / "include" / "b.h"), "struct b { struct foo *p; };\n")
    os.mkfifo(str(tmp_path / "include" / "fifo.c"))
    os.mkdir(str(tmp_path / "include" / "dir.h"))
    index = StructIndex(str(tmp_path))
    assert index.field_struct("a", "p") == "foo"        # the index is built
    os.unlink(str(tmp_path / "include" / "b.h"))
    assert index.field_struct("b", "p") is None
    # A FIFO or a directory as the near file is not read (a FIFO would block).
    def blocked(signum, frame):
        raise RuntimeError("StructIndex opened the FIFO")  # not an OSError: not caught
    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(30)
    try:
        assert index.field_struct("a", "p", near="include/fifo.c") == "foo"
        assert index.field_struct("a", "p", near="include/dir.h") == "foo"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_huge_files_are_not_read(tmp_path):
    small = "struct small { struct foo *p; };\n"
    big = "struct big { struct foo *p; };\n" + "/* padding */\n" * 1000
    write(str(tmp_path / "small.h"), small)
    write(str(tmp_path / "big.h"), big)
    index = StructIndex(str(tmp_path), max_bytes=len(small) + 100)
    assert index.field_struct("small", "p") == "foo"
    assert index.field_struct("big", "p") is None
    assert StructIndex(str(tmp_path)).field_struct("big", "p") == "foo"


def test_no_grep(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE, str(tmp_path / "t"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    index = StructIndex(str(tmp_path / "t"))
    assert index.field_struct("kvm_vcpu", "kvm") is None
    # The near file is still read without grep.
    assert index.field_struct("dup_conf", "p", near="drivers/c/c.c") == "baz"


def test_hostile_text_does_not_raise():
    texts = ["struct", "struct x {", "struct x { struct", "struct x { ( ; } ;", "}}}{{{",
             "typedef", "typedef struct {", "struct x { struct_group(a", "struct x { int (*",
             "struct x { struct_group(, ); };", "struct x {" + "{" * 5000 + "}" * 5000 + "};",
             "struct x { union {" * 200 + "struct y *p;" + "}; }" * 200 + ";",
             "struct x { __attribute__((( int a; };", "struct x { int a[; };",
             "\\\n#define x \\\n struct y {\n", "struct x { \x00\xff; };"]
    for text in texts:
        types.parse_text(text)


# --- The real 6.12 tree -------------------------------------------------------

@pytest.fixture(scope="module")
def tree612():
    return StructIndex(support.kernel_tree("6.12"))


def test_real_kvm_vcpu(tree612):
    # include/linux/kvm_host.h: struct kvm_vcpu { struct kvm *kvm; ...
    # (tools/testing/selftests/kvm/include/kvm_util.h has another struct
    # kvm_vcpu, with no kvm field.)
    assert tree612.field_struct("kvm_vcpu", "kvm") == "kvm"
    assert tree612.resolve("kvm_vcpu", ["kvm"]) == "kvm"
    # struct kvm { ... struct mm_struct *mm; /* userspace tied to this vm */
    assert tree612.resolve("kvm_vcpu", ["kvm", "mm"]) == "mm_struct"
    assert tree612.field_struct("kvm", "mm", near="arch/x86/kvm/xen.c") == "mm_struct"


@pytest.mark.parametrize("tag, fields, near, expected", [
    # arch/x86/include/asm/kvm_host.h: struct kvm_vcpu_arch { ...
    # struct kvm_vcpu_xen xen; (kvm_vcpu has struct kvm_vcpu_arch arch;)
    ("kvm_vcpu", ["arch", "xen"], "arch/x86/kvm/xen.c", "kvm_vcpu_xen"),
    # kvm_vcpu_arch.mmu: struct kvm_mmu *mmu on x86, struct kvmppc_mmu mmu
    # on powerpc: which one depends on the arch.
    ("kvm_vcpu", ["arch", "mmu"], "arch/x86/kvm/mmu/mmu.c", "kvm_mmu"),
    ("kvm_vcpu", ["arch", "mmu"], "arch/powerpc/kvm/book3s.c", "kvmppc_mmu"),
    ("kvm_vcpu", ["arch", "mmu"], None, None),
    # include/linux/sched.h: struct mm_struct *mm; mm_types.h: struct
    # rw_semaphore mmap_lock; inside mm_struct's anonymous struct {...}
    # __randomize_layout.
    ("task_struct", ["mm", "mmap_lock"], None, "rw_semaphore"),
    # drivers/iommu/iommufd/io_pagetable.h (a private header): struct
    # iopt_pages { ... struct mm_struct *source_mm;
    ("iopt_pages", ["source_mm"], "drivers/iommu/iommufd/pages.c", "mm_struct"),
    # arch/powerpc/include/asm/vas.h: struct vas_user_win_ref { ... struct
    # mm_struct *mm;
    ("vas_user_win_ref", ["mm"], "arch/powerpc/platforms/book3s/vas-api.c", "mm_struct"),
    # Defined in the .c file itself: f_fs.c struct ffs_io_data, bcachefs
    # fs-io-direct.c struct dio_write.
    ("ffs_io_data", ["mm"], "drivers/usb/gadget/function/f_fs.c", "mm_struct"),
    ("dio_write", ["mm"], "fs/bcachefs/fs-io-direct.c", "mm_struct"),
    ("dio_write", ["mm"], "drivers/vhost/vhost.c", None),
    # xe_vm.c: struct xe_vm_snapshot { ... struct { ... struct mm_struct
    # *mm; } snap[]; }: snap has an anonymous struct type.
    ("xe_vm_snapshot", ["snap"], "drivers/gpu/drm/xe/xe_vm.c", None),
])
def test_real_chains(tree612, tag, fields, near, expected):
    assert tree612.resolve(tag, fields, near=near) == expected
