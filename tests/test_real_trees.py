"""The rule and the audit on Debian's real kernel trees (linux-source-6.12 and
-6.1), against per-site verdicts decided by reading the code."""

import json
import os
import re
import subprocess

import pytest

import support

# 6.12: every kthread_use_mm() call site, with the verdict from reading it.
AUDIT_612 = {
    "arch/powerpc/platforms/book3s/vas-api.c:201": "grab-only",     # get_task_mm, mmgrab, mmput at :80-89 leaves mm_count only
    "arch/x86/kvm/xen.c:1879": "grab-only",                         # kvm->mm: mmgrab(current->mm) in kvm_create_vm(), virt/kvm/kvm_main.c
    "drivers/dma/idxd/cdev.c:758": "grab-only",                     # ctx->mm = current->mm at :265; the SVA bond bound at :250 holds mm_count
    "drivers/gpu/drm/amd/amdgpu/amdgpu_amdkfd.h:283": "unanalyzed",  # body of macro read_user_wptr()
    "drivers/gpu/drm/amd/amdkfd/kfd_device_queue_manager.c:3214": "pinned",  # get_task_mm() + NULL check
    "drivers/gpu/drm/amd/amdkfd/kfd_process.c:189": "pinned",       # get_task_mm() + goto cleanup on NULL
    "drivers/gpu/drm/amd/amdkfd/kfd_process.c:2221": "pinned",      # get_task_mm() + NULL check
    "drivers/gpu/drm/xe/xe_sync.c:82": "pinned",                    # inside if (mmget_not_zero(ufence->mm))
    "drivers/gpu/drm/xe/xe_vm.c:3504": "pinned",                    # snap[i].mm stored only after mmget_not_zero() at :3454
    "drivers/iommu/iommufd/pages.c:1867": "pinned",                 # mmget_not_zero() in the same if (change_mm) block
    "drivers/usb/gadget/function/f_fs.c:879": "pinned",             # inside if (mmget_not_zero(io_data->mm))
    "drivers/usb/gadget/legacy/inode.c:477": "pinned",              # upstream fix: mmget_not_zero(mm) around the borrow
    "drivers/vdpa/vdpa_sim/vdpa_sim.c:182": "pinned",               # if (!mmget_not_zero(mm)) return;
    "drivers/vfio/vfio_iommu_type1.c:3074": "pinned",               # mmget_not_zero(mm) before if (kthread)
    "drivers/vhost/vhost.c:417": "review",                          # get_task_mm if use_worker, else current->mm + mmgrab; worker implies use_worker
    "fs/bcachefs/fs-io-direct.c:562": "unreferenced",               # dio->mm = current->mm at :636, nothing taken
    "lib/kunit/user_alloc.c:48": "pinned",                          # mm_alloc() owns mm_users
}

# 6.1: the same sites where they exist, and gadgetfs before the upstream fix.
AUDIT_61 = {
    "arch/powerpc/platforms/book3s/vas-api.c:201": "grab-only",     # as in 6.12
    "arch/x86/kvm/xen.c:1469": "grab-only",                         # as in 6.12
    "drivers/dma/idxd/cdev.c:573": "grab-only",                     # ctx->mm = current->mm at :130; the SVA bond holds mm_count
    "drivers/gpu/drm/amd/amdgpu/amdgpu_amdkfd.h:254": "unanalyzed",  # macro read_user_wptr()
    "drivers/gpu/drm/amd/amdkfd/kfd_process.c:191": "pinned",       # get_task_mm() + goto cleanup
    "drivers/usb/gadget/function/f_fs.c:844": "pinned",             # inside if (mmget_not_zero())
    "drivers/usb/gadget/legacy/inode.c:469": "unreferenced",        # priv->mm = current->mm at :538, no mmgrab: the bug upstream fixed
    "drivers/vfio/vfio_iommu_type1.c:3185": "pinned",               # mmget_not_zero() before the borrow
    "drivers/vhost/vhost.c:342": "review",                          # mixed stores, as in 6.12
}

