"""borrow_context(): the lock, aio and work-item context of a borrow, and the
put (mmput() or mmput_async()) that must end its mm_users pin."""

import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

import support
from mmaudit_lib import context, spatch

FIXTURES = os.path.join(support.ROOT, "tests", "fixtures", "context")
NAMES = sorted(f[:-2] for f in os.listdir(FIXTURES) if f.endswith(".c"))


def _lines(path):
    with open(path) as f:
        return f.read().split("\n")


def _fixture(name):
    """(function, borrow line, expectations) of fixture NAME, from its
    "// Expect:" line, written before the rule ran."""
    lines = _lines(os.path.join(FIXTURES, name + ".c"))
    expect = dict(kv.split("=", 1) for kv in
                  re.search(r"^// Expect: (.*)$", "\n".join(lines), re.M).group(1).split())
    borrow = next(i + 1 for i, l in enumerate(lines) if re.search(r"\bkthread_use_mm\(", l))
    function = next(re.match(r"^\w.*?\b(\w+)\(", l).group(1) for l in reversed(lines[:borrow])
                    if re.match(r"^\w.*?\b\w+\(", l))
    return function, borrow, expect, lines


def _calls(sections):
    return ",".join(s["call"] for s in sections)


def _line_of(lines, call, start):
    return next(i + 1 for i in range(start - 1, len(lines)) if re.search(r"\b%s\(" % call, lines[i]))


# --- the rule ------------------------------------------------------------------

