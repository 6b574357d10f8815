"""Shared helpers of the tests and of `make bless`."""

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from mmaudit_lib import spatch, tree as treemod  # noqa: E402

RULE = os.path.join(ROOT, "cocci", "use_mm.cocci")
MMAUDIT = os.path.join(ROOT, "scripts", "mmaudit")
RULE_FIXTURES = os.path.join(ROOT, "tests", "fixtures", "use_mm")
AUDIT_FIXTURES = os.path.join(ROOT, "tests", "fixtures", "audit")
INCLUDE = os.path.join(ROOT, "tests", "include")
MODES = ("report", "context", "org", "patch")


def rule_fixtures():
    return sorted(f[:-2] for f in os.listdir(RULE_FIXTURES) if f.endswith(".c"))


def expected_path(name, mode):
    """MODE is a coccicheck mode, or "fix" for mmaudit fix's rewrite."""
    return os.path.join(RULE_FIXTURES, "%s.%s.expected" % (name, mode))


def rule_output(name, mode):
    """The drop-in rule's output on one fixture, as coccicheck runs it."""
    out, err, rc = spatch.run_rule_on_file(RULE, os.path.join(RULE_FIXTURES, name + ".c"), mode)
    if rc != 0:
        raise AssertionError("spatch -D %s failed on %s: %s" % (mode, name, err))
    return out


def all_rule_outputs():
    jobs = [(n, m) for n in rule_fixtures() for m in MODES]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        outs = pool.map(lambda job: rule_output(*job), jobs)
    return dict(zip(jobs, outs))


FIX_SIGNOFF = "Mmaudit Test <mmaudit-test@example.org>"


def fixture_tree(name, directory):
    """DIRECTORY becomes a tree that holds rule fixture NAME alone."""
    with open(os.path.join(RULE_FIXTURES, name + ".c")) as f, \
            open(os.path.join(directory, name + ".c"), "w") as out:
        out.write(f.read())
    return str(directory)


def fix_output(name):
    """mmaudit fix on one rule fixture, as a tree of its own: for each
    finding, its diff or why it gets none."""
    from mmaudit_lib import fix
    with tempfile.TemporaryDirectory(prefix="mmaudit-fix-") as tmp:
        fixture_tree(name, tmp)
        proc = run_mmaudit("audit", "-q", "--no-cache", "-j", "1", "--format", "json", tmp)
        if proc.returncode not in (0, 1):
            raise AssertionError("mmaudit failed on %s: %s" % (name, proc.stderr))
        parts = []
        for site, text, why, _ in fix.generate(tmp, json.loads(proc.stdout), FIX_SIGNOFF):
            head = "%s:%d %s\n" % (site["file"], site["line"], site["verdict"])
            if text:
                parts.append(head + text.split("\n---\n", 1)[1].split("\n-- \n")[0]
                             .split("\n\n", 1)[1] + "\n")
            else:
                parts.append(head + "no patch: %s\n" % why.replace(tmp + "/", ""))
        return "".join(parts)


def all_fix_outputs():
    names = rule_fixtures()
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(names, pool.map(fix_output, names)))


def audit_fixtures():
    return sorted(d for d in os.listdir(AUDIT_FIXTURES)
                  if os.path.isdir(os.path.join(AUDIT_FIXTURES, d)))


def run_mmaudit(*args, **kw):
    return subprocess.run([sys.executable, MMAUDIT] + list(args), capture_output=True,
                          text=True, **kw)


def audit_fixture_json(name):
    """findings.json of a fixture tree, without the run-specific tool fields."""
    proc = run_mmaudit("audit", "-q", "-j", "1", "--format", "json",
                       os.path.join(AUDIT_FIXTURES, name))
    if proc.returncode not in (0, 1):
        raise AssertionError("mmaudit failed on %s: %s" % (name, proc.stderr))
    data = json.loads(proc.stdout)
    data["tool"] = {"name": data["tool"]["name"]}
    return json.dumps(data, indent=2) + "\n"


def kernel_tree(series):
    """The Debian linux-source-SERIES tree, unpacked once into mmaudit's cache."""
    tarball = "/usr/src/linux-source-%s.tar.xz" % series
    if not os.path.exists(tarball):
        raise AssertionError("%s is missing; run `make deps`" % tarball)
    return treemod.unpack(tarball)
