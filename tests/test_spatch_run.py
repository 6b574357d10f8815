"""facts.SpatchRun: spatch started before its files are known, waiting on a
FIFO for the list.  It must never hang (spatch gone before it reads the
list), never outlive its caller (closed, or the caller killed), and give
the facts a plain run gives."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import support
from mmaudit_lib import UsageError, facts

SITES = os.path.join(support.ROOT, "cocci", "audit_sites.cocci")
TREE = os.path.join(support.AUDIT_FIXTURES, "pin_lost_paths")


def c_files(tree):
    return sorted(os.path.relpath(os.path.join(top, n), tree)
                  for top, _, names in os.walk(tree) for n in names if n.endswith(".c"))


def spatch_children(marker):
    """The command lines of the spatch processes that name MARKER (from
    /proc: procps may not be installed)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == "spatch" and any(marker in a for a in argv):
            found.append(" ".join(argv))
    return found


def test_early_start_gives_the_facts_of_a_plain_run():
    files = c_files(TREE)
    assert files
    with facts.FactRunner(TREE, jobs=2) as runner:
        early = runner.start_early(SITES)
        assert early is not None
        time.sleep(0.5)                  # spatch waits on its FIFO by now
        started = runner.run(SITES, files, started=early)
    plain = facts.FactRunner(TREE, jobs=2).run(SITES, files)
    assert started == plain and started[0]


def test_unused_start_is_stopped_and_removed():
    runner = facts.FactRunner(TREE)
    early = runner.start_early(SITES)
    tmp = early.tmp
    assert spatch_children(tmp)
    runner.close()
    assert not os.path.exists(tmp) and not spatch_children(tmp)
    # run() with nothing to analyze stops the one it was given.
    early = runner.start_early(SITES)
    assert runner.run(SITES, [], started=early) == ([], {})
    assert not os.path.exists(early.tmp)


def test_warm_cache_starts_nothing(tmp_path):
    cache = facts.FactCache(str(tmp_path / "facts"))
    assert cache.empty()
    with facts.FactRunner(TREE, cache=cache) as runner:
        runner.run(SITES, c_files(TREE))
    assert not cache.empty()
    with facts.FactRunner(TREE, cache=cache) as runner:
        assert runner.start_early(SITES) is None


def test_spatch_gone_before_the_list_does_not_hang(tmp_path):
    broken = tmp_path / "broken.cocci"
    broken.write_text("@r@\nexpression E\n@@\nfoo(E\n")    # does not parse
    with facts.FactRunner(TREE) as runner:
        early = runner.start_early(str(broken))
        with pytest.raises(UsageError, match="spatch failed on broken.cocci"):
            runner.run(str(broken), c_files(TREE), started=early)
    assert not os.path.exists(early.tmp)


def test_killed_caller_takes_spatch_with_it(tmp_path):
    script = textwrap.dedent("""
        import os, signal, sys, time
        sys.path.insert(0, %r)
        from mmaudit_lib import facts
        run = facts.SpatchRun(%r, [], 1, 60)
        print(run.tmp, flush=True)
        time.sleep(1)                    # spatch blocks on the FIFO
        os.kill(os.getpid(), signal.SIGKILL)
    """ % (os.path.join(support.ROOT, "scripts"), SITES))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL
    tmp = proc.stdout.strip()
    assert tmp.startswith("/")
    for _ in range(50):
        if not spatch_children(tmp):
            break
        time.sleep(0.1)
    assert not spatch_children(tmp)
    subprocess.run(["rm", "-rf", tmp])
