"""kbuild.py: which architectures can build a file.

The Makefile walker on a small fixture tree (tests/fixtures/kbuild/tree),
ArchConfigs and its cache with that tree's stand-in `make allmodconfig`, and
the real Linux 6.12 tree (allmodconfig for every architecture: one cold run
takes about a minute on 2 cores, shared by the whole module and cached in
mmaudit's cache directory, so later runs take about a second)."""

import json
import os
import re
import shutil

import pytest

import support
from mmaudit_lib import kbuild

FIXTURE = os.path.join(support.ROOT, "tests", "fixtures", "kbuild", "tree")

# -- the Makefile walker, on the fixture tree ---------------------------------


def req(rel, tree=FIXTURE):
    return kbuild.required_symbols(tree, rel)


@pytest.mark.parametrize("rel, alternatives", [
    # obj-y, `:=`, in a directory reached through obj-y += dir/
    ("drivers/base/core.c", [()]),
    # a composite object: usb_f_fs-y := f_fs.o, listed under two symbols
    ("drivers/usb/f_fs.c", [("CONFIG_USB", "CONFIG_USB_F_FS"), ("CONFIG_USB", "CONFIG_USB_OTHER")]),
    # foo-objs split by a continuation line, and foo-$(CONFIG_FOO_EXTRA)
    ("drivers/usb/a.c", [("CONFIG_FOO", "CONFIG_USB")]),
    ("drivers/usb/b.c", [("CONFIG_FOO", "CONFIG_USB")]),
    ("drivers/usb/extra.c", [("CONFIG_FOO", "CONFIG_FOO_EXTRA", "CONFIG_USB")]),
    # ifdef / else / ifeq ($(CONFIG_X),y)
    ("drivers/usb/debug.c", [("CONFIG_USB", "CONFIG_USB_DEBUG")]),
    ("drivers/usb/nodebug.c", [("!CONFIG_USB_DEBUG", "CONFIG_USB")]),
    ("drivers/usb/builtin.c", [("CONFIG_USB", "CONFIG_USB_BUILTIN=y")]),
    # an object named with its subdirectory by the Makefile above
    ("drivers/usb/sub/deep.c", [("CONFIG_USB",)]),
    # the second directory of a continued obj-y line
    ("drivers/misc/known.c", [()]),
    # $(CONFIG_X:m=y), $(subst m,y,$(CONFIG_X)), subdir-$(CONFIG_X)
    ("drivers/gadget/g.c", [("CONFIG_GADGET",)]),
    ("drivers/hv/hv.c", [("CONFIG_HV",)]),
    ("drivers/tools/tool.c", [("CONFIG_TOOLS",)]),
    # the top Kbuild, and the top Makefile's libs-y
    ("net/socket.c", [("CONFIG_NET",)]),
    ("lib/string.c", [()]),
    # arch/$(SRCARCH)/ in the top Kbuild; BITS from arch/alpha/Makefile;
    # drivers-$(CONFIG_PCI) in arch/alpha/Makefile
    ("arch/alpha/kernel/setup.c", [("ARCH=alpha",)]),
    ("arch/alpha/kernel/smp_64.c", [("ARCH=alpha", "CONFIG_64BIT", "CONFIG_SMP")]),
    ("arch/alpha/kernel/smp_32.c", [("!CONFIG_64BIT", "ARCH=alpha", "CONFIG_SMP")]),
    ("arch/alpha/pci/pci.c", [("ARCH=alpha", "CONFIG_PCI")]),
    ("arch/beta/mm.c", [("ARCH=beta",)]),
])
def test_walker_alternatives(rel, alternatives):
    r = req(rel)
    assert r.alternatives == alternatives, r
    if rel != "drivers/misc/known.c":
        assert r.reason is None, r


def test_walker_steps_name_the_chain():
    r = req("drivers/usb/f_fs.c")
    assert sorted(r.steps) == sorted([
        "drivers/usb/Makefile:3: obj-$(CONFIG_USB_F_FS) += usb_f_fs.o",
        "drivers/usb/Makefile:2: usb_f_fs-y := f_fs.o",
        "drivers/usb/Makefile:4: obj-$(CONFIG_USB_OTHER) += usb_f_fs.o",
        "Kbuild:5: obj-y += drivers/",
        "drivers/Makefile:2: obj-$(CONFIG_USB) += usb/",
    ])
    assert kbuild.requirement_symbols(r) == ["CONFIG_USB", "CONFIG_USB_F_FS", "CONFIG_USB_OTHER"]