# What the drop-in rule reports in 6.12: one file at a time, so kvm->mm is
# unresolved (its store is in kvm_main.c) and vhost (mixed) is not reported.
COCCICHECK_612 = [
    "./arch/powerpc/platforms/book3s/vas-api.c:201:1-15: WARNING: kthread_use_mm(task_ref->mm) without an mm_users reference (grab-only): every store to struct vas_user_win_ref.mm in this file holds mm_count only (mmgrab(), an SVA bond or an mmu notifier)",
    "./arch/x86/kvm/xen.c:1879:2-16: WARNING: kthread_use_mm(kvm->mm) without an mm_users reference (unresolved): no mmget() on a path to the borrow and no store to struct kvm.mm in this file",
    "./drivers/dma/idxd/cdev.c:758:1-15: WARNING: kthread_use_mm(mm) without an mm_users reference (grab-only): every store to struct idxd_user_context.mm in this file holds mm_count only (mmgrab(), an SVA bond or an mmu notifier)",
    "./fs/bcachefs/fs-io-direct.c:562:2-16: WARNING: kthread_use_mm(mm) without an mm_users reference (unreferenced): a store to struct dio_write.mm in this file takes no reference at all",
]


# 6.1: the same, and gadgetfs before the upstream fix (its store takes nothing).
COCCICHECK_61 = [
    "./arch/powerpc/platforms/book3s/vas-api.c:201:1-15: WARNING: kthread_use_mm(task_ref->mm) without an mm_users reference (grab-only): every store to struct vas_user_win_ref.mm in this file holds mm_count only (mmgrab(), an SVA bond or an mmu notifier)",
    "./arch/x86/kvm/xen.c:1469:2-16: WARNING: kthread_use_mm(kvm->mm) without an mm_users reference (unresolved): no mmget() on a path to the borrow and no store to struct kvm.mm in this file",
    "./drivers/dma/idxd/cdev.c:573:1-15: WARNING: kthread_use_mm(mm) without an mm_users reference (grab-only): every store to struct idxd_user_context.mm in this file holds mm_count only (mmgrab(), an SVA bond or an mmu notifier)",
    "./drivers/usb/gadget/legacy/inode.c:469:1-15: WARNING: kthread_use_mm(mm) without an mm_users reference (unreferenced): a store to struct kiocb_priv.mm in this file takes no reference at all",
]


@pytest.fixture(scope="module")
def tree612():
    return support.kernel_tree("6.12")


@pytest.fixture(scope="module")
def tree61():
    return support.kernel_tree("6.1")


def _audit(tree, *extra):
    proc = support.run_mmaudit("audit", "-q", "--format", "json", tree, *extra)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def audit612(tree612):
    return _audit(tree612, "-j", "2")


def _verdicts(text):
    data = json.loads(text)
    return {"%s:%d" % (s["file"], s["line"]): s["verdict"] for s in data["sites"]}


def _textual_calls(tree):
    """Every call outside comments, found by grep, independently of mmaudit."""
    out = subprocess.run(["grep", "-rnE", "--include=*.c", "--include=*.h",
                          r"\b(kthread_use_mm|use_mm)\s*\(", "."], cwd=tree,
                         capture_output=True, text=True).stdout
    calls = set()
    for line in out.splitlines():
        path, number, text = line.split(":", 2)
        code = text.strip()
        if code.startswith(("*", "/*", "//")) or code.startswith("void "):
            continue
        calls.add("%s:%s" % (path[2:], number))
    return calls


def test_audit_612_verdicts(audit612):
    assert _verdicts(audit612) == AUDIT_612


@pytest.fixture(scope="module")
def audit61(tree61):
    return _audit(tree61, "-j", "2")


def test_audit_61_verdicts(audit61):
    assert _verdicts(audit61) == AUDIT_61


def _risks(text):
    return {s["file"]: s["risk"] for s in json.loads(text)["sites"]
            if s["verdict"] in ("grab-only", "unreferenced")}


def test_risk_612(audit612):
    """x86-only findings are low risk; powerpc's VAS and bcachefs (built
    everywhere by allmodconfig) are high: decided by each tree's Kconfig."""
    assert _risks(audit612) == {"arch/powerpc/platforms/book3s/vas-api.c": "high",
                                "arch/x86/kvm/xen.c": "low",
                                "drivers/dma/idxd/cdev.c": "low",
                                "fs/bcachefs/fs-io-direct.c": "high"}
    vas = next(s for s in json.loads(audit612)["sites"] if "vas-api" in s["file"])
    assert vas["arches_affected"] == ["powerpc"] and vas["arches_building"] == ["powerpc"]


