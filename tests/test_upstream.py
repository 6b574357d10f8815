"""mmaudit upstream-series: the kernel series (kthread_use_mm() kernel-doc,
the rule as scripts/coccinelle/api/kthread_use_mm.cocci) on Debian's 6.12
tree, checked the way a maintainer would: git am on a git repository of
the tree, checkpatch.pl --strict in the tree, scripts/kernel-doc on the
patched file, and make coccicheck with the installed rule.  The tree
itself is never written: the repository is a hard-linked copy, and the
files git am replaces are checksummed in the original before and after."""

import email
import email.policy
import hashlib
import os
import re
import subprocess
import tempfile

import pytest

import support
from mmaudit_lib import UsageError, upstream

SIGNOFF = support.FIX_SIGNOFF
EPOCH = "1767225600"        # 2026-01-01 00:00:00 UTC
RULE_IN_TREE = "scripts/coccinelle/api/kthread_use_mm.cocci"
SUBJECTS = [
    "[PATCH 0/2] kthread_use_mm(): document the mm_users requirement and add a coccinelle "
    "check",
    "[PATCH 1/2] kthread: document that kthread_use_mm() callers must hold an mm_users "
    "reference",
    "[PATCH 2/2] coccinelle: api: add kthread_use_mm.cocci",
]
TOUCHED = ("kernel/kthread.c", "MAINTAINERS")


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _git_env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=home, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_AUTHOR_NAME="Tree Base", GIT_AUTHOR_EMAIL="tree@kernel.org",
               GIT_COMMITTER_NAME="Tree Base", GIT_COMMITTER_EMAIL="tree@kernel.org",
               GIT_COMMITTER_DATE="@%s +0000" % EPOCH, GIT_AUTHOR_DATE="@%s +0000" % EPOCH)
    return env


def _coccicheck(tree, rule):
    proc = subprocess.run(["make", "-s", "coccicheck", "MODE=report", "COCCI=" + rule, "J=2"],
                          cwd=tree, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Skipping coccinelle SmPL patch" not in proc.stdout
    return sorted(l for l in proc.stdout.splitlines() if upstream.REPORT_LINE.match(l))


def _headers(text):
    return email.message_from_string(text, policy=email.policy.default)


@pytest.fixture(scope="module")
def tree612():
    return support.kernel_tree("6.12")


@pytest.fixture(scope="module")
def work():
    with tempfile.TemporaryDirectory(prefix="mmaudit-test-upstream-") as tmp:
        yield tmp


@pytest.fixture(scope="module")
def series(tree612, work):
    """The series' files {name: text}, the rule as it was when the series
    was made, and the checksums of the files it touches in the tree."""
    before = {rel: _sha(os.path.join(tree612, rel)) for rel in TOUCHED}
    with open(support.RULE, "rb") as f:
        rule = upstream.kernel_copy(f.read().decode("utf-8")).encode("utf-8")
    out = os.path.join(work, "series")
    proc = support.run_mmaudit("upstream-series", "-q", "--signoff", SIGNOFF, "-o", out,
                               tree612, env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH))
    assert proc.returncode == 0, proc.stderr
    names = sorted(n for n in os.listdir(out) if not n.startswith("."))
    texts = {}
    for name in names:
        with open(os.path.join(out, name), encoding="utf-8") as f:
            texts[name] = f.read()
    rule_copy = os.path.join(work, "use_mm.cocci")
    with open(rule_copy, "wb") as f:
        f.write(rule)
    return {"dir": out, "texts": texts, "rule": rule, "rule_copy": rule_copy, "before": before,
            "stdout": proc.stdout}


@pytest.fixture(scope="module")
def applied(tree612, series, work):
    """A git repository made from a hard-linked copy of the tree, with the
    two patches applied by git am."""
    repo = os.path.join(work, "linux")
    subprocess.run(["cp", "-al", tree612, repo], check=True)
    env = _git_env(work)

    def git(*args):
        return subprocess.run(["git"] + list(args), cwd=repo, env=env, capture_output=True,
                              text=True)
    for args in (["init", "-q"], ["-c", "core.looseCompression=0", "add", "-A", "-f"],
                 ["commit", "-q", "-m", "Linux 6.12 (Debian linux-source-6.12)"]):
        proc = git(*args)
        assert proc.returncode == 0, (args, proc.stderr)
    patches = [os.path.join(series["dir"], n) for n in sorted(series["texts"]) if n[:4] != "0000"]
    am = git("am", *patches)
    log = git("log", "--format=%s", "-n", "3").stdout.splitlines()
    status = git("status", "--porcelain").stdout
    return {"repo": repo, "am": am, "log": log, "status": status}


