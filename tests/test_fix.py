"""Fix patches: the drop-in rule's patch mode and mmaudit fix agree, and on
the real trees every grab-only or unreferenced finding gets a patch that
applies once, is checkpatch-clean, builds and re-audits as pinned."""

import collections
import json
import os
import re
import sys

import pytest

import support

sys.path.insert(0, os.path.join(support.ROOT, "scripts"))
from mmaudit_lib import fix  # noqa: E402

SIGNOFF = support.FIX_SIGNOFF


def _net_change(diff):
    """What a diff adds and removes, whitespace and re-indented lines aside."""
    plus = collections.Counter(re.sub(r"\s+", "", l[1:]) for l in diff.splitlines()
                               if l.startswith("+") and not l.startswith("+++"))
    minus = collections.Counter(re.sub(r"\s+", "", l[1:]) for l in diff.splitlines()
                                if l.startswith("-") and not l.startswith("---"))
    return plus - minus, minus - plus


def _expected(name, mode):
    with open(support.expected_path(name, mode)) as f:
        return f.read()


PATCHED_BY_RULE = [n for n in support.rule_fixtures() if _expected(n, "patch")]


# Borrows whose put needs the context judged: a lock, RCU, irqs off, an
# iocb completed after the borrow (mmput_async()), or a long region with an
# exit label under a mutex.
CONTEXT_NEEDED = ["aio_completion_worker_grab_only", "borrow_under_spinlock_grab_only",
                  "borrow_under_spin_lock_irqsave_grab_only", "borrow_under_rcu_grab_only",
                  "borrow_under_mutex_unlocked_after_grab_only",
                  "exit_label_long_region_grab_only", "exit_label_with_error_variable_grab_only"]


def test_patch_mode_is_the_grab_only_wrap():
    """The drop-in patches grab-only sites only; unreferenced ones need
    mmgrab()/mmdrop() placed from the whole tree (mmaudit fix)."""
    kinds = {re.search(r"\((grab-only|unreferenced|unresolved)\)", _expected(n, "report")).group(1)
             for n in PATCHED_BY_RULE}
    assert kinds == {"grab-only"} and len(PATCHED_BY_RULE) >= 5
    added = [l for n in PATCHED_BY_RULE for l in _expected(n, "patch").splitlines()
             if l.startswith("+") and not l.startswith("+++")]
    assert not [l for l in added if "mmgrab" in l or "mmdrop" in l]


@pytest.mark.parametrize("name", CONTEXT_NEEDED)
def test_patch_mode_leaves_judged_contexts_to_mmaudit_fix(name):
    assert "grab-only" in _expected(name, "report")
    assert _expected(name, "patch") == ""
    fix_out = _expected(name, "fix")
    assert "mmput_async(" in fix_out or "goto out;" in fix_out, fix_out


@pytest.mark.parametrize("name", PATCHED_BY_RULE)
def test_patch_mode_matches_mmaudit_fix(name):
    """Both outputs are checked against the tools by the other tests."""
    assert _net_change(_expected(name, "patch")) == _net_change(_expected(name, "fix"))


def test_early_return_is_mmaudit_fix_only():
    name = "grab_only_early_return_patch"
    with open(support.expected_path(name, "patch")) as f:
        assert f.read() == ""
    ours = support.fix_output(name)
    assert ours.count("\ndiff --git ") == 1
    assert "+\t\tif (!mmget_not_zero(vm->mm))\n+\t\t\treturn -EFAULT;" in ours
    assert "+\t\tmmput(vm->mm);" in ours


@pytest.fixture(scope="module")
def fix_outputs():
    return support.all_fix_outputs()


@pytest.mark.parametrize("name", support.rule_fixtures())
def test_fix_output(fix_outputs, name):
    """mmaudit fix on each rule fixture, against reviewed output."""
    with open(support.expected_path(name, "fix")) as f:
        assert fix_outputs[name] == f.read()


@pytest.mark.parametrize("name", ["bio_owner_void_borrow_unreferenced", "grab_only_early_return_patch",
                                  "kfree_owner_freed_before_store_unreferenced",
                                  "kfree_owner_stored_first_unreferenced", "nullable_int_borrow_unreferenced",
                                  "grab_only_wrap_sets_error_patch", "struct_value_field"])
def test_fixed_fixture_reaudits_pinned(name, tmp_path):
    tree = tmp_path
    support.fixture_tree(name, tree)
    audit = lambda: json.loads(support.run_mmaudit(  # noqa: E731
        "audit", "-q", "--no-cache", "--format", "json", str(tree)).stdout)
    [(site, text, why, changes)] = fix.generate(str(tree), audit(), SIGNOFF)
    assert text, why
    for rel, (_, new) in changes.items():
        (tree / rel).write_text(new)
    assert [s["verdict"] for s in audit()["sites"]] == ["pinned"]