@pytest.mark.parametrize("rel, why", [
    ("drivers/orphan/lost.c", "drivers/orphan/ is not descended into by any Makefile above it"),
    ("drivers/cleanonly/c.c", "drivers/cleanonly/ is not descended into"),
    ("drivers/usb/unlisted.c", "unlisted.o is named by no Makefile from drivers/usb/ up"),
    ("drivers/misc/hidden.c", "drivers/misc/Makefile:1: cannot expand $(shell cat list.txt)"),
    ("drivers/usb/nosuch.c", "no such file in the tree"),
    ("../etc/passwd.c", "is not inside the tree"),
    ("drivers/Makefile", "is not a C, assembler or Rust source file"),
])
def test_walker_unknown_says_why(rel, why):
    r = req(rel)
    assert r.alternatives is None and why in r.reason, r


def test_walker_known_list_with_unexpandable_item_is_incomplete():
    # known.o is listed, but $(shell ...) could list it too: a "no" would be a guess
    r = req("drivers/misc/known.c")
    assert r.alternatives == [()] and "cannot expand $(shell cat list.txt)" in r.reason


def test_walker_unreadable_condition_stays_unknown():
    r = req("drivers/usb/odd.c")
    assert r.alternatives == [("?ifneq ($(SOMETHING_ELSE),)", "CONFIG_USB")]
    states = kbuild.buildable(FIXTURE, "drivers/usb/odd.c",
                              {"alpha": {"CONFIG_USB": "y"}, "gamma": {}})
    assert states["alpha"][0] == "unknown" and "SOMETHING_ELSE" in states["alpha"][1]
    assert states["gamma"] == ("no", "CONFIG_USB is not set by allmodconfig")


def test_logical_lines_and_assignments():
    lines = kbuild._logical_lines("a := b \\\n\tc # comment\n# only\nx\\\\\ny\n")
    assert lines == [(1, "a := b  \tc "), (3, ""), (4, "x\\\\"), (5, "y"), (6, "")]
    assert kbuild._split_assignment("obj-$(subst m,y,$(CONFIG_HV)) += hv/") == \
        ("obj-$(subst m,y,$(CONFIG_HV))", "+=", "hv/")
    assert kbuild._split_assignment("foo-y:=a.o") == ("foo-y", ":=", "a.o")
    assert kbuild._split_assignment("$(obj)/x.o: $(src)/x.S") is None
    assert kbuild._split_assignment("\t$(Q)$(MAKE) -f x obj=y") is None


# -- ArchConfigs, with the fixture's stand-in kconfig target -------------------

FIXTURE_CONFIGS = {
    "alpha": {"CONFIG_ARCH_ALPHA": "y", "CONFIG_64BIT": "y", "CONFIG_SMP": "y", "CONFIG_PCI": "y",
              "CONFIG_NET": "y", "CONFIG_USB": "m", "CONFIG_USB_F_FS": "m",
              "CONFIG_USB_BUILTIN": "m", "CONFIG_GADGET": "m", "CONFIG_HV": "m",
              "CONFIG_TOOLS": "y", "CONFIG_FOO": "m", "CONFIG_FOO_EXTRA": "y"},
    "beta": {"CONFIG_ARCH_BETA": "y", "CONFIG_USB": "y", "CONFIG_USB_OTHER": "y",
             "CONFIG_USB_DEBUG": "y", "CONFIG_USB_BUILTIN": "y"},
    "gamma": {"CONFIG_ARCH_GAMMA": "y", "CONFIG_USB": "y"},
}


def snapshot(tree, subdirs=None):
    """(path, kind, size, mtime_ns) of every entry under TREE (or of its
    top level and of SUBDIRS only)."""
    out = set()
    tops = [tree] if subdirs is None else [os.path.join(tree, d) for d in subdirs]
    if subdirs is not None:
        for name in os.listdir(tree):
            st = os.lstat(os.path.join(tree, name))
            out.add((name, st.st_mode, st.st_size, st.st_mtime_ns))
    for top in tops:
        for d, dirs, files in os.walk(top):
            for name in dirs + files:
                p = os.path.join(d, name)
                st = os.lstat(p)
                out.add((os.path.relpath(p, tree), st.st_mode, st.st_size, st.st_mtime_ns))
    return out


@pytest.fixture
def tree_copy(tmp_path):
    dst = tmp_path / "tree"
    shutil.copytree(FIXTURE, dst)
    return str(dst)