@pytest.fixture(scope="module")
def installed(applied):
    """What make coccicheck reports with the rule the series installs."""
    return _coccicheck(applied["repo"], RULE_IN_TREE)


# --------------------------------------------------------------------------
# The series as written

def test_two_patches_and_a_cover_letter(series):
    names = sorted(series["texts"])
    assert len(names) == 3 and names[0] == "0000-cover-letter.patch"
    assert names[1].startswith("0001-kthread-") and names[2].startswith("0002-coccinelle-")
    assert series["stdout"].splitlines() == [os.path.join(series["dir"], n) for n in names]
    with open(os.path.join(series["dir"], ".mmaudit-outputs")) as f:
        assert f.read().split() == names


def test_headers_trailers_and_diff(series):
    for (name, text), subject in zip(sorted(series["texts"].items()), SUBJECTS):
        msg = _headers(text)
        assert text.startswith("From 0000000000000000000000000000000000000000 ")
        assert msg["Subject"] == subject, name
        assert msg["From"] == SIGNOFF
        assert msg["Date"] == "Thu, 01 Jan 2026 00:00:00 +0000" or \
            msg["Date"] == "Thu, 1 Jan 2026 00:00:00 +0000"
        assert text.endswith("\n-- \nmmaudit 0.1.0\n\n") or text.endswith("\n-- \nmmaudit 0.1.0\n")
        if name.startswith("0000"):
            continue
        body, _, diff = text.partition("\n---\n")
        trailer = body.rsplit("\n\n", 1)[1].splitlines()
        assert "Signed-off-by: %s" % SIGNOFF in trailer
        assert trailer[-1].startswith("Cc: ")
        assert re.search(r"^ \d+ files? changed, \d+ insertions?\(\+\)", diff, re.M)
        for path in re.findall(r"^diff --git a/(\S+) b/(\S+)$", diff, re.M):
            assert path[0] == path[1]


def test_cc_from_get_maintainer(series):
    texts = [t for n, t in sorted(series["texts"].items()) if n[:4] != "0000"]
    cc = [re.findall(r"^Cc: (.*)$", t, re.M) for t in texts]
    assert "linux-kernel@vger.kernel.org" in cc[0]
    assert "Julia Lawall <Julia.Lawall@inria.fr>" in cc[1] and "cocci@inria.fr" in cc[1]
    assert "linux-mm@kvack.org" in cc[1]      # the MAINTAINERS entry the patch adds


def test_patch_2_is_the_rule_as_is(series):
    text = [t for n, t in series["texts"].items() if n.startswith("0002")][0]
    diff = text.split("\ndiff --git a/%s b/%s\n" % (RULE_IN_TREE, RULE_IN_TREE))[1]
    diff = diff.split("\n-- \n")[0]
    added = "".join(l[1:] + "\n" for l in diff.split("\n@@", 1)[1].split("\n")[1:])
    assert "new file mode 100644" in diff
    assert added.encode("utf-8") == series["rule"]


def test_cover_letter_lists_what_the_rule_reports(series, installed):
    cover = series["texts"]["0000-cover-letter.patch"]
    listed = sorted(l for l in cover.splitlines() if upstream.REPORT_LINE.match(l))
    assert listed == installed
    assert "reports %d call site" % len(listed) in cover
    assert upstream.THREAD in cover
    assert re.search(r"^ 3 files changed, \d+ insertions\(\+\)$", cover, re.M)
    assert "create mode 100644 %s" % RULE_IN_TREE in cover


# --------------------------------------------------------------------------
# Applied to the tree

def test_git_am_applies_both_patches(applied):
    assert applied["am"].returncode == 0, applied["am"].stdout + applied["am"].stderr
    assert applied["log"] == [s.split("] ", 1)[1] for s in reversed(SUBJECTS[1:])] + [
        "Linux 6.12 (Debian linux-source-6.12)"]
    assert applied["status"] == ""


