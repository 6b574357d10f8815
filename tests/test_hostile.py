"""Hostile and unlucky input: the audit never says "pinned" on a failed
analysis, never trusts a damaged cache, never writes outside its output,
and every bad input is one line on stderr with exit 2.

Run against the code before issue 10 (commit d519b71), 34 of these
tests failed: it said pinned with exit 0, trusted the cache, wrote where it
must not or crashed with a traceback.  Five are guards that already passed
there (a null, truncated or binary cache entry, a read-only cache, a
directory given to diff).  The tests of the tokenizer, the file-name parsing, the
tarball unpacking and --verify/--apply live in test_scan_hostile.py,
test_tree_hostile.py and test_verify_hostile.py."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

import support

sys.path.insert(0, os.path.join(support.ROOT, "scripts"))

BORROW = "struct c { struct mm_struct *mm; };\nvoid f(struct c *x) { kthread_use_mm(x->mm); }\n"
GRAB_ONLY = os.path.join(support.AUDIT_FIXTURES, "field_grab_only_in_other_file")


def one_line_error(proc, words=""):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmaudit: error: "), proc.stderr
    assert words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def audit_json(tree, *args, env=None, timeout=300):
    proc = support.run_mmaudit("audit", "-q", "--format", "json", str(tree), *args,
                               env=env, timeout=timeout)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def cache_env(tmp_path):
    return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))


# --- Fail closed: a run that did not finish is never "pinned" ---------------

def big_function(path, statements=4000):
    """The borrow comes after thousands of statements: spatch prints the
    site fact, then times out in the path search."""
    with open(path, "w") as f:
        f.write("struct c { struct mm_struct *mm; int a, b; };\nvoid f(struct c *x)\n{\n")
        for i in range(statements):
            f.write("\tif (x->a == %d)\n\t\tx->b++;\n" % i)
        f.write("\tkthread_use_mm(x->mm);\n}\n")


def test_timeout_is_unanalyzed_and_not_cached(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    big_function(tree / "big.c")
    env = cache_env(tmp_path)
    for _ in range(2):          # the second run must not take a cached "pinned"
        code, data = audit_json(tree, "--timeout", "2", "-j", "1", env=env)
        site, = data["sites"]
        assert site["verdict"] == "unanalyzed" and code == 1
        assert [f["file"] for f in data["stats"]["files_failed"]] == ["big.c"]


FAKE_SPATCH = """#!%s
# spatch killed mid-run (as by the OOM killer), after the site fact.
import os, signal, subprocess, sys
real = os.environ["REAL_SPATCH"]
if "--version" in sys.argv:
    os.execv(real, [real] + sys.argv[1:])
out = subprocess.run([real] + sys.argv[1:], capture_output=True, text=True).stdout
for line in out.splitlines():
    print(line, flush=True)
    if '"kind": "site"' in line:
        break
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_spatch_is_unanalyzed(tmp_path):
    fake = tmp_path / "spatch"
    fake.write_text(FAKE_SPATCH % sys.executable)
    fake.chmod(0o755)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.c").write_text(BORROW)
    env = dict(cache_env(tmp_path), SPATCH=str(fake), REAL_SPATCH=shutil.which("spatch"))
    code, data = audit_json(tmp_path / "tree", "--no-cache", env=env)
    site, = data["sites"]
    assert site["verdict"] == "unanalyzed" and "killed" in site["reason"]
    assert code == 1 and [f["file"] for f in data["stats"]["files_failed"]] == ["a.c"]


# --- The fact cache is checked, never trusted -------------------------------

def cache_entries(tmp_path):
    root = tmp_path / "cache" / "mmaudit" / "facts"
    return sorted(p for p in root.rglob("*.json"))


def poison(tmp_path, change):
    entries = cache_entries(tmp_path)
    assert entries
    for path in entries:
        change(path)


