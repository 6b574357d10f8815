"""The commit messages of fix patches (scripts/mmaudit_lib/message.py): the
author, the subject as the subsystem writes it, the Fixes: tag, the
architectures whose TLB code trusts mm_users, and the message itself."""

import os
import subprocess
import sys

import pytest

import support

sys.path.insert(0, os.path.join(support.ROOT, "scripts"))
from mmaudit_lib import UsageError, message  # noqa: E402


@pytest.fixture
def git_env(tmp_path, monkeypatch):
    """A git without the user's configuration: HOME and the global config
    are a temporary directory's, the system config is not read."""
    home = tmp_path / "home"
    home.mkdir()
    config = home / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)      # not inside mmaudit's own checkout
    return config


def git(cwd, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="Ann Author", GIT_AUTHOR_EMAIL="ann@kernel.org",
               GIT_COMMITTER_NAME="Ann Author", GIT_COMMITTER_EMAIL="ann@kernel.org")
    proc = subprocess.run(["git"] + list(args), cwd=str(cwd), capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def new_repo(path):
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    return path


def commit(repo, files, subject):
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
        git(repo, "add", rel)
    git(repo, "commit", "-q", "-m", subject)
    return git(repo, "rev-parse", "HEAD").strip()


# --------------------------------------------------------------------------
# identity

@pytest.mark.parametrize("email", ["maintainers@users.noreply.r-seed-1b28fe1f.example",
                                   "a@example", "a@example.com", "a@EXAMPLE.org",
                                   "a@example.net", "a@lists.example.com", "a@host.invalid",
                                   "a@box.test", "a@localhost", "a@my.localhost"])
def test_identity_refuses_reserved_domain_from_git_config(git_env, email):
    git_env.write_text("[user]\n\tname = Some One\n\temail = %s\n" % email)
    with pytest.raises(UsageError) as err:
        message.identity(None)
    text = str(err.value)
    assert "\n" not in text and email in text and "--signoff" in text
    assert "reserved" in text


@pytest.mark.parametrize("email", ["a@kernel.org", "a@example.co.uk", "a@myexample.com",
                                   "a@testing.org", "a@invalid.de"])
def test_identity_accepts_real_domains(git_env, email):
    git_env.write_text("[user]\n\tname = Some One\n\temail = %s\n" % email)
    assert message.identity(None) == "Some One <%s>" % email


def test_identity_signoff_wins_as_given(git_env):
    git_env.write_text("[user]\n\tname = Some One\n\temail = a@example.com\n")
    assert message.identity("Test <t@example.org>") == "Test <t@example.org>"


def test_identity_missing_is_one_line(git_env):
    with pytest.raises(UsageError) as err:
        message.identity(None)
    assert "\n" not in str(err.value) and "--signoff" in str(err.value)


def test_identity_reads_the_trees_local_config(git_env, tmp_path):
    git_env.write_text("[user]\n\tname = Global\n\temail = g@example.com\n")
    repo = new_repo(tmp_path / "linux")
    git(repo, "config", "user.name", "Local Dev")
    git(repo, "config", "user.email", "dev@kernel.org")
    assert message.identity(None, str(repo)) == "Local Dev <dev@kernel.org>"
    # A directory inside that repository is not a tree of its own.
    (repo / "sub").mkdir()
    with pytest.raises(UsageError):
        message.identity(None, str(repo / "sub"))


# --------------------------------------------------------------------------
# subject

def test_subject_from_history(git_env, tmp_path):
    repo = new_repo(tmp_path / "linux")
    for i, s in enumerate(["KVM: x86/xen: Take the srcu lock for evtchn", "KVM: x86/xen: Fix "
                           "a race", "KVM: x86: Drop a helper", "KVM: x86/xen: Add shinfo cache",
                           "KVM: x86/xen: allow out of range ports"]):
        commit(repo, {"arch/x86/kvm/xen.c": "int x%d;\n" % i}, s)
    for i, s in enumerate(["dmaengine: idxd: fix cdev setup", "dmaengine: idxd: add wq name",
                           "dmaengine: idxd: Remove a field", "dmaengine: idxd: fix a leak",
                           "dmaengine: Drop a header"]):
        commit(repo, {"drivers/dma/idxd/cdev.c": "int y%d;\n" % i}, s)
    tree = str(repo)
    assert message.subject(tree, "arch/x86/kvm/xen.c", "take an mm_users reference") == \
        "KVM: x86/xen: Take an mm_users reference"
    assert message.subject(tree, "drivers/dma/idxd/cdev.c", "pin the mm") == \
        "dmaengine: idxd: pin the mm"
    # A file without history of its own: its directory's.
    commit(repo, {"drivers/dma/idxd/new.c": "int z;\n"}, "dmaengine: idxd: fix new file")
    assert message.subject(tree, "drivers/dma/idxd/new.c", "pin the mm").startswith(
        "dmaengine: idxd: pin")


def test_subject_prefix_is_the_most_common_one(git_env, tmp_path):
    repo = new_repo(tmp_path / "linux")
    subjects = ["usb: gadget: f_fs: Fix a race", "usb: gadget: f_fs: Add a check",
                "usb: gadget: Fix all the things", "usb: gadget: f_fs: Use a helper",
                'Revert "usb: gadget: f_fs: Use a helper"', "treewide: Fix spelling: of words"]
    for i, s in enumerate(subjects):
        commit(repo, {"drivers/usb/gadget/function/f_fs.c": "int x%d;\n" % i}, s)
    assert message.history_prefix(str(repo), "drivers/usb/gadget/function/f_fs.c") == \
        ("usb: gadget: f_fs", True)


def test_subject_without_history(git_env, tmp_path):
    tree = str(tmp_path / "outside")       # not a git tree
    assert message.subject(tree, "arch/x86/kvm/xen.c", "take a ref") == "KVM: x86/xen: Take a ref"
    assert message.subject(tree, "drivers/usb/gadget/legacy/inode.c", "pin the mm") == \
        "usb: gadget: legacy: pin the mm"
    assert message.subject(tree, "drivers/misc/foo/bar.c", "pin the mm") == "misc: foo: pin the mm"


def test_subject_ignores_a_repository_the_tree_only_sits_in(git_env, tmp_path):
    repo = new_repo(tmp_path / "tools")
    commit(repo, {"linux/fs/bcachefs/io.c": "int x;\n"}, "tests: lowercase subject here")
    tree = str(repo / "linux")
    assert not message.is_git_tree(tree)
    assert message.subject(tree, "fs/bcachefs/io.c", "pin the mm") == "bcachefs: Pin the mm"


# Each subject prefix, and a word of the MAINTAINERS section that covers it.
SECTIONS = {"powerpc/vas": "POWERPC", "KVM: x86/xen": "KVM", "dmaengine: idxd": "IDXD",
            "usb: gadget: legacy": "USB SUBSYSTEM", "usb: gadget: f_fs": "USB SUBSYSTEM",
            "vhost": "VHOST", "bcachefs": "BCACHEFS", "vfio": "VFIO"}


@pytest.mark.parametrize("path, prefix, capitalise", message.PREFIXES)
def test_prefix_table_matches_maintainers(path, prefix, capitalise):
    tree = support.kernel_tree("6.12")
    target = path if not path.endswith("/") else path + sorted(
        os.listdir(os.path.join(tree, path)))[0]
    proc = subprocess.run(["perl", "scripts/get_maintainer.pl", "--sections", "--no-git",
                           "--no-git-fallback", "-f", target], cwd=tree, capture_output=True,
                          text=True)
    assert SECTIONS[prefix] in proc.stdout.upper(), proc.stdout
    assert isinstance(capitalise, bool)


# --------------------------------------------------------------------------
# Fixes:

BORROWER = """\
static void worker(struct work_struct *w)
{
\tstruct ctx *ctx = container_of(w, struct ctx, work);

\t%s(ctx->mm);
\tcopy_to_user(ctx->buf, ctx->data, 4);
\tkthread_unuse_mm(ctx->mm);
}
"""


def test_fixes_tag_names_the_commit_that_added_the_borrow(git_env, tmp_path):
    repo = new_repo(tmp_path / "linux")
    commit(repo, {"drivers/foo/foo.c": "/* foo */\n"}, "foo: Add the driver")
    added = commit(repo, {"drivers/foo/foo.c": "/* foo */\n" + BORROWER % "kthread_use_mm"},
                   "foo: Copy results from a worker")
    # A later commit changes the lines around it, not the borrow.
    text = (repo / "drivers/foo/foo.c").read_text().replace("/* foo */", "/* foo driver */")
    text = text.replace("ctx->data, 4", "ctx->data, 8")
    commit(repo, {"drivers/foo/foo.c": text}, "foo: Copy eight bytes")
    line = text.split("\n").index("\tkthread_use_mm(ctx->mm);") + 1
    tag = message.fixes_tag(str(repo), "drivers/foo/foo.c", line)
    assert tag == 'Fixes: %s ("foo: Copy results from a worker")' % added[:12]
    assert message.fixes_tag(str(repo), "drivers/foo/foo.c", 1) is not None


def test_fixes_tag_looks_past_the_use_mm_rename(git_env, tmp_path):
    repo = new_repo(tmp_path / "linux")
    added = commit(repo, {"drivers/foo/foo.c": BORROWER % "use_mm"}, "foo: Use the mm in a worker")
    commit(repo, {"drivers/foo/foo.c": BORROWER % "kthread_use_mm"},
           "kernel: rename use_mm/unuse_mm to kthread_use_mm/kthread_unuse_mm")
    line = (BORROWER % "kthread_use_mm").split("\n").index("\tkthread_use_mm(ctx->mm);") + 1
    assert message.fixes_tag(str(repo), "drivers/foo/foo.c", line) == \
        'Fixes: %s ("foo: Use the mm in a worker")' % added[:12]


def test_fixes_tag_needs_history(git_env, tmp_path):
    plain = tmp_path / "plain"
    (plain / "drivers").mkdir(parents=True)
    (plain / "drivers/foo.c").write_text(BORROWER % "kthread_use_mm")
    assert message.fixes_tag(str(plain), "drivers/foo.c", 5) is None
    repo = new_repo(tmp_path / "linux")
    commit(repo, {"drivers/foo.c": "/* foo */\n"}, "foo: Add")
    (repo / "drivers/foo.c").write_text(BORROWER % "kthread_use_mm")     # not committed
    assert message.fixes_tag(str(repo), "drivers/foo.c", 5) is None


# --------------------------------------------------------------------------
# Architectures whose TLB code trusts mm_users

def _check_lines(tree, shortcuts):
    for arch, entries in shortcuts.items():
        assert entries
        for file, line, condition, function in entries:
            assert file.startswith("arch/%s/" % arch)
            assert function and function.isidentifier()
            with open(os.path.join(tree, file), encoding="utf-8", errors="replace") as f:
                text = f.read().split("\n")
            assert "mm_users" in text[line - 1], (file, line)
            assert "mm_users" in condition


def test_arch_shortcuts_612():
    tree = support.kernel_tree("6.12")
    lookups = message.TreeLookups(tree)
    shortcuts = lookups.arch_shortcuts()
    # arm64's check is under CONFIG_DEBUG_VM, parisc's is a BUG_ON(), and
    # ia64 was removed in 6.7.
    assert sorted(shortcuts) == ["alpha", "arc", "loongarch", "mips", "powerpc", "sh",
                                 "sparc", "um"]
    _check_lines(tree, shortcuts)
    first = {arch: entries[0][:2] for arch, entries in shortcuts.items()}
    assert first == {"alpha": ("arch/alpha/kernel/smp.c", 659),
                     "arc": ("arch/arc/mm/tlb.c", 185),
                     "loongarch": ("arch/loongarch/kernel/smp.c", 690),
                     "mips": ("arch/mips/kernel/smp.c", 545),
                     "powerpc": ("arch/powerpc/mm/book3s64/radix_tlb.c", 805),
                     "sh": ("arch/sh/kernel/smp.c", 366),
                     "sparc": ("arch/sparc/mm/srmmu.c", 1675),
                     "um": ("arch/um/kernel/tlb.c", 219)}
    assert lookups.arch_shortcuts() is shortcuts            # kept by the object
    fresh = message.arch_shortcuts(tree)                    # searched again: no module cache
    assert fresh == shortcuts and fresh is not shortcuts
    assert lookups.describe_shortcut(shortcuts["mips"][0]) == \
        "arch/mips/kernel/smp.c:545 flush_tlb_mm(): mm_users == 0"
    for affected in (lookups.affected_archs, lambda rel: message.affected_archs(tree, rel)):
        assert affected("arch/powerpc/platforms/book3s/vas-api.c") == ["powerpc"]
        assert affected("arch/x86/kvm/xen.c") == []
        # idxd's Kconfig needs X86_64; bcachefs builds on every architecture.
        assert affected("drivers/dma/idxd/cdev.c") == []
        assert affected("fs/bcachefs/fs-io-direct.c") == sorted(shortcuts)


def test_arch_shortcuts_61():
    tree = support.kernel_tree("6.1")
    shortcuts = message.arch_shortcuts(tree)
    assert sorted(shortcuts) == ["alpha", "arc", "ia64", "loongarch", "mips", "powerpc", "sh",
                                 "sparc", "um"]
    _check_lines(tree, shortcuts)
    assert [e[:2] for e in shortcuts["ia64"]] == [("arch/ia64/include/asm/tlbflush.h", 85),
                                                  ("arch/ia64/kernel/smp.c", 297)]
    # "< 2" is "<= 1": powerpc frees hugepd tables at once for a lone user.
    assert ("arch/powerpc/mm/hugetlbpage.c", 281) in [e[:2] for e in shortcuts["powerpc"]]
    assert [e[:2] for e in shortcuts["um"]] == [("arch/um/kernel/tlb.c", 536),
                                                ("arch/um/kernel/tlb.c", 564)]


SHORTCUTS_C = """\
void flush_tlb_mm(struct mm_struct *mm)
{
	if (atomic_read(&mm->mm_users) == 0)
		return;
	/* if (atomic_read(&mm->mm_users) == 1) in a comment */
	if ((atomic_read(&mm->mm_users) != 1) || (current->mm != mm))
		ipi(mm);
	VM_BUG_ON(atomic_read(&mm->mm_users) <= 1);
	WARN_ON_ONCE(atomic_read(&mm->mm_users) == 1);
#ifdef CONFIG_DEBUG_VM
	if (atomic_read(&mm->mm_users) == 1)
		pr_info("one\\n");
#else
	if (1 == atomic_read(&mm->mm_users))
		local(mm);
#endif
	if (atomic_read(&mm->mm_users) > 3)
		local(mm);
}

static void check_pte(struct mm_struct *mm)
{
	if (!IS_ENABLED(CONFIG_DEBUG_VM))
		return;
	if (atomic_read(&mm->mm_users) <= 1)
		return;
}

void flush_tlb_page(struct vm_area_struct *vma)
{
	if (IS_ENABLED(CONFIG_DEBUG_VM) && atomic_read(&vma->vm_mm->mm_users) == 1)
		return;
	if (atomic_read(&vma->vm_mm->mm_users) < 2)
		local(vma);
}

int init_new_context(struct mm_struct *mm)
{
	if (atomic_read(&mm->mm_users) == 1)
		return 0;
	return 1;
}
"""


def test_shortcuts_in_c_text():
    found = message.shortcuts_in(SHORTCUTS_C, "smp.c")
    lines = SHORTCUTS_C.split("\n")
    assert [(lines[l - 1].strip(), fn) for l, _, fn in found] == [
        ("if (atomic_read(&mm->mm_users) == 0)", "flush_tlb_mm"),
        ("if ((atomic_read(&mm->mm_users) != 1) || (current->mm != mm))", "flush_tlb_mm"),
        ("if (1 == atomic_read(&mm->mm_users))", "flush_tlb_mm"),
        ("if (atomic_read(&vma->vm_mm->mm_users) < 2)", "flush_tlb_page")]
    assert found[1][1] == "(atomic_read(&mm->mm_users) != 1) || (current->mm != mm)"


def test_no_arch_directory(tmp_path):
    assert message.arch_shortcuts(str(tmp_path)) == {}
    assert message.affected_archs(str(tmp_path), "drivers/foo.c") == []


# --------------------------------------------------------------------------
# message()

OLD = """\
struct foo_ctx {
\tstruct mm_struct *mm;
};

static int foo_open(struct foo_ctx *ctx)
{
\tctx->mm = current->mm;
\treturn 0;
}

static int foo_worker(struct foo_ctx *ctx)
{
\tkthread_use_mm(ctx->mm);
\tkthread_unuse_mm(ctx->mm);
\treturn 0;
}
"""
NEW = OLD.replace("\tctx->mm = current->mm;\n", "\tctx->mm = current->mm;\n\tmmgrab(ctx->mm);\n") \
    .replace("\tkthread_use_mm(ctx->mm);\n", "\tif (!mmget_not_zero(ctx->mm))\n"
             "\t\treturn -EFAULT;\n\tkthread_use_mm(ctx->mm);\n") \
    .replace("\tkthread_unuse_mm(ctx->mm);\n", "\tkthread_unuse_mm(ctx->mm);\n\tmmput(ctx->mm);\n")
REL = "drivers/foo/foo.c"


def _plan(**extra):
    site = {"file": REL, "line": 13, "function": "foo_worker", "api": "kthread_use_mm",
            "mm": "ctx->mm", "verdict": "unreferenced", "reason": "",
            "evidence": [
                {"file": REL, "line": 7, "what": "ctx->mm = current->mm; — no reference taken",
                 "store": {"function": "foo_open", "type": "struct foo_ctx", "field": "mm",
                           "guard": [], "freed_before": None, "class": "bare"}},
                {"file": REL, "line": 13, "what": "kthread_use_mm(ctx->mm); — the borrow, "
                 "in foo_worker()"}]}
    p = {"site": site, "files": {REL: []}, "notes": [], "nullable": False, "mode": "early",
         "tag": "foo_ctx", "field": "mm", "guarded": False}
    p.update(extra)
    return p


DATA = {"tree": {"version": "6.12.0", "source": "linux"}}


def test_message_fixes_only_with_history(git_env, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    repo = new_repo(tmp_path / "linux")
    added = commit(repo, {REL: OLD}, "foo: Borrow the mm in the worker")
    plain = tmp_path / "plain"
    (plain / "drivers/foo").mkdir(parents=True)
    (plain / REL).write_text(OLD)
    author = "Ann Author <ann@kernel.org>"
    with_git = message.message(str(repo), DATA, _plan(), {REL: (OLD, NEW)}, author)
    without = message.message(str(plain), DATA, _plan(), {REL: (OLD, NEW)}, author)
    trailer = ('\n\nFixes: %s ("foo: Borrow the mm in the worker")\nCc: stable@vger.kernel.org\n'
               "Signed-off-by: %s\n---\n" % (added[:12], author))
    assert trailer in with_git
    assert "Fixes:" not in without and "stable@" not in without
    assert "\n\nSigned-off-by: %s\n---\n" % author in without
    for text in (with_git, without):
        assert text.startswith("From 0000000000000000000000000000000000000000 Mon Sep 17")
        assert "Date: Tue, 14 Nov 2023 22:13:20 +0000\n" in text
        assert "Found by mmaudit" in text
        assert "No architecture that can build drivers/foo/foo.c has TLB code that skips flushes" \
            in text.replace("\n", " ")
        assert " 1 file changed" in text and text.endswith("-- \nmmaudit %s\n" % support_version())
        body = text.split("\n\n", 1)[1].split("\n---\n")[0]
        assert all(len(l) <= 72 or l.startswith("  ") for l in body.split("\n"))
    # The prefix and capitalisation of the history; without it, the path's.
    assert "Subject: [PATCH] foo: Pin the mm borrowed by kthread_use_mm()\n" in with_git
    assert "Subject: [PATCH] drivers: foo: pin the mm borrowed by kthread_use_mm()\n" in without


def support_version():
    from mmaudit_lib import VERSION
    return VERSION


def test_message_names_the_plans_details(git_env, tmp_path):
    plain = tmp_path / "plain"
    (plain / "drivers/foo").mkdir(parents=True)
    (plain / REL).write_text(OLD)
    p = _plan(mode="label", label="out_unlock", errvar="ret", put="mmput_async",
              put_why="the worker runs on the workqueue that the last mmput() would flush",
              storing_functions=["foo_open", "foo_reopen"],
              indirect="An SVA bind already holds mm_count for the same mm.")
    text = " ".join(message.message(str(plain), DATA, p, {REL: (OLD, NEW)}, "A <a@kernel.org>")
                    .split("\n---\n")[0].split())
    assert "mmput_async() it after kthread_unuse_mm()" in text
    assert "The worker runs on the workqueue that the last mmput() would flush." in text
    assert "jump to the function's existing exit label, out_unlock" in text
    assert "set ret to -EFAULT" in text
    assert "where foo_open() and foo_reopen() store the mm" in text
    assert "An SVA bind already holds mm_count for the same mm." in text
    assert "foo_open() stores current->mm in struct foo_ctx.mm without taking any " \
        "reference: drivers/foo/foo.c:7 ctx->mm = current->mm;" in text


def _renamed(p, old, new):
    """Plan P, with every name that holds OLD holding NEW."""
    site = dict(p["site"], function=p["site"]["function"].replace(old, new),
                mm=p["site"]["mm"].replace("ctx", new + "_ctx"))
    site["evidence"] = [dict(e, what=e["what"].replace(old, new)) for e in site["evidence"]]
    site["evidence"][0]["store"] = dict(site["evidence"][0]["store"], function=new + "_open",
                                        type="struct %s_ctx" % new)
    return dict(p, site=site, tag=new + "_ctx")


def _count_searches(monkeypatch):
    """{"shortcuts": n, "drops": n}: the whole-tree searches made so far."""
    counts = {"shortcuts": 0, "drops": 0}

    def counted(name, real):
        def search(tree):
            counts[name] += 1
            return real(tree)
        return search
    for name, fn in (("shortcuts", "_scan_shortcuts"), ("drops", "_drop_files")):
        monkeypatch.setattr(message, fn, counted(name, getattr(message, fn)))
    return counts


def test_message_paragraphs_differ_between_patches(monkeypatch):
    """Nothing pasted: two findings share no paragraph but the API
    background (and the one-line "Found by" credit). The messages for one
    tree share a TreeLookups, which searches the tree once."""
    tree = support.kernel_tree("6.12")
    searches = _count_searches(monkeypatch)
    lookups = message.TreeLookups(tree)
    texts = [message.message(tree, DATA, _renamed(_plan(), "foo", name), {REL: (OLD, NEW)},
                             "A <a@kernel.org>", lookups=lookups) for name in ("foo", "bar")]
    assert searches["shortcuts"] == 1
    paras = [set(t.split("\n\n", 1)[1].split("\nSigned-off-by:")[0].split("\n\n"))
             for t in texts]
    shared = {p for p in paras[0] & paras[1] if not p.startswith("Found by mmaudit")}
    assert not shared - {message.API}
    flat = " ".join(texts[0].split())
    assert "arch/powerpc/mm/book3s64/radix_tlb.c:805 flush_type_needed(): mm_users <= 1" in flat
    assert "the TLB code of these 8 architectures" in flat


def test_kvm_messages_lead_with_the_change(git_env, tmp_path):
    """Documentation/process/maintainer-kvm-x86.rst: the change first."""
    plain = tmp_path / "plain"
    rel = "arch/x86/kvm/xen.c"
    (plain / "arch/x86/kvm").mkdir(parents=True)
    (plain / rel).write_text(OLD)
    p = _plan()
    p["site"] = dict(p["site"], file=rel, verdict="grab-only")
    text = message.message(str(plain), DATA, p, {rel: (OLD, NEW)}, "A <a@kernel.org>")
    assert "Subject: [PATCH] KVM: x86/xen: Take an mm_users reference around " \
        "kthread_use_mm()\n\nTake mm_users with mmget_not_zero() before foo_worker()" in text
    assert "Therefore" not in text


DROPS = OLD + """
static void foo_release(struct foo_ctx *ctx)
{
\tmmdrop(ctx->mm);
}

static void foo_put(struct foo_ctx *c)
{
\tstruct mm_struct *mm = c->mm;

\tmmdrop(mm);
}

static void bar_release(struct bar_ctx *ctx)
{
\tmmdrop(ctx->mm);
}
"""


def test_existing_drops_and_one_search_per_lookups(git_env, tmp_path, monkeypatch):
    """existing_drops() finds mmdrop() of the field through the struct or a
    local copy of it; a TreeLookups greps the tree once, message() without
    one makes its own, and nothing is kept between them."""
    plain = tmp_path / "plain"
    (plain / "drivers/foo").mkdir(parents=True)
    (plain / REL).write_text(DROPS)
    (plain / "drivers/foo/other.c").write_text("int x;\n")
    searches = _count_searches(monkeypatch)
    # The texts are compared whole: one Date for all, not the clock's second.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    lookups = message.TreeLookups(str(plain))
    found = [("foo_release", REL, 20), ("foo_put", REL, 27)]
    assert lookups.existing_drops("foo_ctx", "mm") == found
    assert lookups.existing_drops("bar_ctx", "mm") == [("bar_release", REL, 32)]
    assert lookups.existing_drops("foo_ctx", "other") == []
    assert searches["drops"] == 1
    p = _plan()
    p["site"] = dict(p["site"], verdict="grab-only")
    texts = [message.message(str(plain), DATA, p, {REL: (OLD, NEW)}, "A <a@kernel.org>",
                             lookups=lookups) for _ in range(2)]
    assert searches == {"drops": 1, "shortcuts": 1}
    assert "mmdrop() drops that mm_count reference in foo_release() (drivers/foo/foo.c:20), " \
        "foo_put() (drivers/foo/foo.c:27); nothing holds mm_users" in " ".join(texts[0].split())
    assert texts[1] == texts[0]
    assert message.message(str(plain), DATA, p, {REL: (OLD, NEW)}, "A <a@kernel.org>") == texts[0]
    assert searches == {"drops": 2, "shortcuts": 2}