def test_the_tree_itself_is_unchanged(tree612, series, applied):
    for rel in TOUCHED:
        assert _sha(os.path.join(tree612, rel)) == series["before"][rel], rel
        assert not os.path.samefile(os.path.join(tree612, rel),
                                    os.path.join(applied["repo"], rel)), rel
    assert not os.path.exists(os.path.join(tree612, RULE_IN_TREE))


def test_rule_installed_byte_for_byte(series, applied):
    with open(os.path.join(applied["repo"], RULE_IN_TREE), "rb") as f:
        assert f.read() == series["rule"]


@pytest.mark.parametrize("index", [1, 2])
def test_checkpatch_strict_clean_in_tree(series, applied, index):
    name = [n for n in sorted(series["texts"]) if n.startswith("%04d-" % index)][0]
    proc = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", "--show-types",
                           os.path.join(series["dir"], name)], cwd=applied["repo"],
                          capture_output=True, text=True)
    assert "total: 0 errors, 0 warnings, 0 checks" in proc.stdout, proc.stdout
    assert proc.returncode == 0, proc.stdout


def test_kernel_doc_clean(applied):
    proc = subprocess.run(["perl", "scripts/kernel-doc", "-none", "kernel/kthread.c"],
                          cwd=applied["repo"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr
    rst = subprocess.run(["perl", "scripts/kernel-doc", "-rst", "-sphinx-version", "3.0",
                          "-function", "kthread_use_mm", "kernel/kthread.c"],
                         cwd=applied["repo"], capture_output=True, text=True)
    assert rst.returncode == 0 and rst.stderr == "", rst.stderr
    text = " ".join(rst.stdout.split())
    for words in ("must hold an mm_users reference", "mmget_not_zero()", "get_task_mm()",
                  "kthread_unuse_mm()", "exit_mmap()", "**Context**"):
        assert words in text, words


def test_coccicheck_in_patched_tree_gives_the_rule_warnings(series, applied, installed):
    assert installed, "the rule reports nothing on 6.12"
    assert installed == _coccicheck(applied["repo"], series["rule_copy"])


# --------------------------------------------------------------------------
# Small trees and the kernel-doc edit

def _small_tree(root, kthread=None, mmu_context=None):
    os.makedirs(os.path.join(root, "kernel"))
    os.makedirs(os.path.join(root, "mm"))
    if kthread is not None:
        with open(os.path.join(root, "kernel", "kthread.c"), "w") as f:
            f.write(kthread)
    if mmu_context is not None:
        with open(os.path.join(root, "mm", "mmu_context.c"), "w") as f:
            f.write(mmu_context)
    return str(root)


def _one_line_error(proc, words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmaudit: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0]


def test_tree_before_5_8_is_refused(tmp_path):
    tree = _small_tree(tmp_path / "linux-5.4", kthread="int kthread_stop(void);\n",
                       mmu_context="void use_mm(struct mm_struct *mm)\n{\n}\n")
    proc = support.run_mmaudit("upstream-series", "--signoff", SIGNOFF, "-o",
                               str(tmp_path / "out"), tree)
    _one_line_error(proc, ["use_mm()", "before 5.8", "targets kthread_use_mm()"])
    assert not os.path.exists(tmp_path / "out")


def test_foreign_directory_is_refused(tmp_path):
    tree = _small_tree(tmp_path / "linux", kthread="void kthread_use_mm(struct mm_struct *mm)\n"
                       "{\n}\n")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    proc = support.run_mmaudit("upstream-series", "--signoff", SIGNOFF, "-o", str(out), tree)
    _one_line_error(proc, ["not written by mmaudit", "--force"])
    assert os.listdir(out) == ["notes.txt"]


def test_reserved_domain_from_git_config_is_refused(tmp_path):
    tree = _small_tree(tmp_path / "linux", kthread="void kthread_use_mm(struct mm_struct *mm)\n"
                       "{\n}\n")
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = Some One\n\temail = someone@example.com\n")
    env = dict(os.environ, GIT_CONFIG_GLOBAL=str(config), GIT_CONFIG_NOSYSTEM="1")
    proc = support.run_mmaudit("upstream-series", "-o", str(tmp_path / "out"), tree, env=env,
                               cwd=str(tmp_path))
    _one_line_error(proc, ["reserved domain"])


def _kernel_doc(tree, text, tmp_path):
    path = tmp_path / "kthread.c"
    path.write_text(text)
    none = subprocess.run(["perl", os.path.join(tree, "scripts", "kernel-doc"), "-none",
                           str(path)], capture_output=True, text=True)
    rst = subprocess.run(["perl", os.path.join(tree, "scripts", "kernel-doc"), "-rst",
                          "-sphinx-version", "3.0", "-function", "kthread_use_mm", str(path)],
                         capture_output=True, text=True)
    return none.stdout + none.stderr, " ".join(rst.stdout.split())


def _without_doc(tree):
    with open(os.path.join(tree, "kernel", "kthread.c")) as f:
        text = f.read()
    doc = re.search(r"/\*\*\n \* kthread_use_mm -.*?\*/\n", text, re.S).group(0)
    return text, doc


def test_no_kernel_doc_gets_a_full_one(tree612, tmp_path):
    text, doc = _without_doc(tree612)
    new, done = upstream.document(text.replace(doc, ""))
    assert done == {"added": True, "context": True}
    warnings, rst = _kernel_doc(tree612, new, tmp_path)
    assert warnings == ""
    assert "kthread_use_mm - make the calling kthread operate on an address space" in \
        new.replace("\n * ", " ")
    for words in ("**Parameters**", "``struct mm_struct *mm`` address space to operate on",
                  "must hold an mm_users reference", "**Context**"):
        assert words in rst, words


def test_plain_comment_becomes_the_description(tree612, tmp_path):
    text, doc = _without_doc(tree612)
    new, done = upstream.document(text.replace(doc, "/*\n * Borrow an mm for a while.\n */\n"))
    warnings, rst = _kernel_doc(tree612, new, tmp_path)
    assert warnings == "" and done["added"]
    assert "Borrow an mm for a while." in rst and "must hold an mm_users reference" in rst
    assert "/*\n * Borrow" not in new


def test_existing_sections_are_kept(tree612, tmp_path):
    text, doc = _without_doc(tree612)
    longer = ("/**\n * kthread_use_mm - make the calling kthread operate on an address space\n"
              " * @mm: address space to operate on\n *\n * Some words.\n *\n"
              " * Context: Kthread context.\n */\n")
    new, done = upstream.document(text.replace(doc, longer))
    assert done == {"added": False, "context": False}
    warnings, rst = _kernel_doc(tree612, new, tmp_path)
    assert warnings == ""
    assert rst.index("Some words.") < rst.index("must hold an mm_users") < rst.index(
        "Kthread context.")
    assert new.count("Context:") == text.count("Context:") + 1     # the one it had


def test_documented_already_is_refused(tree612):
    text, doc = _without_doc(tree612)
    with pytest.raises(UsageError, match="already mentions mm_users"):
        upstream.document(text.replace(doc, doc.replace("operate on\n", "operate on; "
                                                        "hold mm_users\n", 1)))


def test_maintainers_entry_in_alphabetical_order():
    text = ("MEMORY MANAGEMENT\nM:\tA <a@b.org>\nL:\tlinux-mm@kvack.org\nF:\tinclude/x.h\n"
            "F:\tmm/\nF:\ttools/mm/\n\nNEXT\nF:\tz/\n")
    new, section, mlist = upstream.maintainers_entry(text)
    assert section == "MEMORY MANAGEMENT" and mlist == "linux-mm@kvack.org"
    assert "F:\tmm/\nF:\t%s\nF:\ttools/mm/\n" % RULE_IN_TREE in new
    assert upstream.maintainers_entry(new) is None
    assert upstream.maintainers_entry("OTHER\nF:\tx/\n") is None


def test_git_is_isolated_from_user_config(tmp_path, monkeypatch):
    """diff.noprefix or format.signature in the user's config must not
    change the patches."""
    config = tmp_path / "gitconfig"
    config.write_text("[diff]\n\tnoprefix = true\n[format]\n\tsignature = other\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    texts = upstream.format_patch({"a.c": b"int a;\n"}, [("x: change a\n\nWhy.\n",
                                                          {"a.c": b"int b;\n"})],
                                  SIGNOFF, "subject", "body")
    patch = [t for n, t in texts.items() if n.startswith("0001")][0]
    assert "--- a/a.c\n+++ b/a.c\n" in patch and patch.endswith("-- \nmmaudit 0.1.0\n\n")