@pytest.fixture
def cached_grab_only(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(GRAB_ONLY, tree)
    code, cold = audit_json(tree, env=cache_env(tmp_path))
    assert code == 1 and cold["sites"][0]["verdict"] == "grab-only"
    return tree, cold


def _drop_unpinned(path):
    entry = json.loads(path.read_text())
    facts = entry["facts"] if isinstance(entry, dict) else entry
    facts[:] = [f for f in facts if f.get("kind") != "unpinned"]
    path.write_text(json.dumps(entry))


@pytest.mark.parametrize("change", [
    _drop_unpinned,
    lambda p: p.write_text("[]"),
    lambda p: p.write_text("{}"),
    lambda p: p.write_text("null"),
    lambda p: p.write_bytes(p.read_bytes()[:40]),
    lambda p: p.write_bytes(b"\xff\xfe" * 100),
    lambda p: (p.unlink(), os.mkfifo(p)),
    lambda p: (p.unlink(), os.symlink("/dev/zero", p)),
], ids=["unpinned-removed", "list", "object", "null", "truncated", "binary", "fifo", "device"])
def test_damaged_cache_entry_is_a_miss(tmp_path, cached_grab_only, change):
    tree, cold = cached_grab_only
    poison(tmp_path, change)
    code, warm = audit_json(tree, env=cache_env(tmp_path), timeout=60)
    assert code == 1 and warm == cold


def test_forged_cache_entry_is_unanalyzed(tmp_path, cached_grab_only):
    """An entry rewritten with a valid digest but without the fact that says
    whether the borrow is pinned: no fact is never a pin."""
    from mmaudit_lib import facts
    tree, cold = cached_grab_only

    def forge(path):
        entry = json.loads(path.read_text())
        entry["facts"] = [f for f in entry["facts"] if f["kind"] not in ("unpinned", "pinned")]
        entry["digest"] = facts._digest(entry["key"], entry["facts"])
        path.write_text(json.dumps(entry))
    poison(tmp_path, forge)
    code, warm = audit_json(tree, env=cache_env(tmp_path))
    assert code == 1
    verdicts = {s["file"]: s["verdict"] for s in warm["sites"]}
    assert verdicts == {"worker.c": "unanalyzed"}


def test_forged_store_facts_are_unanalyzed(tmp_path, cached_grab_only):
    from mmaudit_lib import facts
    tree, _ = cached_grab_only

    def forge(path):
        entry = json.loads(path.read_text())
        entry["facts"] = [f for f in entry["facts"] if f["kind"] not in ("nopin",)]
        entry["digest"] = facts._digest(entry["key"], entry["facts"])
        path.write_text(json.dumps(entry))
    poison(tmp_path, forge)
    code, warm = audit_json(tree, env=cache_env(tmp_path))
    site, = warm["sites"]
    assert code == 1 and site["verdict"] == "unanalyzed" and "incomplete" in site["reason"]


def test_read_only_cache_costs_time_only(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(GRAB_ONLY, tree)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "mmaudit").write_text("not a directory")
    code, data = audit_json(tree, env=cache_env(tmp_path))
    assert code == 1 and data["sites"][0]["verdict"] == "grab-only"


# --- Outputs: checked first, written whole, only ours replaced --------------

def test_output_at_an_existing_file(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(support.run_mmaudit("audit", "-q", "-o", str(tmp_path / "file"), GRAB_ONLY),
                   "not a directory")


def test_output_at_a_dangling_symlink(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    one_line_error(support.run_mmaudit("audit", "-q", "-o", str(tmp_path / "link"), GRAB_ONLY))
    assert not (tmp_path / "nowhere").exists()


def test_output_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(support.run_mmaudit("audit", "-q", "-o", str(tmp_path / "file" / "out"),
                                       GRAB_ONLY), "not a directory")


def test_output_in_a_read_only_directory(open_tmp):
    """Checked before the audit; as root, run as nobody (root may write anywhere)."""
    tmp_path = open_tmp
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    mmaudit, fixture = support.MMAUDIT, GRAB_ONLY
    if os.geteuid() == 0:   # nobody may not reach the checkout: use a copy
        for part in ("scripts", "cocci"):
            shutil.copytree(os.path.join(support.ROOT, part), tmp_path / "project" / part)
        shutil.copytree(GRAB_ONLY, tmp_path / "fixture")
        mmaudit, fixture = str(tmp_path / "project" / "scripts" / "mmaudit"), str(tmp_path / "fixture")
    cmd = [sys.executable, mmaudit, "audit", "-q", "-o", str(ro / "out"), fixture]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"] + cmd
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "nobody-cache"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    one_line_error(proc, "cannot write")
    assert os.listdir(ro) == []


def test_outputs_keep_the_users_files_and_honour_the_umask(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "TRIAGE.md").write_text("mine\n")
    env = dict(os.environ)
    cmd = "umask 027 && exec %s %s audit -q -o %s %s" % (sys.executable, support.MMAUDIT, out,
                                                          GRAB_ONLY)
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    assert sorted(os.listdir(out)) == [".mmaudit-outputs", "REPORT.md", "TRIAGE.md",
                                       "findings.json", "findings.sarif"]
    assert (out / "TRIAGE.md").read_text() == "mine\n"
    assert stat.S_IMODE(os.stat(out / "findings.json").st_mode) == 0o640
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_publish_is_all_or_nothing(tmp_path, monkeypatch):
    from mmaudit_lib import UsageError, output
    out = tmp_path / "out"
    output.publish(str(out), {"a": "old a\n", "b": "old b\n"})
    real = output._write
    calls = []

    def fail_on_second(path, text, mode):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, text, mode)
    monkeypatch.setattr(output, "_write", fail_on_second)
    with pytest.raises(UsageError):
        output.publish(str(out), {"a": "new a\n", "b": "new b\n"})
    assert (out / "a").read_text() == "old a\n" and (out / "b").read_text() == "old b\n"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_publish_replaces_only_what_it_wrote(tmp_path):
    from mmaudit_lib import output
    out = tmp_path / "out"
    output.publish(str(out), {"0001-a.patch": "1\n", "0002-b.patch": "2\n", "README.md": "r\n"})
    (out / "notes.txt").write_text("mine\n")
    (out / "0009-mine.patch").write_text("mine\n")
    output.publish(str(out), {"0001-c.patch": "3\n", "README.md": "r2\n"})
    assert sorted(os.listdir(out)) == [".mmaudit-outputs", "0001-c.patch", "0009-mine.patch",
                                       "README.md", "notes.txt"]


def test_fix_refuses_a_foreign_output_directory(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "0001-keep.patch").write_text("my own patch\n")
    (out / "README.md").write_text("my readme\n")
    tree = tmp_path / "tree"
    shutil.copytree(GRAB_ONLY, tree)
    proc = support.run_mmaudit("fix", "-q", "--signoff", support.FIX_SIGNOFF, "-o", str(out),
                               "--release-dir", str(tmp_path / "reports"), str(tree))
    one_line_error(proc, "not written by mmaudit")
    assert (out / "0001-keep.patch").read_text() == "my own patch\n"
    assert (out / "README.md").read_text() == "my readme\n"


def test_fix_apply_refuses_a_tarball(tmp_path):
    proc = support.run_mmaudit("fix", "-q", "--apply", str(tmp_path / "linux.tar.xz"))
    one_line_error(proc, "--apply")


def test_release_name_cannot_leave_the_reports_directory(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(GRAB_ONLY, tree)
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\n"
                                   "EXTRAVERSION = /../../../../escaped\n")
    reports = tmp_path / "a" / "b" / "reports"
    proc = support.run_mmaudit("audit", "-q", "--release-dir", str(reports), str(tree))
    assert proc.returncode == 1, proc.stderr
    made, = os.listdir(reports)
    assert "/" not in made and made.startswith("linux-6.12.0")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "a" / "escaped").exists()


# --- merge and diff take any file: checked before use -------------------------

def shard_files(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(GRAB_ONLY, tree)
    paths = []
    for i in (1, 2):
        proc = support.run_mmaudit("audit", "-q", "--shard", "%d/2" % i, "--format", "json",
                                   str(tree))
        paths.append(tmp_path / ("s%d.json" % i))
        paths[-1].write_text(proc.stdout)
    return paths


def _without_tree(d):
    del d["tree"]
    return d


def _bad_line(d):
    (d["sites"] or [{}])[0]["line"] = "12"
    return d


def _duplicate(d):
    d["sites"] = d["sites"] * 2
    return d


@pytest.mark.parametrize("change", [
    lambda d: [], lambda d: None, lambda d: "text", _without_tree, _bad_line, _duplicate,
], ids=["list", "null", "string", "no-tree", "bad-type", "duplicate-sites"])
def test_merge_rejects_bad_shards(tmp_path, change):
    s1, s2 = shard_files(tmp_path)
    data = json.loads(s1.read_text())
    if not data["sites"]:
        s1, s2 = s2, s1
        data = json.loads(s1.read_text())
    s1.write_text(json.dumps(change(data)))
    one_line_error(support.run_mmaudit("merge", "-q", "--format", "json", str(s1), str(s2)))


def test_merge_rejects_overlapping_shards(tmp_path):
    s1, s2 = shard_files(tmp_path)
    a, b = json.loads(s1.read_text()), json.loads(s2.read_text())
    b["sites"] += a["sites"]
    s2.write_text(json.dumps(b))
    one_line_error(support.run_mmaudit("merge", "-q", str(s1), str(s2)), "overlap")


@pytest.fixture(scope="module")
def findings_file(tmp_path_factory):
    """A good findings.json: the errors below must come from the other input."""
    path = tmp_path_factory.mktemp("findings") / "findings.json"
    proc = support.run_mmaudit("audit", "-q", "--format", "json", GRAB_ONLY)
    assert proc.returncode == 1 and json.loads(proc.stdout)["summary"]["grab-only"] == 1, \
        proc.stderr
    path.write_text(proc.stdout)
    return path


@pytest.mark.parametrize("content", [
    b"", b"[]", b"{}", b"null", b"\x00\xff\xfe binary", b'{"schema": "mmaudit-findings/1"',
], ids=["empty", "list", "object", "null", "binary", "truncated"])
def test_diff_rejects_bad_input(tmp_path, findings_file, content):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    one_line_error(support.run_mmaudit("diff", str(findings_file), str(bad)), str(bad))
    one_line_error(support.run_mmaudit("diff", str(bad), str(findings_file)), str(bad))


def test_diff_into_a_missing_directory(tmp_path, findings_file):
    one_line_error(support.run_mmaudit("diff", str(findings_file), str(findings_file), "-o",
                                       str(tmp_path / "missing" / "d.md")),
                   "%s: no such directory" % (tmp_path / "missing"))


def test_diff_of_a_directory(tmp_path, findings_file):
    one_line_error(support.run_mmaudit("diff", str(findings_file), str(tmp_path)))


# --- What names can do to the outputs ----------------------------------------

HOSTILE_NAME = "x|y`z<img src=x onerror=alert(1)>\x1b[31m.c"


def test_hostile_file_names_are_escaped(tmp_path):
    (tmp_path / HOSTILE_NAME).write_text(BORROW)
    (tmp_path / "a b%.c").write_text(BORROW)
    out = tmp_path / "out"
    proc = support.run_mmaudit("audit", "-o", str(out), str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    md = (out / "REPORT.md").read_text()
    outside_code = re.sub(r"(`+)(?:(?!\1).)*\1", "", md)   # code spans show text as is
    assert "<img" not in outside_code and "\x1b" not in md
    rows = [l for l in md.splitlines() if l.startswith("| ") and "kthread_use_mm" in l]
    assert len(rows) == 2
    for row in rows:        # six cells: no | from a name splits a cell
        cells = re.split(r"(?<!\\)\|", row)[1:-1]
        assert len(cells) == 6, row
    sarif = json.loads((out / "findings.sarif").read_text())
    uris = sorted(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                  for r in sarif["runs"][0]["results"])
    assert "a%20b%25.c" in uris
    assert all(" " not in u and "<" not in u and "`" not in u for u in uris)


def test_fix_refuses_a_reserved_domain_identity_from_git_config(tmp_path):
    """An author address in a reserved domain (here .example) from git
    config: one line, exit 2, no patch; named with --signoff, it is used."""
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = Placeholder\n\temail = someone@host.example\n")
    env = dict(os.environ, GIT_CONFIG_GLOBAL=str(config), GIT_CONFIG_NOSYSTEM="1",
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    tree = tmp_path / "tree"
    shutil.copytree(GRAB_ONLY, tree)
    out = tmp_path / "out"
    proc = support.run_mmaudit("fix", "-q", "-o", str(out), "--release-dir",
                               str(tmp_path / "reports"), str(tree), env=env)
    one_line_error(proc, "reserved")
    assert not out.exists()
    proc = support.run_mmaudit("fix", "-q", "-o", str(out), "--release-dir",
                               str(tmp_path / "reports"), "--signoff",
                               "Placeholder <someone@host.example>", str(tree), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    patch, = [p for p in os.listdir(out) if p.endswith(".patch")]
    assert "Signed-off-by: Placeholder <someone@host.example>" in (out / patch).read_text()