def test_archconfigs_runs_caches_and_reports_failures(tree_copy, tmp_path):
    cache = str(tmp_path / "cache")
    before = snapshot(tree_copy)
    c = kbuild.ArchConfigs(tree_copy, cache)
    # not notanarch: it has no Kconfig
    assert c.arches() == ["alpha", "beta", "broken", "flaky", "gamma"]
    for arch, symbols in FIXTURE_CONFIGS.items():
        assert c.config(arch) == symbols
        assert c.failure(arch) is None
    assert c.config("broken") is None
    assert c.failure("broken") == "exit 2: arch/broken/Kconfig:3: syntax error"
    assert c.config("flaky") is None
    assert c.failure("flaky") == "exit 2: error: run in flaky.again"
    # a failure is run twice; only one that repeats itself is cached
    assert sorted(c.runs) == ["alpha", "beta", "broken", "broken", "flaky", "flaky", "gamma"]
    assert snapshot(tree_copy) == before

    again = kbuild.ArchConfigs(tree_copy, cache)
    again.prefetch()
    assert again.runs == ["flaky", "flaky"]
    assert all(again.result(a).cached for a in again.arches() if a != "flaky")
    assert {a: again.config(a) for a in FIXTURE_CONFIGS} == FIXTURE_CONFIGS
    assert again.failure("broken") == c.failure("broken")
    with pytest.raises(KeyError):
        again.config("notanarch")


def test_archconfigs_damaged_entries_are_misses(tree_copy, tmp_path):
    cache = str(tmp_path / "cache")
    c = kbuild.ArchConfigs(tree_copy, cache)
    c.prefetch(["alpha", "beta", "broken", "gamma"])
    entry = c._entry_path("alpha")
    with open(entry, "w") as f:
        f.write('{"schema": "mmaudit-kconfig/1", "symbols": {')
    forged = c._entry_path("beta")
    with open(forged) as f:
        data = json.load(f)
    data["symbols"]["CONFIG_USB_F_FS"] = "y"      # the digest no longer matches
    with open(forged, "w") as f:
        json.dump(data, f)
    os.unlink(c._entry_path("gamma"))
    os.symlink(entry, c._entry_path("gamma"))     # not a regular file
    again = kbuild.ArchConfigs(tree_copy, cache)
    again.prefetch(["alpha", "beta", "broken", "gamma"])
    assert sorted(again.runs) == ["alpha", "beta", "gamma"]
    assert {a: again.config(a) for a in FIXTURE_CONFIGS} == FIXTURE_CONFIGS
    with open(entry) as f:
        assert json.load(f)["symbols"] == FIXTURE_CONFIGS["alpha"]   # rewritten whole