def _fix(series, tmp_path, *extra):
    out = tmp_path / ("fixes-" + series)
    proc = support.run_mmaudit("fix", "-q", "--verify", "--signoff", SIGNOFF, "-o", str(out),
                               "/usr/src/linux-source-%s.tar.xz" % series, *extra)
    return proc, out


def _patches(out):
    return {n: (out / n).read_text() for n in sorted(os.listdir(out)) if n.endswith(".patch")}


def test_fixes_61(tmp_path):
    proc, out = _fix("6.1", tmp_path, "--upstream", "/usr/src/linux-source-6.12.tar.xz")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": verified") == 4 and "FAILED" not in proc.stdout
    patches = _patches(out)
    assert len(patches) == 4
    gadget = [t for n, t in patches.items() if "inode" in n][0]
    assert "Subject: [PATCH] usb: gadget: legacy: pin the mm borrowed by kthread_use_mm()" in gadget
    assert "Signed-off-by: %s" % SIGNOFF in gadget and "Cc: linux-usb@vger.kernel.org" in gadget
    # The upstream idiom: mmgrab at the store, mmget_not_zero/mmput around
    # the borrow, mmdrop on every path that frees the request; the worker
    # completes the iocb after the copy, so the put is mmput_async(): a
    # final mmput() would wait in exit_aio() for this very iocb.
    functions = {}
    for needle, where in (("mmgrab(", {"ep_aio"}), ("mmget_not_zero(", {"ep_user_copy_worker"}),
                          ("mmput_async(", {"ep_user_copy_worker"}), ("mmput(", set()),
                          ("mmdrop(", {"ep_aio", "ep_aio_complete", "ep_user_copy_worker"})):
        hunks = re.findall(r"^@@ [^@]+ @@ .*?\b(\w+)\(.*?$(.*?)(?=^@@|\Z)", gadget, re.M | re.S)
        functions[needle] = {fn for fn, body in hunks if re.search(r"^\+.*" + re.escape(needle), body, re.M)}
        assert functions[needle] == where, (needle, functions[needle])
    readme = (out / "README.md").read_text()
    assert readme.count("| verified (") == 4


def test_fixes_612(tmp_path):
    proc, out = _fix("6.12", tmp_path)
    # Only the review verdict (vhost) goes without a patch.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": verified") == 4 and "FAILED" not in proc.stdout
    assert "drivers/vhost/vhost.c:417: no patch: " in proc.stdout
    patches = _patches(out)
    assert sorted(patches) == ["0001-vas-api-vas-update-csb.patch", "0002-xen-kvm-xen-set-evtchn.patch",
                               "0003-cdev-idxd-copy-cr.patch",
                               "0004-fs-io-direct-bch2-dio-write-continue.patch"]
    xen = patches["0002-xen-kvm-xen-set-evtchn.patch"]
    assert "+\t\tif (!mmget_not_zero(kvm->mm))\n+\t\t\treturn -EFAULT;" in xen
    # idxd: the SVA bond holds mm_count, so no mmgrab()/mmdrop(); the long
    # region leaves through the existing "out" label instead of being
    # re-indented; the unborrow runs under wq->uc_lock, which the label's
    # path also releases, so the put is mmput_async().
    idxd = patches["0003-cdev-idxd-copy-cr.patch"]
    assert "mmgrab" not in idxd.split("\n---\n", 1)[1] and "mmdrop" not in idxd.split("\n---\n", 1)[1]
    assert "+\tif (!mmget_not_zero(mm))\n+\t\tgoto out;" in idxd and "+\tmmput_async(mm);" in idxd
    assert "3 insertions(+)" in idxd and "deletion" not in idxd
    # bcachefs: the dio may come from a kernel thread without an mm, dies
    # with bio_put() in two places, and a gone mm fails the write the way
    # bch2_dio_write_loop_async() fails one.
    bch = patches["0004-fs-io-direct-bch2-dio-write-continue.patch"]
    assert "+\tif (dio->mm)\n+\t\tmmgrab(dio->mm);" in bch
    assert bch.count("+\tif (dio->mm)\n+\t\tmmdrop(dio->mm);\n \tbio_put(") == 2
    assert ("+\t\tif (!mmget_not_zero(mm)) {\n+\t\t\tdio->op.error = -EFAULT;\n"
            "+\t\t\tbch2_dio_write_done(dio);\n+\t\t\treturn;\n") in bch
    # bch2_dio_write_loop() can complete the kiocb: mmput_async().
    assert "+\t\tmmput_async(mm);" in bch and "Cc: linux-bcachefs@vger.kernel.org" in bch