def test_rule_parses_without_warnings():
    proc = subprocess.run([spatch.spatch_path(), "--parse-cocci", "-D", "fn=lint_value",
                           context.RULE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    warnings = [l for l in (proc.stdout + proc.stderr).splitlines()
                if l.startswith("warning:") and not re.match(r"warning: iso .* does not match", l)]
    assert warnings == []


def test_rule_header_and_done_fact_last():
    with open(context.RULE) as f:
        text = f.read()
    head = text.split("\n@", 1)[0]
    assert head.startswith("// SPDX-License-Identifier: GPL-2.0-only\n///\n")
    for line in ("// Confidence: ", "// Copyright: (C) 2026 The mmaudit developers",
                 "// Options: --no-includes --include-headers"):
        assert "\n" + line in head
    headers = list(re.finditer(r"^@[^@\n]+@$", text, re.M))
    assert headers[-1].group(0) == "@script:python@"
    last = text[headers[-1].end():]
    assert last.startswith("\n@@\n")
    assert '"kind": "done", "files": cocci.files()' in last
    with open(os.path.join(spatch.COCCI_DIR, "audit_sites.cocci")) as f:
        sites = f.read()
    assert text[text.rindex("// Last rule"):] == sites[sites.rindex("// Last rule"):]


def test_every_lock_name_of_the_rule_has_a_kind():
    with open(context.RULE) as f:
        text = f.read()
    names = set()
    for body in re.findall(r"^identifier \w+ = \{([^}]*)\};", text, re.M):
        names.update(n.strip() for n in body.split(","))
    assert {"spin_lock", "mutex_unlock", "rcu_read_lock", "local_bh_enable"} <= names
    assert {n: context.lock_kind(n) for n in names if context.lock_kind(n) == "unknown"} == {}


# --- fixtures --------------------------------------------------------------------

def test_enough_fixtures():
    assert len(NAMES) >= 8


@pytest.mark.parametrize("name", NAMES)
def test_fixture_compiles(name):
    proc = subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Werror", "-I", support.INCLUDE,
                           os.path.join(FIXTURES, name + ".c")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_fixture_context(name):
    function, borrow, expect, lines = _fixture(name)
    ctx = context.borrow_context(FIXTURES, name + ".c", function, borrow)
    assert ctx["complete"], ctx["why"]
    # The mm as the fixture writes it (the rule prints "dev -> mm").
    mm = re.search(r"\bkthread_use_mm\((.*)\);", lines[borrow - 1]).group(1)
    assert ctx["borrow"] == {"line": borrow, "api": "kthread_use_mm", "mm": mm}
    unuse = _line_of(lines, "kthread_unuse_mm", borrow)
    assert ctx["unborrow_lines"] == [unuse]
    assert ctx["put"] == expect["put"]
    assert ctx["put_after_line"] == _line_of(lines, expect["after"], borrow)
    assert _calls(ctx["atomic"]) == expect["atomic"]
    assert _calls(ctx["sleeping_lock"]) == expect["sleeping"]
    for s in ctx["atomic"] + ctx["sleeping_lock"]:
        assert s["line"] < borrow or "borrow" not in s["encloses"]
        assert s["encloses"] and set(s["encloses"]) <= {"borrow", "unborrow"}
        assert s["what"].startswith(s["call"] + "(") and s["what"] in lines[s["line"] - 1]
        assert context.is_atomic(s["kind"]) == (s in ctx["atomic"])
        if s["unlock_line"] is not None:
            assert s["unlock_line"] > borrow
    aio = ctx["aio_completion"]
    assert aio["value"] == (expect["aio"] != "no")
    assert bool(aio["via"]) == (expect["aio"] == "via")
    if aio["value"]:
        assert "ki_complete(" in aio["what"] and "ki_complete(" in lines[aio["line"] - 1]
    work = ctx["work_item"]
    assert work["value"] == (expect["work"] != "no")
    if work["value"]:
        assert work["how"] == expect["work"]
        assert work["what"] and work["what"].split("(")[0] in lines[work["line"] - 1]
    if "bypass" in expect:
        assert ctx["sleeping_lock"][0]["released_without_borrow"] == (expect["bypass"] == "yes")
    assert ctx["mmput_async_exported"] is None      # not a kernel tree
    assert ctx["why"].startswith(function + "()")
    assert "%s()" % ctx["put"] in ctx["why"]


def test_section_fields():
    """The documented keys of a section, on the spinlock fixture."""
    ctx = context.borrow_context(FIXTURES, "borrow_under_spin_lock_irqsave.c",
                                 "foo_post_status", 21)
    (s,) = ctx["atomic"]
    assert {k: s[k] for k in ("kind", "lock", "line", "unlock_line", "call", "what")} == {
        "kind": "spinlock", "lock": "&dev->lock", "line": 20, "unlock_line": 24,
        "call": "spin_lock_irqsave", "what": "spin_lock_irqsave(&dev->lock, flags)"}
    assert s["encloses"] == ["borrow", "unborrow"]
    assert ctx["put_after_line"] == 23


def test_mutex_released_after_unborrow_is_not_released_by_an_inner_path():
    """The unlock after the unborrow is on every path, once."""
    ctx = context.borrow_context(FIXTURES, "borrow_under_mutex_unlocked_after.c",
                                 "foo_post_status", 22)
    (s,) = ctx["sleeping_lock"]
    assert s["released_on_every_path"] and s["unlock_lines"] == [25]
    assert not s["released_without_borrow"]


def test_mutex_released_on_two_paths_gets_mmput_async(tmp_path):
    src = _lines(os.path.join(FIXTURES, "borrow_under_mutex_unlocked_after.c"))
    text = "\n".join(src).replace(
        "\tkthread_unuse_mm(dev->mm);\n\tmutex_unlock(&dev->lock);\n",
        "\tkthread_unuse_mm(dev->mm);\n\tif (left) {\n\t\tmutex_unlock(&dev->lock);\n"
        "\t\treturn -EFAULT;\n\t}\n\tmutex_unlock(&dev->lock);\n")
    (tmp_path / "two_unlocks.c").write_text(text)
    ctx = context.borrow_context(str(tmp_path), "two_unlocks.c", "foo_post_status", 22)
    (s,) = ctx["sleeping_lock"]
    assert s["unlock_lines"] == [26, 29] and s["released_on_every_path"]
    assert ctx["put"] == "mmput_async" and ctx["put_after_line"] == 24
    assert "does not release it at one place on every path" in ctx["why"]


def test_mutex_kept_on_an_error_path_gets_mmput_async(tmp_path):
    src = _lines(os.path.join(FIXTURES, "borrow_under_mutex_unlocked_after.c"))
    text = "\n".join(src).replace(
        "\tkthread_unuse_mm(dev->mm);\n\tmutex_unlock(&dev->lock);\n",
        "\tkthread_unuse_mm(dev->mm);\n\tif (left)\n\t\treturn -EFAULT;\n"
        "\tmutex_unlock(&dev->lock);\n")
    (tmp_path / "error_path.c").write_text(text)
    ctx = context.borrow_context(str(tmp_path), "error_path.c", "foo_post_status", 22)
    (s,) = ctx["sleeping_lock"]
    assert not s["released_on_every_path"] and s["unlock_lines"] == [27]
    assert ctx["put"] == "mmput_async"


# --- fail closed -----------------------------------------------------------------

def _tree_state(root):
    state = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                state[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return state


def test_spatch_runs_outside_the_tree(tmp_path):
    shutil.copy(os.path.join(FIXTURES, "process_context.c"), tmp_path)
    before = _tree_state(tmp_path)
    ctx = context.borrow_context(str(tmp_path), "process_context.c", "foo_post_status", 17)
    assert ctx["complete"] and ctx["put"] == "mmput"
    assert _tree_state(tmp_path) == before


def test_no_done_fact_is_incomplete(tmp_path, monkeypatch):
    """Facts without the rule's last fact count for nothing."""
    borrow = {"kind": "borrow", "file": "x", "line": 17, "col": 1, "func": "foo_post_status",
              "api": "kthread_use_mm", "mm": "dev->mm"}
    fake = tmp_path / "spatch"
    fake.write_text("#!/bin/sh\necho 'MMAUDIT %s'\nexit 0\n" % json.dumps(borrow))
    fake.chmod(0o755)
    monkeypatch.setenv("SPATCH", str(fake))
    ctx = context.borrow_context(FIXTURES, "process_context.c", "foo_post_status", 17)
    assert ctx["complete"] is False
    assert ctx["put"] == context.NEEDS_A_HUMAN and ctx["put_after_line"] is None
    assert "did not finish" in ctx["why"]


def test_spatch_killed_is_incomplete(tmp_path, monkeypatch):
    fake = tmp_path / "spatch"
    fake.write_text("#!/bin/sh\nkill -9 $$\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SPATCH", str(fake))
    ctx = context.borrow_context(FIXTURES, "process_context.c", "foo_post_status", 17)
    assert ctx["complete"] is False and ctx["put"] == context.NEEDS_A_HUMAN


def test_unparsed_borrow_is_incomplete(tmp_path):
    """spatch 1.1.1 cannot parse scoped_guard(): the borrow is not seen, and
    an unseen borrow is never "no lock"."""
    (tmp_path / "scoped.c").write_text(
        "int foo(struct foo_dev *dev)\n{\n\tscoped_guard(spinlock, &dev->lock) {\n"
        "\t\tkthread_use_mm(dev->mm);\n\t\tkthread_unuse_mm(dev->mm);\n\t}\n\treturn 0;\n}\n")
    ctx = context.borrow_context(str(tmp_path), "scoped.c", "foo", 4)
    assert ctx["complete"] is False and ctx["put"] == context.NEEDS_A_HUMAN


def test_wrong_line_is_not_a_borrow():
    ctx = context.borrow_context(FIXTURES, "process_context.c", "foo_post_status", 18)
    assert ctx["complete"] is False and ctx["put"] == context.NEEDS_A_HUMAN


# --- mmput_async() in the tree -------------------------------------------------------

FORK = {"exported": "void mmput_async(struct mm_struct *mm)\n{\n}\n"
                    "EXPORT_SYMBOL_GPL(mmput_async);\n",
        "unexported": "void mmput_async(struct mm_struct *mm)\n{\n}\n",
        "missing": "void mmput(struct mm_struct *mm)\n{\n}\n"}


def _kernel_tree(root, fork, config_type):
    """A tree with kernel/fork.c and the aio worker fixture as a driver."""
    (root / "kernel").mkdir()
    (root / "kernel" / "fork.c").write_text(FORK[fork])
    drv = root / "drivers" / "foo"
    drv.mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURES, "aio_completion_worker.c"), drv / "foo_aio.c")
    (drv / "Makefile").write_text("obj-$(CONFIG_FOO) += foo.o\nfoo-y := foo_core.o foo_aio.o\n")
    (drv / "Kconfig").write_text('config FOO\n\t%s "foo"\n\thelp\n\t  Foo.\n' % config_type)
    return str(root)


@pytest.mark.parametrize("fork,config_type,put,exported", [
    ("exported", "tristate", "mmput_async", True),
    ("unexported", "bool", "mmput_async", False),
    ("unexported", "tristate", context.NEEDS_A_HUMAN, False),
    ("missing", "bool", context.NEEDS_A_HUMAN, False),
])
def test_mmput_async_availability(tmp_path, fork, config_type, put, exported):
    tree = _kernel_tree(tmp_path, fork, config_type)
    ctx = context.borrow_context(tree, "drivers/foo/foo_aio.c", "foo_user_copy_worker", 28)
    assert ctx["aio_completion"]["value"]
    assert ctx["module"] == {"module": config_type == "tristate", "config": "CONFIG_FOO"}
    assert ctx["mmput_async_exported"] is exported
    assert ctx["put"] == put
    if put == context.NEEDS_A_HUMAN:
        assert ctx["why"].endswith("needs a human")
        if fork == "unexported":
            assert "not exported" in ctx["why"] and "CONFIG_FOO is tristate" in ctx["why"]


def test_lock_kinds():
    for call, kind in [("spin_lock_irqsave", "spinlock"), ("raw_spin_lock", "raw_spinlock"),
                       ("read_lock_bh", "rwlock"), ("write_unlock_irq", "rwlock"),
                       ("rcu_read_lock", "rcu"), ("local_irq_save", "irq"),
                       ("local_bh_disable", "bh"), ("preempt_disable", "preempt"),
                       ("get_cpu", "preempt"), ("local_lock_irqsave", "local_lock"),
                       ("mutex_lock_interruptible", "mutex"), ("down", "semaphore"),
                       ("up", "semaphore"), ("down_read", "rwsem"), ("up_write", "rwsem"),
                       ("mmap_read_lock", "mmap_lock"), ("guard(spinlock_irqsave)", "spinlock"),
                       ("guard(mutex)", "mutex"), ("guard(rcu)", "rcu"),
                       ("guard(srcu)", "guard")]:
        assert context.lock_kind(call) == kind, call
    assert context.is_atomic("spinlock") and not context.is_atomic("mutex")


# --- the real trees ------------------------------------------------------------------
# Every grab-only or unreferenced finding of the published reports, with the
# context read from the code (and the callers, for what the file cannot show).

REAL = {
    "6.12": {
        # Called from the VAS fault threads (threaded IRQ handlers,
        # powernv/vas-fault.c and pseries/vas.c), no lock held; PPC_VAS is bool.
        ("arch/powerpc/platforms/book3s/vas-api.c", "vas_update_csb", 201): dict(
            put="mmput", after=213, atomic=[], sleeping=[], aio=None, work=None,
            module=False),
        # The irqfd work (through evtchn_set_fn(), the routing entry's .set),
        # or the ioctl; no lock across the unborrow; kvm.o is tristate.
        ("arch/x86/kvm/xen.c", "kvm_xen_set_evtchn", 1879): dict(
            put="mmput", after=1911, atomic=[], sleeping=[], aio=None,
            work=("callback", 1972, ["evtchn_set_fn"]), module=True),
        # mutex_lock(&wq->uc_lock) at 744 is held across the borrow and the
        # unborrow (782) and released once at 785, which "goto out" (749)
        # reaches without the borrow.  Its caller is the idxd_evl_fault_work()
        # work item of irq.c, which holds no lock.
        ("drivers/dma/idxd/cdev.c", "idxd_copy_cr", 758): dict(
            put="mmput", after=785, atomic=[],
            sleeping=[("mutex", "&wq->uc_lock", 744, 785, True)], aio=None, work=None,
            module=True),
        # bch2_dio_write_loop() ends in bch2_dio_write_done(), which completes
        # the iocb (req->ki_complete() at 400); reached from the bio's end_io
        # callback bch2_dio_write_loop_async().
        ("fs/bcachefs/fs-io-direct.c", "bch2_dio_write_continue", 562): dict(
            put="mmput_async", after=565, atomic=[], sleeping=[],
            aio=(400, ["bch2_dio_write_loop", "bch2_dio_write_done"]),
            work=("callback", 498, ["bch2_dio_write_loop_async"]), module=True),
    },
    "6.1": {
        ("arch/powerpc/platforms/book3s/vas-api.c", "vas_update_csb", 201): dict(
            put="mmput", after=213, atomic=[], sleeping=[], aio=None, work=None,
            module=False),
        # mutex_lock(&kvm->lock) (1480) is taken after the borrow and released
        # (1511) before the unborrow (1513): it holds neither.
        ("arch/x86/kvm/xen.c", "kvm_xen_set_evtchn", 1469): dict(
            put="mmput", after=1513, atomic=[], sleeping=[], aio=None,
            work=("callback", 1574, ["evtchn_set_fn"]), module=True),
        ("drivers/dma/idxd/cdev.c", "idxd_copy_cr", 573): dict(
            put="mmput", after=600, atomic=[],
            sleeping=[("mutex", "&wq->uc_lock", 559, 600, True)], aio=None, work=None,
            module=True),
        # The work item of ep_aio_complete() (INIT_WORK at 513) completes the
        # iocb at 476, after the copy.
        ("drivers/usb/gadget/legacy/inode.c", "ep_user_copy_worker", 469): dict(
            put="mmput_async", after=471, atomic=[], sleeping=[], aio=(476, []),
            work=("work", 513, []), module=True),
    },
}
REPORTS = {"6.12": "linux-6.12.117", "6.1": "linux-6.1.192"}
REAL_SITES = [(series, key) for series in REAL for key in REAL[series]]


@pytest.fixture(scope="module", params=sorted(REAL))
def real_tree(request):
    return request.param, support.kernel_tree(request.param)


def test_real_table_covers_every_finding(real_tree):
    series, _ = real_tree
    with open(os.path.join(support.ROOT, "reports", REPORTS[series], "findings.json")) as f:
        sites = json.load(f)["sites"]
    findings = {(s["file"], s["function"], s["line"]) for s in sites
                if s["verdict"] in ("grab-only", "unreferenced")}
    assert findings == set(REAL[series])


@pytest.mark.parametrize("series,key", REAL_SITES, ids=["%s-%s" % (s, k[1]) for s, k in REAL_SITES])
def test_real_site(series, key):
    tree = support.kernel_tree(series)
    rel, function, line = key
    want = REAL[series][key]
    lines = _lines(os.path.join(tree, rel))
    assert "kthread_use_mm(" in lines[line - 1]
    ctx = context.borrow_context(tree, rel, function, line)
    assert ctx["complete"], ctx["why"]
    assert ctx["put"] == want["put"], ctx["why"]
    assert ctx["put_after_line"] == want["after"]
    assert ctx["atomic"] == []
    assert [(s["kind"], s["lock"], s["line"], s["unlock_line"], s["released_without_borrow"])
            for s in ctx["sleeping_lock"]] == want["sleeping"]
    for s in ctx["sleeping_lock"]:
        assert s["released_on_every_path"] and s["encloses"] == ["borrow", "unborrow"]
        assert "mutex_unlock(%s)" % s["lock"] in lines[s["unlock_line"] - 1]
    aio = ctx["aio_completion"]
    if want["aio"] is None:
        assert not aio["value"]
    else:
        assert aio["value"] and (aio["line"], aio["via"]) == want["aio"]
        assert "->ki_complete(" in lines[aio["line"] - 1]
    work = ctx["work_item"]
    if want["work"] is None:
        assert not work["value"]
    else:
        assert work["value"] and (work["how"], work["line"], work["via"]) == want["work"]
    assert ctx["module"]["module"] is want["module"]
    assert ctx["mmput_async_exported"] is True
    assert ctx["why"].startswith(function + "()")


def test_real_upstream_gadget_workers_complete_the_iocb():
    """6.12's upstream fix of gadgetfs, and f_fs, end the pin with mmput()
    in a worker that then completes the iocb: the context calls for
    mmput_async() there."""
    tree = support.kernel_tree("6.12")
    for rel, function, line, complete_at, put_at in [
            ("drivers/usb/gadget/legacy/inode.c", "ep_user_copy_worker", 477, 489, 479),
            ("drivers/usb/gadget/function/f_fs.c", "ffs_user_copy_worker", 879, 889, 881)]:
        lines = _lines(os.path.join(tree, rel))
        assert "mmput(" in lines[put_at]      # upstream's put, after the unborrow
        ctx = context.borrow_context(tree, rel, function, line)
        assert ctx["put"] == "mmput_async" and ctx["put_after_line"] == put_at
        assert ctx["aio_completion"]["line"] == complete_at
        assert ctx["work_item"]["how"] == "work"