def test_archconfigs_key_follows_kconfig_and_toolchain(tree_copy, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    c = kbuild.ArchConfigs(tree_copy, cache)
    c.prefetch(["gamma"])
    key = kbuild.tree_key(tree_copy)
    kconfig = os.path.join(tree_copy, "arch", "gamma", "Kconfig")
    st = os.stat(kconfig)
    os.utime(kconfig, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert kbuild.tree_key(tree_copy) != key
    again = kbuild.ArchConfigs(tree_copy, cache)
    again.prefetch(["gamma"])
    assert again.runs == ["gamma"]
    # the entries of the tree's earlier key are gone, and so are those of
    # a tree that is gone
    gone = tmp_path / "gone"
    shutil.copytree(tree_copy, gone)
    kbuild.ArchConfigs(str(gone), cache).prefetch(["gamma"])
    assert len(os.listdir(cache)) == 2
    shutil.rmtree(gone)
    os.utime(kconfig, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    again = kbuild.ArchConfigs(tree_copy, cache)
    again.prefetch(["gamma"])
    assert os.listdir(cache) == [again.key[:32]]
    assert sorted(os.listdir(os.path.join(cache, again.key[:32]))) == \
        ["TREE", "gamma.allmodconfig.json"]
    key = kbuild.tree_key(tree_copy)
    monkeypatch.setenv("PATH", str(tmp_path))         # no gcc, ld, as, make found
    assert kbuild.tree_key(tree_copy) != key


def test_make_env_drops_what_would_change_the_answer(monkeypatch):
    for name in ("ARCH", "CROSS_COMPILE", "KCONFIG_ALLCONFIG", "MAKEFLAGS", "O", "LLVM", "CC"):
        monkeypatch.setenv(name, "x")
    env = kbuild._make_env()
    assert not {"ARCH", "CROSS_COMPILE", "KCONFIG_ALLCONFIG", "MAKEFLAGS", "O", "LLVM", "CC"} & set(env)
    assert env["LC_ALL"] == "C" and env["PATH"] == os.environ["PATH"]


def test_first_error_prefers_the_kconfig_line():
    text = ("gcc: error: unrecognized command-line option '-G'\n"
            "arch/mips/Kconfig:12: syntax error\n"
            "make[2]: *** [scripts/kconfig/Makefile:95: allmodconfig] Error 1\n")
    assert kbuild.first_error(text) == "arch/mips/Kconfig:12: syntax error"
    assert kbuild.first_error("make: *** No rule to make target 'allmodconfig'.  Stop.\n") == \
        "make: *** No rule to make target 'allmodconfig'.  Stop."


def test_buildable_on_the_fixture(tree_copy, tmp_path):
    c = kbuild.ArchConfigs(tree_copy, str(tmp_path / "cache"))
    res = kbuild.triage(tree_copy, ["drivers/usb/f_fs.c", "arch/alpha/kernel/smp_64.c",
                                    "arch/alpha/kernel/smp_32.c", "drivers/usb/builtin.c",
                                    "drivers/usb/nodebug.c", "drivers/orphan/lost.c",
                                    "drivers/base/core.c"], c)
    assert res["drivers/usb/f_fs.c"] == {
        "alpha": ("yes", "allmodconfig: CONFIG_USB=m CONFIG_USB_F_FS=m"),
        "beta": ("yes", "allmodconfig: CONFIG_USB=y CONFIG_USB_OTHER=y"),
        "broken": ("unknown", "allmodconfig of broken failed: "
                              "exit 2: arch/broken/Kconfig:3: syntax error"),
        "flaky": ("unknown", "allmodconfig of flaky failed: exit 2: error: run in flaky.again"),
        "gamma": ("no", "CONFIG_USB_F_FS is not set / CONFIG_USB_OTHER is not set "
                        "by allmodconfig"),
    }
    smp = res["arch/alpha/kernel/smp_64.c"]
    assert smp["alpha"] == ("yes", "allmodconfig: arch/alpha CONFIG_64BIT=y CONFIG_SMP=y")
    assert smp["beta"] == smp["gamma"] == smp["broken"] == smp["flaky"] == \
        ("no", "built only on alpha")
    assert res["arch/alpha/kernel/smp_32.c"]["alpha"] == \
        ("no", "CONFIG_64BIT is set by allmodconfig")
    builtin = res["drivers/usb/builtin.c"]
    assert builtin["alpha"] == ("no", "CONFIG_USB_BUILTIN=y is not set by allmodconfig")
    assert builtin["beta"][0] == "yes"
    assert res["drivers/usb/nodebug.c"]["beta"][0] == "no"
    assert res["drivers/usb/nodebug.c"]["gamma"][0] == "yes"
    lost = res["drivers/orphan/lost.c"]
    assert set(lost.values()) == {
        ("unknown", "drivers/orphan/ is not descended into by any Makefile above it")}
    core = res["drivers/base/core.c"]
    assert core["alpha"] == ("yes", "allmodconfig: always built")
    assert core["broken"][0] == "unknown"


def test_triage_runs_kconfig_only_where_needed(tree_copy, tmp_path):
    c = kbuild.ArchConfigs(tree_copy, str(tmp_path / "cache"))
    res = kbuild.triage(tree_copy, ["arch/alpha/kernel/setup.c", "arch/beta/mm.c"], c)
    assert sorted(c.runs) == ["alpha", "beta"]   # the Makefiles decide the rest
    assert res["arch/beta/mm.c"]["beta"] == ("yes", "allmodconfig: arch/beta")
    assert res["arch/beta/mm.c"]["alpha"] == ("no", "built only on beta")


# -- the real 6.12 tree --------------------------------------------------------

@pytest.fixture(scope="module")
def tree612():
    return support.kernel_tree("6.12")


@pytest.fixture(scope="module")
def configs612(tree612):
    """allmodconfig of every architecture of 6.12, from mmaudit's cache
    (about a minute on 2 cores when cold)."""
    c = kbuild.ArchConfigs(tree612)
    c.prefetch()
    return c


def test_real_arches_and_failures(configs612):
    arches = configs612.arches()
    assert "x86" in arches and "powerpc" in arches and "um" in arches
    assert "ia64" not in arches                 # removed in 6.7
    assert len(arches) == 21
    failed = {a: configs612.failure(a) for a in arches if configs612.failure(a)}
    assert failed == {}
    for a in arches:
        assert "CONFIG_MODULES" in configs612.config(a), a


def test_real_f_fs_chain(tree612):
    r = kbuild.required_symbols(tree612, "drivers/usb/gadget/function/f_fs.c")
    assert r.reason is None
    assert r.alternatives == [("CONFIG_USB_F_FS", "CONFIG_USB_GADGET")]
    chain = "\n".join(r.steps)
    for line in (r"drivers/usb/gadget/function/Makefile:\d+: usb_f_fs-y := f_fs\.o",
                 r"drivers/usb/gadget/function/Makefile:\d+: obj-\$\(CONFIG_USB_F_FS\) \+= usb_f_fs\.o",
                 r"drivers/usb/gadget/Makefile:\d+: obj-\$\(CONFIG_USB_GADGET\) \+= .*function/",
                 r"drivers/usb/Makefile:\d+: obj-\$\(CONFIG_USB_GADGET\) \+= gadget/",
                 r"drivers/Makefile:\d+: obj-\$\(CONFIG_USB_GADGET\) \+= usb/",
                 r"Kbuild:\d+: obj-y \+= drivers/"):
        assert re.search(line, chain), (line, chain)


def test_real_kvm_xen_builds_on_x86_only(tree612, configs612):
    r = kbuild.required_symbols(tree612, "arch/x86/kvm/xen.c")
    assert r.alternatives == [("ARCH=x86", "CONFIG_KVM", "CONFIG_KVM_X86", "CONFIG_KVM_XEN")]
    states = kbuild.buildable(tree612, "arch/x86/kvm/xen.c", configs612)
    assert states.pop("x86") == ("yes", "allmodconfig: arch/x86 CONFIG_KVM=m "
                                        "CONFIG_KVM_X86=m CONFIG_KVM_XEN=y")
    assert set(states.values()) == {("no", "built only on x86")}


def test_real_idxd_follows_its_kconfig(tree612, configs612):
    with open(os.path.join(tree612, "drivers", "dma", "Kconfig")) as f:
        kconfig = f.read()
    block = kconfig.split("config INTEL_IDXD\n", 1)[1].split("\nconfig ", 1)[0]
    assert "depends on PCI && X86_64 && !UML" in block
    states = kbuild.buildable(tree612, "drivers/dma/idxd/cdev.c", configs612)
    assert states.pop("x86") == ("yes", "allmodconfig: CONFIG_DMADEVICES=y CONFIG_INTEL_IDXD=m")
    assert set(s for s, _ in states.values()) == {"no"}       # um too: !UML
    assert all("CONFIG_INTEL_IDXD" in why for _, why in states.values())


def test_real_bcachefs_builds_everywhere(tree612, configs612):
    with open(os.path.join(tree612, "fs", "bcachefs", "Kconfig")) as f:
        block = f.read().split("config BCACHEFS_FS\n", 1)[1].split("\nconfig ", 1)[0]
    assert [ln.strip() for ln in block.splitlines() if ln.strip().startswith("depends")] == \
        ["depends on BLOCK"]
    states = kbuild.buildable(tree612, "fs/bcachefs/fs-io-direct.c", configs612)
    assert len(states) == 21
    assert set(states.values()) == {("yes", "allmodconfig: CONFIG_BCACHEFS_FS=m")}


def test_real_kconfig_leaves_the_tree_unchanged(tree612, tmp_path):
    """One cold run of the real kconfig target (x86, in a scratch cache)."""
    watched = ["scripts", "include", "arch/x86"]
    before = snapshot(tree612, watched)
    c = kbuild.ArchConfigs(tree612, str(tmp_path / "cache"))
    symbols = c.config("x86")
    assert c.runs == ["x86"]
    assert symbols["CONFIG_X86_64"] == "y" and symbols["CONFIG_KVM_XEN"] == "y"
    assert snapshot(tree612, watched) == before
    for generated in (".config", "include/config", "include/generated", "scripts/kconfig/conf"):
        assert not os.path.lexists(os.path.join(tree612, generated)), generated
    # the scratch directories are gone; the cache holds one entry
    entries = [f for d, _, fs in os.walk(tmp_path / "cache") for f in fs]
    assert sorted(entries) == ["TREE", "x86.allmodconfig.json"]


def test_real_6_1_chains():
    tree61 = support.kernel_tree("6.1")
    r = kbuild.required_symbols(tree61, "arch/x86/kvm/xen.c")
    assert r.alternatives == [("ARCH=x86", "CONFIG_KVM", "CONFIG_KVM_XEN")]
    r = kbuild.required_symbols(tree61, "drivers/usb/gadget/legacy/inode.c")
    assert r.alternatives == [("CONFIG_USB_GADGET", "CONFIG_USB_GADGETFS")]
    assert "ia64" in kbuild.tree_arches(tree61)
