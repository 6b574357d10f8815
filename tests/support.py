"""Shared helpers of the tests and of `make bless`."""

import concurrent.futures
import json
import os
import subprocess
import sys

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