def test_risk_61(audit61):
    risks = _risks(audit61)
    assert risks["drivers/usb/gadget/legacy/inode.c"] == "high"
    assert risks["arch/powerpc/platforms/book3s/vas-api.c"] == "high"
    assert risks["arch/x86/kvm/xen.c"] == risks["drivers/dma/idxd/cdev.c"] == "low"


def test_every_textual_call_is_accounted_for(tree612, audit612):
    assert _textual_calls(tree612) == set(AUDIT_612)


def test_json_identical_across_jobs(tree612, audit612):
    assert _audit(tree612, "-j", "1") == audit612


def test_evidence_crosses_files(audit612):
    site = [s for s in json.loads(audit612)["sites"] if s["file"] == "arch/x86/kvm/xen.c"][0]
    assert any(e["file"] == "virt/kvm/kvm_main.c" for e in site["evidence"])


def test_outputs_and_sarif_validate(tree612, tmp_path):
    proc = support.run_mmaudit("audit", "-q", "-o", str(tmp_path), tree612)
    assert proc.returncode == 1
    assert sorted(os.listdir(tmp_path)) == [".mmaudit-outputs", "REPORT.md", "findings.json", "findings.sarif"]
    check = subprocess.run([os.path.join(support.ROOT, "scripts", "sarif-validate"),
                            str(tmp_path / "findings.sarif")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    report = (tmp_path / "REPORT.md").read_text()
    assert "virt/kvm/kvm_main.c" in report and "```c" in report


def _coccicheck(tree, mode):
    return subprocess.run(["make", "-s", "coccicheck", "MODE=" + mode, "J=2",
                           "COCCI=" + support.RULE], cwd=tree, capture_output=True, text=True)


@pytest.fixture(scope="module")
def coccicheck612(tree612):
    proc = _coccicheck(tree612, "report")
    assert proc.returncode == 0, proc.stderr
    return sorted(l for l in proc.stdout.splitlines() if "WARNING:" in l)


def test_coccicheck_report_612(coccicheck612):
    assert coccicheck612 == COCCICHECK_612


def test_coccicheck_report_61(tree61):
    proc = _coccicheck(tree61, "report")
    assert proc.returncode == 0, proc.stderr
    assert sorted(l for l in proc.stdout.splitlines() if "WARNING:" in l) == COCCICHECK_61


def test_coccicheck_agrees_with_audit_where_one_file_tells(coccicheck612, audit612):
    sites = {"%s:%d" % (s["file"], s["line"]): s for s in json.loads(audit612)["sites"]}
    reported = {}
    for line in coccicheck612:
        m = re.match(r"\./([^:]+):(\d+):.*\((grab-only|unreferenced|unresolved)\)", line)
        reported["%s:%s" % m.group(1, 2)] = m.group(3)
    for where, kind in reported.items():
        assert sites[where]["verdict"] in ("grab-only", "unreferenced", "review")
        if kind != "unresolved":
            assert sites[where]["verdict"] == kind
    for where, s in sites.items():
        one_file = all(e["file"] == s["file"] for e in s["evidence"])
        if s["verdict"] in ("grab-only", "unreferenced") and one_file:
            assert reported.get(where) == s["verdict"]


def test_three_shards_merge_byte_identical(tree612, tmp_path):
    for i in (1, 2, 3):
        proc = support.run_mmaudit("audit", "-q", "--shard", "%d/3" % i,
                                   "-o", str(tmp_path / ("s%d" % i)), tree612)
        assert proc.returncode in (0, 1), proc.stderr
    proc = support.run_mmaudit("merge", "-q", "-o", str(tmp_path / "merged"), "--tree", tree612,
                               *[str(tmp_path / ("s%d" % i) / "findings.json") for i in (1, 2, 3)])
    assert proc.returncode == 1, proc.stderr
    support.run_mmaudit("audit", "-q", "-j", "1", "-o", str(tmp_path / "single"), tree612)
    for name in ("findings.json", "findings.sarif", "REPORT.md"):
        assert (tmp_path / "merged" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
    check = subprocess.run([os.path.join(support.ROOT, "scripts", "sarif-validate"),
                            str(tmp_path / "merged" / "findings.sarif")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("mode", ["context", "org", "patch"])
def test_coccicheck_other_modes_612(tree612, mode):
    proc = _coccicheck(tree612, mode)
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"(?m)^(Fatal|Error|exception|Traceback)", proc.stderr + proc.stdout)
    if mode == "context":
        assert proc.stdout.count("\n-\tkthread_use_mm(") + proc.stdout.count("\n-\t\tkthread_use_mm(") == 4
    if mode == "org":
        assert proc.stdout.count("* TODO [[view:") == 4
    if mode == "patch":
        assert "+\tif (mmget_not_zero(task_ref->mm)) {" in proc.stdout


def _per_file(diff):
    return {m.group(1): chunk for chunk in re.split(r"(?m)^(?=--- a/)", diff)
            for m in [re.search(r"(?m)^\+\+\+ b/(\S+)", chunk)] if m}


def _patched_code(tree, rel, diff, tmp_path):
    """REL with DIFF applied, comments and whitespace aside."""
    dst = tmp_path / "patched.c"
    with open(os.path.join(tree, rel), encoding="utf-8", errors="surrogateescape") as f:
        dst.write_text(f.read(), encoding="utf-8", errors="surrogateescape")
    proc = subprocess.run(["patch", "-s", str(dst)], input=diff, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code = re.sub(r"/\*.*?\*/", "", dst.read_text(encoding="utf-8", errors="surrogateescape"),
                  flags=re.S)
    return re.sub(r"\s+", "", code)


@pytest.mark.parametrize("series, version, one_file", [
    ("6.12", "6.12.117", {"arch/powerpc/platforms/book3s/vas-api.c"}),
    ("6.1", "6.1.192", {"arch/powerpc/platforms/book3s/vas-api.c"})])
def test_coccicheck_patch_mode_matches_published_fixes(series, version, one_file, tmp_path):
    """make coccicheck MODE=patch writes the code of mmaudit fix's patch
    where one file decides it: vas-api's grab-only wrap.  kvm's store is in
    kvm_main.c; idxd borrows under a mutex; bcachefs and gadgetfs are
    unreferenced: those are mmaudit fix's."""
    tree = support.kernel_tree(series)
    proc = _coccicheck(tree, "patch")
    assert proc.returncode == 0, proc.stderr
    dropin = _per_file(proc.stdout)
    assert set(dropin) == one_file
    fixes = os.path.join(support.ROOT, "reports", "linux-" + version, "fixes")
    published = {}
    for name in sorted(os.listdir(fixes)):
        if name.endswith(".patch"):
            with open(os.path.join(fixes, name)) as f:
                published.update(_per_file(f.read().split("\n---\n", 1)[1]))
    assert one_file < set(published)
    for rel in sorted(one_file):
        assert _patched_code(tree, rel, dropin[rel], tmp_path) == \
            _patched_code(tree, rel, published[rel], tmp_path), rel


def test_diff_61_to_612_names_gadgetfs_fixed(tree61, audit612, tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(_audit(tree61, "-j", "2"))
    new.write_text(audit612)
    proc = support.run_mmaudit("diff", str(old), str(new))
    assert proc.returncode == 1
    fixed = proc.stdout.split("## Fixed (1)")[1].split("##")[0]
    assert "drivers/usb/gadget/legacy/inode.c:477" in fixed and "unreferenced → pinned" in fixed
    still = proc.stdout.split("## Still open (3)")[1].split("##")[0]
    assert "arch/x86/kvm/xen.c" in still and "drivers/dma/idxd/cdev.c" in still


def test_mixed_stores_name_the_separating_condition(audit612):
    site = [s for s in json.loads(audit612)["sites"] if s["file"] == "drivers/vhost/vhost.c"][0]
    assert "separated by `dev->use_worker`: pinned when it is true" in site["reason"]
    assert {e["line"] for e in site["evidence"]} >= {693, 701, 702}
