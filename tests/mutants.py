#!/usr/bin/env python3
"""Generality tests from mutations of the real call sites.

Each mutant takes the real code of one call site in Debian's 6.1 or 6.12
tree, and of the files that store its owning struct field (named by the
published findings' evidence), applies a small realistic edit, audits a
scratch tree holding only those files, and checks the site's verdict: a
"change" mutant must move it to the verdict the kernel semantics of the
edit demand, a "keep" mutant must leave it where the published audit has
it.  Every edit is an exact text replacement with a count check: when the
text is not found exactly as often as written, the mutant is an ERROR (the
tree changed), never skipped.  Each scratch tree is also audited once
unmutated, and must give the published verdict (so the small-tree method
is sound).

    python3 tests/mutants.py [--series 6.12] [-k NAME] [-j 2] [--diff]

prints a table: mutant, kind, expected, got, ok.  Exit status 0 when every
row is ok."""

import argparse
import collections
import concurrent.futures
import difflib
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import support  # noqa: E402

SERIES = ("6.1", "6.12")
KINDS = ("change", "keep")
API = "kthread_use_mm"


class MutationError(Exception):
    """An edit's text is not in the tree as written: the tree changed."""


Edit = collections.namedtuple("Edit", "path old new count")


def edit(path, old, new, count=1):
    """Replace OLD by NEW in PATH, OLD occurring exactly COUNT times.
    NEW may be a function of OLD (a rename inside a block)."""
    return Edit(path, old, new, count)


def insert_after(path, anchor, text, count=1):
    return Edit(path, anchor, anchor + text, count)


def insert_before(path, anchor, text, count=1):
    return Edit(path, anchor, text + anchor, count)


def borrow_in_helper(path, fn_anchor, name, at, arg):
    """The edits that move the borrow kthread_use_mm(ARG), in the text AT, into
    a static helper NAME that takes the mm, defined before FN_ANCHOR."""
    return [insert_before(path, fn_anchor, "static void %s(struct mm_struct *mm)\n{\n"
                          "\tkthread_use_mm(mm);\n}\n\n" % name),
            edit(path, at, lambda s: s.replace("kthread_use_mm(%s)" % arg, "%s(%s)" % (name, arg)))]


def rename(word, to):
    """A function that renames the identifier WORD in a block (not a
    struct member of the same name)."""
    pattern = re.compile(r"(?<!->)(?<!\.)\b%s\b" % re.escape(word))
    return lambda block: pattern.sub(to, block)


class Mutant(collections.namedtuple(
        "Mutant", "name series file function kind expect edits extra check_function why")):
    """FILE and FUNCTION name the published site; CHECK_FUNCTION the
    function that holds the borrow after the mutation (a helper);
    EXTRA the files the scratch tree needs besides the site's own and the
    store files of its evidence."""

    @property
    def checked(self):
        return self.check_function or self.function


def mutant(name, series, file, function, kind, expect, edits, extra=(), check_function=None,
           why=""):
    return Mutant(name, series, file, function, kind, expect, tuple(edits), tuple(extra),
                  check_function, why)


# --- The mutants --------------------------------------------------------------
#
# Paths of the sites.
FFS = "drivers/usb/gadget/function/f_fs.c"
GADGETFS = "drivers/usb/gadget/legacy/inode.c"
XE_SYNC = "drivers/gpu/drm/xe/xe_sync.c"
XE_VM = "drivers/gpu/drm/xe/xe_vm.c"
IOMMUFD = "drivers/iommu/iommufd/pages.c"
VDPA = "drivers/vdpa/vdpa_sim/vdpa_sim.c"
VFIO = "drivers/vfio/vfio_iommu_type1.c"
KFD = "drivers/gpu/drm/amd/amdkfd/kfd_process.c"
KFD_DQM = "drivers/gpu/drm/amd/amdkfd/kfd_device_queue_manager.c"
VAS = "arch/powerpc/platforms/book3s/vas-api.c"
XEN = "arch/x86/kvm/xen.c"
KVM_MAIN = "virt/kvm/kvm_main.c"
IDXD = "drivers/dma/idxd/cdev.c"
VHOST = "drivers/vhost/vhost.c"
BCACHEFS = "fs/bcachefs/fs-io-direct.c"
KUNIT = "lib/kunit/user_alloc.c"

# f_fs: the same worker in both trees.
FFS_WRAP = """\
\t\tif (mmget_not_zero(io_data->mm)) {
\t\t\tkthread_use_mm(io_data->mm);
\t\t\tret = ffs_copy_to_iter(io_data->buf, ret, &io_data->data);
\t\t\tkthread_unuse_mm(io_data->mm);
\t\t\tmmput(io_data->mm);
\t\t} else {
\t\t\tret = -EFAULT;
\t\t}
\t\tmmdrop(io_data->mm);
"""

# gadgetfs 6.12 (with the upstream fix) and 6.1 (before it).
GADGETFS_612_WORKER = """\
\tstruct mm_struct *mm = priv->mm;
\tstruct kiocb *iocb = priv->iocb;
\tsize_t ret;

\tif (mmget_not_zero(mm)) {
\t\tkthread_use_mm(mm);
\t\tret = copy_to_iter(priv->buf, priv->actual, &priv->to);
\t\tkthread_unuse_mm(mm);
\t\tmmput(mm);
\t\tif (!ret)
\t\t\tret = -EFAULT;
\t} else {
\t\tret = -EFAULT;
\t}
\tmmdrop(mm);
"""

GADGETFS_61_WORKER = """\
\tstruct mm_struct *mm = priv->mm;
\tstruct kiocb *iocb = priv->iocb;
\tsize_t ret;

\tkthread_use_mm(mm);
\tret = copy_to_iter(priv->buf, priv->actual, &priv->to);
\tkthread_unuse_mm(mm);
\tif (!ret)
\t\tret = -EFAULT;
"""

GADGETFS_STORE = "\tpriv->mm = current->mm; /* mm teardown waits for iocbs in exit_aio() */\n"

XE_SYNC_WORKER = """\
\tWRITE_ONCE(ufence->signalled, 1);
\tif (mmget_not_zero(ufence->mm)) {
\t\tkthread_use_mm(ufence->mm);
\t\tif (copy_to_user(ufence->addr, &ufence->value, sizeof(ufence->value)))
\t\t\tXE_WARN_ON("Copy to user failed");
\t\tkthread_unuse_mm(ufence->mm);
\t\tmmput(ufence->mm);
\t}

\t/*
"""

XE_VM_STORE = """\
\t\t\tif (mmget_not_zero(mm))
\t\t\t\tsnap->snap[i].mm = mm;
\t\t\telse
\t\t\t\tsnap->snap[i].data = ERR_PTR(-EFAULT);
"""

XE_VM_DELAYED = "void xe_vm_snapshot_capture_delayed(struct xe_vm_snapshot *snap)\n"

IOMMUFD_PIN = """\
\tif (change_mm) {
\t\tif (!mmget_not_zero(pages->source_mm))
\t\t\treturn iopt_pages_rw_slow(pages, start_index,
\t\t\t\t\t\t  last_index,
\t\t\t\t\t\t  start_byte % PAGE_SIZE, data,
\t\t\t\t\t\t  length, flags);
\t\tkthread_use_mm(pages->source_mm);
\t}
"""

IOMMUFD_PUT = """\
\t\tkthread_unuse_mm(pages->source_mm);
\t\tmmput(pages->source_mm);
"""

VDPA_WORK = """\
\tstruct mm_struct *mm = vdpasim->mm_bound;

\tif (use_va && mm) {
\t\tif (!mmget_not_zero(mm))
\t\t\treturn;
\t\tkthread_use_mm(mm);
\t}

\tvdpasim->dev_attr.work_fn(vdpasim);

\tif (use_va && mm) {
\t\tkthread_unuse_mm(mm);
\t\tmmput(mm);
\t}
"""

VFIO_BORROW = """\
\tif (kthread)
\t\tkthread_use_mm(mm);
\telse if (current->mm != mm)
\t\tgoto out;
"""

VFIO_FN = "static int vfio_iommu_type1_dma_rw_chunk(struct vfio_iommu *iommu,"

KFD_SDMA_GET = "\tmm = get_task_mm(pdd->process->lead_thread);\n"
KFD_SDMA_PUT = """\
\tkthread_unuse_mm(mm);
\tmmput(mm);

\t/*
\t * Do a second iteration over qpd_queues_list to check if any SDMA
"""
KFD_SDMA_FN = "static void kfd_sdma_activity_worker(struct work_struct *work)\n"

KFD_EXCEPTION = """\
\tmm = get_task_mm(p->lead_thread);

\tif (!mm)
\t\treturn;

\tkthread_use_mm(mm);

\tq = pqm_get_user_queue(&p->pqm, workarea->queue_id);
"""

KFD_EXCEPTION_PUT = """\
out:
\tkthread_unuse_mm(mm);
\tmmput(mm);
}
"""

KFD_DQM_GET = """\
\tp = workarea->p;
\tmm = get_task_mm(p->lead_thread);

\tif (!mm)
\t\treturn;

\tkthread_use_mm(mm);
"""

KFD_DQM_PUT = """\
\tkthread_unuse_mm(mm);
\tmmput(mm);
}
"""

VAS_BORROW = """\
\tkthread_use_mm(task_ref->mm);
\trc = copy_to_user(csb_addr, &csb, sizeof(csb));
\t/*
\t * User space polls on csb.flags (first byte). So add barrier
\t * then copy first byte with csb flags update.
\t */
\tif (!rc) {
\t\tcsb.flags = CSB_V;
\t\t/* Make sure update to csb.flags is visible now */
\t\tsmp_mb();
\t\trc = copy_to_user(csb_addr, &csb, sizeof(u8));
\t}
\tkthread_unuse_mm(task_ref->mm);
"""

VAS_GRAB = """\
\tmmgrab(task_ref->mm);
\tmmput(task_ref->mm);
"""

VAS_GET = """\
\ttask_ref->mm = get_task_mm(current);
\tif (!task_ref->mm) {
"""

VAS_OPEN_FN = "static int coproc_ioc_tx_win_open(struct file *fp, unsigned long arg)\n"
VAS_OPEN_INIT = "\tmutex_init(&txwin->task_ref.mmap_mutex);\n"

XEN_BORROW = """\
\t\tif (WARN_ON_ONCE(current->mm))
\t\t\treturn -EINVAL;

\t\tkthread_use_mm(kvm->mm);
\t\tmm_borrowed = true;
"""

XEN_UNBORROW = """\
\tif (mm_borrowed)
\t\tkthread_unuse_mm(kvm->mm);
"""

XEN_FN = "static int kvm_xen_set_evtchn(struct kvm_xen_evtchn *xe, struct kvm *kvm)\n"

KVM_GRAB = """\
\tmmgrab(current->mm);
\tkvm->mm = current->mm;
"""

IDXD_BORROW = """\
\t * to addr in the mm.
\t */
\tkthread_use_mm(mm);
"""

IDXD_UNBORROW = """\
\tkthread_unuse_mm(mm);

out:
\tmutex_unlock(&wq->uc_lock);
"""

VHOST_ATTACH = """\
\tif (dev->use_worker) {
\t\tdev->mm = get_task_mm(current);
\t} else {
\t\t/* vDPA device does not use worker thead, so there's
\t\t * no need to hold the address space for mm. This help
\t\t * to avoid deadlock in the case of mmap() which may
\t\t * held the refcnt of the file and depends on release
\t\t * method to remove vma.
\t\t */
\t\tdev->mm = current->mm;
\t\tmmgrab(dev->mm);
\t}
"""

BCACHEFS_CONTINUE = """\
\tstruct mm_struct *mm = dio->mm;

\tbio_reset(&dio->op.wbio.bio, NULL, REQ_OP_WRITE);

\tif (mm)
\t\tkthread_use_mm(mm);
\tbch2_dio_write_loop(dio);
\tif (mm)
\t\tkthread_unuse_mm(mm);
"""

BCACHEFS_STORE = "\tdio->mm\t\t\t= current->mm;\n"
BCACHEFS_FN = "static noinline __cold void bch2_dio_write_continue(struct dio_write *dio)\n"

KUNIT_BORROW = """\
\t/* Attach the mm. It will be cleaned up when the process dies. */
\tkthread_use_mm(mm);
"""

KUNIT_FN = "/* Create and attach a new mm if it doesn't already exist. */\n"


MUTANTS = [
    # --- f_fs ---------------------------------------------------------------
    mutant("ffs-612-drop-pin", "6.12", FFS, "ffs_user_copy_worker", "change", "grab-only", [
        edit(FFS, FFS_WRAP, """\
\t\tkthread_use_mm(io_data->mm);
\t\tret = ffs_copy_to_iter(io_data->buf, ret, &io_data->data);
\t\tkthread_unuse_mm(io_data->mm);
\t\tmmdrop(io_data->mm);
""")], why="the worker as before the mmget_not_zero() fix; the aio stores take mmgrab() only"),
    mutant("ffs-612-early-goto", "6.12", FFS, "ffs_user_copy_worker", "keep", "pinned", [
        edit(FFS, FFS_WRAP, """\
\t\tif (!mmget_not_zero(io_data->mm)) {
\t\t\tret = -EFAULT;
\t\t\tgoto drop;
\t\t}
\t\tkthread_use_mm(io_data->mm);
\t\tret = ffs_copy_to_iter(io_data->buf, ret, &io_data->data);
\t\tkthread_unuse_mm(io_data->mm);
\t\tmmput(io_data->mm);
drop:
\t\tmmdrop(io_data->mm);
""")], why="the if (mmget_not_zero()) wrap as a failure goto"),
    mutant("ffs-61-mmput-first", "6.1", FFS, "ffs_user_copy_worker", "change", "grab-only", [
        edit(FFS, FFS_WRAP, """\
\t\tif (mmget_not_zero(io_data->mm)) {
\t\t\tmmput(io_data->mm);
\t\t\tkthread_use_mm(io_data->mm);
\t\t\tret = ffs_copy_to_iter(io_data->buf, ret, &io_data->data);
\t\t\tkthread_unuse_mm(io_data->mm);
\t\t} else {
\t\t\tret = -EFAULT;
\t\t}
\t\tmmdrop(io_data->mm);
""")], why="mmput() moved before the borrow: the pin ends before it is needed"),
    mutant("ffs-61-helper", "6.1", FFS, "ffs_user_copy_worker", "keep", "pinned", [
        insert_before(FFS, "static void ffs_user_copy_worker(struct work_struct *work)\n", """\
static void ffs_use_mm(struct mm_struct *mm)
{
\tkthread_use_mm(mm);
}

"""),
        edit(FFS, "\t\t\tkthread_use_mm(io_data->mm);\n", "\t\t\tffs_use_mm(io_data->mm);\n")],
        check_function="ffs_use_mm",
        why="the borrow in a helper taking the mm, called under the caller's pin"),

    # --- gadgetfs -----------------------------------------------------------
    mutant("gadgetfs-612-mmput-first", "6.12", GADGETFS, "ep_user_copy_worker", "change",
           "grab-only", [
               edit(GADGETFS, """\
\tif (mmget_not_zero(mm)) {
\t\tkthread_use_mm(mm);
\t\tret = copy_to_iter(priv->buf, priv->actual, &priv->to);
\t\tkthread_unuse_mm(mm);
\t\tmmput(mm);
""", """\
\tif (mmget_not_zero(mm)) {
\t\tmmput(mm);
\t\tkthread_use_mm(mm);
\t\tret = copy_to_iter(priv->buf, priv->actual, &priv->to);
\t\tkthread_unuse_mm(mm);
""")], why="mmput() before the borrow; ep_aio() holds mmgrab() only"),
    mutant("gadgetfs-612-drop-pin-and-grab", "6.12", GADGETFS, "ep_user_copy_worker", "change",
           "unreferenced", [
               edit(GADGETFS, GADGETFS_612_WORKER, GADGETFS_61_WORKER),
               edit(GADGETFS, GADGETFS_STORE + "\tmmgrab(priv->mm);\n", GADGETFS_STORE),
               edit(GADGETFS, "\t\tmmdrop(priv->mm);\n", ""),
               edit(GADGETFS, "\tmmdrop(priv->mm);\n", "")],
           why="the upstream fix reverted: no pin at the borrow, no mmgrab() at the store"),
    mutant("gadgetfs-612-rename", "6.12", GADGETFS, "ep_user_copy_worker", "keep", "pinned", [
        edit(GADGETFS, GADGETFS_612_WORKER, rename("mm", "user_mm"))],
        why="the local mm renamed"),
    mutant("gadgetfs-61-grab", "6.1", GADGETFS, "ep_user_copy_worker", "change", "grab-only", [
        insert_after(GADGETFS, GADGETFS_STORE, "\tmmgrab(priv->mm);\n"),
        edit(GADGETFS, "\tkfree(priv->to_free);\n\tkfree(priv);\n}\n",
             "\tkfree(priv->to_free);\n\tmmdrop(priv->mm);\n\tkfree(priv);\n}\n")],
        why="mmgrab() at the store (half the upstream fix): mm_count only"),
    mutant("gadgetfs-61-upstream-fix", "6.1", GADGETFS, "ep_user_copy_worker", "change", "pinned", [
        edit(GADGETFS, GADGETFS_61_WORKER, GADGETFS_612_WORKER),
        insert_after(GADGETFS, GADGETFS_STORE, "\tmmgrab(priv->mm);\n"),
        edit(GADGETFS, "\tif (priv->to_free == NULL || unlikely(req->actual == 0)) {\n",
             "\tif (priv->to_free == NULL || unlikely(req->actual == 0)) {\n\t\tmmdrop(priv->mm);\n"),
        edit(GADGETFS, "fail:\n\tspin_unlock_irq(&epdata->dev->lock);\n",
             "fail:\n\tspin_unlock_irq(&epdata->dev->lock);\n\tmmdrop(priv->mm);\n")],
        why="the 6.12 code (upstream fix) backported"),
    mutant("gadgetfs-61-rename", "6.1", GADGETFS, "ep_user_copy_worker", "keep", "unreferenced", [
        edit(GADGETFS, GADGETFS_61_WORKER, rename("mm", "user_mm"))],
        why="the local mm renamed"),

    # --- xe_sync ------------------------------------------------------------
    mutant("xe_sync-612-null-check", "6.12", XE_SYNC, "user_fence_worker", "change", "grab-only", [
        edit(XE_SYNC, XE_SYNC_WORKER, lambda s: s.replace(
            "if (mmget_not_zero(ufence->mm)) {", "if (ufence->mm) {").replace(
            "\t\tmmput(ufence->mm);\n", ""))],
        why="a NULL check instead of the pin; the fence holds mmgrab() only"),
    mutant("xe_sync-612-early-goto", "6.12", XE_SYNC, "user_fence_worker", "keep", "pinned", [
        edit(XE_SYNC, XE_SYNC_WORKER, """\
\tWRITE_ONCE(ufence->signalled, 1);
\tif (!mmget_not_zero(ufence->mm))
\t\tgoto wake;

\tkthread_use_mm(ufence->mm);
\tif (copy_to_user(ufence->addr, &ufence->value, sizeof(ufence->value)))
\t\tXE_WARN_ON("Copy to user failed");
\tkthread_unuse_mm(ufence->mm);
\tmmput(ufence->mm);

wake:
\t/*
""")], why="the wrap as an early goto"),
    mutant("xe_sync-612-alias-borrow", "6.12", XE_SYNC, "user_fence_worker", "keep", "pinned", [
        edit(XE_SYNC, "\tstruct xe_user_fence *ufence = container_of(w, struct xe_user_fence, worker);\n",
             "\tstruct xe_user_fence *ufence = container_of(w, struct xe_user_fence, worker);\n"
             "\tstruct mm_struct *mm = ufence->mm;\n"),
        edit(XE_SYNC, XE_SYNC_WORKER, lambda s: s.replace(
            "kthread_use_mm(ufence->mm)", "kthread_use_mm(mm)").replace(
            "kthread_unuse_mm(ufence->mm)", "kthread_unuse_mm(mm)").replace(
            "mmput(ufence->mm)", "mmput(mm)"))],
        why="the pin on ufence->mm, the borrow on a local alias of it"),

    # --- xe_vm: pinned by its only store --------------------------------------
    mutant("xe_vm-612-unpinned-store", "6.12", XE_VM, "xe_vm_snapshot_capture_delayed", "change",
           "unreferenced", [
               edit(XE_VM, XE_VM_STORE, "\t\t\tsnap->snap[i].mm = mm;\n")],
           why="the snapshot stores the notifier's mm without mmget_not_zero()"),
    mutant("xe_vm-612-bare-store", "6.12", XE_VM, "xe_vm_snapshot_capture_delayed", "change",
           "review", [
               edit(XE_VM, XE_VM_STORE, """\
\t\t\tif (mm == current->mm)
\t\t\t\tsnap->snap[i].mm = current->mm;
\t\t\telse if (mmget_not_zero(mm))
\t\t\t\tsnap->snap[i].mm = mm;
\t\t\telse
\t\t\t\tsnap->snap[i].data = ERR_PTR(-EFAULT);
""")], why="a second store, of current->mm, takes no reference: mixed stores"),
    mutant("xe_vm-612-pinned-store", "6.12", XE_VM, "xe_vm_snapshot_capture_delayed", "keep",
           "pinned", [
               edit(XE_VM, XE_VM_STORE, """\
\t\t\tif (mm == current->mm)
\t\t\t\tsnap->snap[i].mm = get_task_mm(current);
\t\t\telse if (mmget_not_zero(mm))
\t\t\t\tsnap->snap[i].mm = mm;
\t\t\telse
\t\t\t\tsnap->snap[i].data = ERR_PTR(-EFAULT);
""")], why="a second store, of get_task_mm(current): every store pinned"),

    # --- iommufd ------------------------------------------------------------
    mutant("iommufd-612-drop-pin", "6.12", IOMMUFD, "iopt_pages_rw_access", "change", "grab-only", [
        edit(IOMMUFD, IOMMUFD_PIN, """\
\tif (change_mm)
\t\tkthread_use_mm(pages->source_mm);
"""),
        edit(IOMMUFD, IOMMUFD_PUT, "\t\tkthread_unuse_mm(pages->source_mm);\n")],
        why="no mmget_not_zero()/mmput() around the borrow; iopt_alloc_pages() takes mmgrab() only"),
    mutant("iommufd-612-alias-pin", "6.12", IOMMUFD, "iopt_pages_rw_access", "keep", "pinned", [
        edit(IOMMUFD, IOMMUFD_PIN, """\
\tif (change_mm) {
\t\tstruct mm_struct *mm = pages->source_mm;

\t\tif (!mmget_not_zero(mm))
\t\t\treturn iopt_pages_rw_slow(pages, start_index,
\t\t\t\t\t\t  last_index,
\t\t\t\t\t\t  start_byte % PAGE_SIZE, data,
\t\t\t\t\t\t  length, flags);
\t\tkthread_use_mm(pages->source_mm);
\t}
""")], why="the pin on a local alias of pages->source_mm, the borrow on the field"),

    # --- vdpa_sim -----------------------------------------------------------
    mutant("vdpa_sim-612-drop-pin", "6.12", VDPA, "vdpasim_work_fn", "change", "unreferenced", [
        edit(VDPA, VDPA_WORK, lambda s: s.replace(
            "\t\tif (!mmget_not_zero(mm))\n\t\t\treturn;\n", "").replace(
            "\t\tmmput(mm);\n", ""))],
        why="no pin; mm_bound is stored from the bind request with no reference"),
    mutant("vdpa_sim-612-comments", "6.12", VDPA, "vdpasim_work_fn", "keep", "pinned", [
        edit(VDPA, VDPA_WORK, """\
\tstruct mm_struct *mm = vdpasim->mm_bound;

\t/*
\t * The bound mm may be exiting: take mm_users for the duration of
\t * the work, or skip it.
\t */
\tif (use_va && mm) {
\t\tif (!mmget_not_zero(mm))
\t\t\treturn;	/* the owner is gone */

\t\tkthread_use_mm(mm);
\t}

\tvdpasim->dev_attr.work_fn(vdpasim);

\tif (use_va && mm) {
\t\tkthread_unuse_mm(mm);
\t\tmmput(mm);	/* the reference taken above */
\t}
""")], why="comments and blank lines"),

    # --- vfio ---------------------------------------------------------------
    mutant("vfio-612-helper", "6.12", VFIO, "vfio_iommu_type1_dma_rw_chunk", "keep", "pinned", [
        *borrow_in_helper(VFIO, VFIO_FN, "vfio_dma_rw_use_mm", VFIO_BORROW, "mm")],
        check_function="vfio_dma_rw_use_mm",
        why="the borrow in a helper taking the mm, called after mmget_not_zero()"),
    mutant("vfio-61-drop-pin", "6.1", VFIO, "vfio_iommu_type1_dma_rw_chunk", "change", "grab-only", [
        edit(VFIO, "\tmm = dma->mm;\n\tif (!mmget_not_zero(mm))\n\t\treturn -EPERM;\n\n\tif (kthread)\n",
             "\tmm = dma->mm;\n\tif (kthread)\n"),
        edit(VFIO, "\t\tkthread_unuse_mm(mm);\nout:\n\tmmput(mm);\n\treturn *copied ? 0 : -EFAULT;\n",
             "\t\tkthread_unuse_mm(mm);\nout:\n\treturn *copied ? 0 : -EFAULT;\n")],
        why="no mmget_not_zero()/mmput(); both stores of dma->mm take mmgrab() only"),
    mutant("vfio-61-rename", "6.1", VFIO, "vfio_iommu_type1_dma_rw_chunk", "keep", "pinned", [
        edit(VFIO, "\tmm = dma->mm;\n\tif (!mmget_not_zero(mm))\n\t\treturn -EPERM;\n\n" + VFIO_BORROW,
             rename("mm", "dma_mm")),
        edit(VFIO, "\t\tkthread_unuse_mm(mm);\nout:\n\tmmput(mm);\n\treturn *copied ? 0 : -EFAULT;\n",
             rename("mm", "dma_mm")),
        edit(VFIO, "\tstruct mm_struct *mm;\n\tunsigned long vaddr;\n\tstruct vfio_dma *dma;\n",
             rename("mm", "dma_mm"))],
        why="the local mm renamed"),

    # --- kfd ------------------------------------------------------------------
    mutant("kfd-612-sdma-task-mm", "6.12", KFD, "kfd_sdma_activity_worker", "change", "review", [
        edit(KFD, KFD_SDMA_GET, "\tmm = pdd->process->lead_thread->mm;\n"),
        edit(KFD, KFD_SDMA_PUT, lambda s: s.replace("\tmmput(mm);\n", ""))],
        why="a plain read of task->mm instead of get_task_mm(): nothing holds the mm"),
    mutant("kfd-612-exception-process-mm", "6.12", KFD, "send_exception_work_handler", "change",
           "grab-only", [
               edit(KFD, KFD_EXCEPTION, lambda s: s.replace(
                   "get_task_mm(p->lead_thread)", "p->mm")),
               edit(KFD, KFD_EXCEPTION_PUT, "out:\n\tkthread_unuse_mm(mm);\n}\n")],
           why="the process's mm field, held by its mmu notifier (mm_count) only"),
    mutant("kfd-612-exception-rename", "6.12", KFD, "send_exception_work_handler", "keep", "pinned", [
        edit(KFD, KFD_EXCEPTION, rename("mm", "task_mm")),
        edit(KFD, KFD_EXCEPTION_PUT, rename("mm", "task_mm")),
        edit(KFD, "\tstruct queue *q;\n\tstruct mm_struct *mm;\n\tstruct kfd_context_save_area_header",
             rename("mm", "task_mm"))],
        why="the local mm renamed"),
    mutant("kfd_dqm-612-process-mm", "6.12", KFD_DQM, "copy_context_work_handler", "change",
           "grab-only", [
               edit(KFD_DQM, KFD_DQM_GET, lambda s: s.replace("get_task_mm(p->lead_thread)", "p->mm")),
               edit(KFD_DQM, KFD_DQM_PUT, "\tkthread_unuse_mm(mm);\n}\n")],
           extra=[KFD],
           why="the process's mm field, stored in kfd_process.c and held by its mmu notifier only"),
    mutant("kfd_dqm-612-reformat", "6.12", KFD_DQM, "copy_context_work_handler", "keep", "pinned", [
        edit(KFD_DQM, KFD_DQM_GET, """\
\tp = workarea->p;
\tmm = get_task_mm(p->lead_thread);
\tif (unlikely(!mm))
\t\treturn;
\t/* get_wave_state() copies to the process's save area */
\tkthread_use_mm(mm);
""")], why="blank lines removed, unlikely(), a comment"),
    mutant("kfd-61-task-mm", "6.1", KFD, "kfd_sdma_activity_worker", "change", "review", [
        edit(KFD, KFD_SDMA_GET, "\tmm = READ_ONCE(pdd->process->lead_thread->mm);\n"),
        edit(KFD, KFD_SDMA_PUT, lambda s: s.replace("\tmmput(mm);\n", ""))],
        why="READ_ONCE(task->mm) instead of get_task_mm(): nothing holds the mm"),
    mutant("kfd-61-helper", "6.1", KFD, "kfd_sdma_activity_worker", "keep", "pinned", [
        insert_before(KFD, KFD_SDMA_FN, """\
static void kfd_sdma_use_mm(struct mm_struct *mm)
{
\tkthread_use_mm(mm);
}

"""),
        edit(KFD, "\tif (!mm)\n\t\tgoto cleanup;\n\n\tkthread_use_mm(mm);\n",
             "\tif (!mm)\n\t\tgoto cleanup;\n\n\tkfd_sdma_use_mm(mm);\n")],
        check_function="kfd_sdma_use_mm",
        why="the borrow in a helper, called after get_task_mm()"),

    # --- vas-api --------------------------------------------------------------
    mutant("vas-612-wrap", "6.12", VAS, "vas_update_csb", "change", "pinned", [
        edit(VAS, VAS_BORROW, """\
\trc = -EFAULT;
\tif (mmget_not_zero(task_ref->mm)) {
\t\tkthread_use_mm(task_ref->mm);
\t\trc = copy_to_user(csb_addr, &csb, sizeof(csb));
\t\t/*
\t\t * User space polls on csb.flags (first byte). So add barrier
\t\t * then copy first byte with csb flags update.
\t\t */
\t\tif (!rc) {
\t\t\tcsb.flags = CSB_V;
\t\t\t/* Make sure update to csb.flags is visible now */
\t\t\tsmp_mb();
\t\t\trc = copy_to_user(csb_addr, &csb, sizeof(u8));
\t\t}
\t\tkthread_unuse_mm(task_ref->mm);
\t\tmmput(task_ref->mm);
\t}
""")], why="the borrow under mmget_not_zero()"),
    mutant("vas-612-bare-store", "6.12", VAS, "vas_update_csb", "change", "unreferenced", [
        insert_before(VAS, VAS_OPEN_FN, """\
static void vas_user_win_ref_set_mm(struct vas_user_win_ref *task_ref)
{
\ttask_ref->mm = current->mm;
}

"""),
        insert_after(VAS, VAS_OPEN_INIT, "\tvas_user_win_ref_set_mm(&txwin->task_ref);\n")],
        why="the window open path records the opener's mm with no reference"),
    mutant("vas-61-bare-store-member", "6.1", VAS, "vas_update_csb", "change", "unreferenced", [
        insert_after(VAS, VAS_OPEN_INIT, "\ttxwin->task_ref.mm = current->mm;\n")],
        extra=["arch/powerpc/include/asm/vas.h"],
        why="the window open path records the opener's mm with no reference, "
            "through the window's embedded task_ref"),
    mutant("vas-612-comments", "6.12", VAS, "vas_update_csb", "keep", "grab-only", [
        edit(VAS, VAS_BORROW, lambda s: "\t/* copy the CSB in the window owner's address space */\n"
             + s.replace("\tkthread_unuse_mm(task_ref->mm);\n",
                         "\n\tkthread_unuse_mm(task_ref->mm);\t/* back to the kernel mm */\n"))],
        why="comments and a blank line"),
    mutant("vas-61-keep-users", "6.1", VAS, "vas_update_csb", "change", "pinned", [
        edit(VAS, VAS_GRAB, "")],
        why="the get_task_mm() reference kept instead of traded for mmgrab()"),
    mutant("vas-61-direct-grab", "6.1", VAS, "vas_update_csb", "keep", "grab-only", [
        edit(VAS, VAS_GET, "\ttask_ref->mm = current->mm;\n\tif (!task_ref->mm) {\n"),
        edit(VAS, VAS_GRAB, "\tmmgrab(task_ref->mm);\n")],
        why="mmgrab(current->mm) directly instead of get_task_mm(), mmgrab(), mmput()"),

    # --- kvm xen --------------------------------------------------------------
    mutant("kvm-612-no-grab", "6.12", XEN, "kvm_xen_set_evtchn", "change", "unreferenced", [
        edit(KVM_MAIN, KVM_GRAB, "\tkvm->mm = current->mm;\n")],
        why="kvm_create_vm() without mmgrab()"),
    mutant("kvm-612-grab-after-store", "6.12", XEN, "kvm_xen_set_evtchn", "keep", "grab-only", [
        edit(KVM_MAIN, KVM_GRAB, "\tkvm->mm = current->mm;\n\tmmgrab(kvm->mm);\n")],
        why="mmgrab() after the store, on the field"),
    mutant("kvm-612-alias", "6.12", XEN, "kvm_xen_set_evtchn", "keep", "grab-only", [
        edit(XEN, XEN_FN + "{\n\tbool mm_borrowed = false;\n",
             XEN_FN + "{\n\tstruct mm_struct *mm = kvm->mm;\n\tbool mm_borrowed = false;\n"),
        edit(XEN, XEN_BORROW, lambda s: s.replace("kthread_use_mm(kvm->mm)", "kthread_use_mm(mm)")),
        edit(XEN, XEN_UNBORROW, lambda s: s.replace("kthread_unuse_mm(kvm->mm)", "kthread_unuse_mm(mm)"))],
        why="the borrow on a local copy of kvm->mm"),
    mutant("kvm-61-early-return", "6.1", XEN, "kvm_xen_set_evtchn", "change", "pinned", [
        edit(XEN, XEN_BORROW, lambda s: s.replace(
            "\t\tkthread_use_mm(kvm->mm);\n",
            "\t\tif (!mmget_not_zero(kvm->mm))\n\t\t\treturn -EFAULT;\n\t\tkthread_use_mm(kvm->mm);\n")),
        edit(XEN, XEN_UNBORROW, "\tif (mm_borrowed) {\n\t\tkthread_unuse_mm(kvm->mm);\n"
             "\t\tmmput(kvm->mm);\n\t}\n")],
        why="mmget_not_zero() before the borrow, mmput() after it"),
    mutant("kvm-61-no-grab", "6.1", XEN, "kvm_xen_set_evtchn", "change", "unreferenced", [
        edit(KVM_MAIN, KVM_GRAB, "\tkvm->mm = current->mm;\n")],
        why="kvm_create_vm() without mmgrab()"),
    mutant("kvm-61-helper", "6.1", XEN, "kvm_xen_set_evtchn", "keep", "grab-only", [
        *borrow_in_helper(XEN, XEN_FN, "kvm_xen_use_mm", XEN_BORROW, "kvm->mm")],
        check_function="kvm_xen_use_mm",
        why="the borrow in a helper; the caller passes kvm->mm, stored with mmgrab()"),

    # --- idxd -----------------------------------------------------------------
    mutant("idxd-612-store-before-bond", "6.12", IDXD, "idxd_copy_cr", "keep", "grab-only", [
        edit(IDXD, "\t\tctx->pasid = pasid;\n\t\tctx->mm = current->mm;\n", "\t\tctx->pasid = pasid;\n"),
        edit(IDXD, "\t\tsva = iommu_sva_bind_device(dev, current->mm);\n",
             "\t\tctx->mm = current->mm;\n\t\tsva = iommu_sva_bind_device(dev, ctx->mm);\n")],
        why="the store before the SVA bond, which binds the stored mm"),
    mutant("idxd-612-no-alias", "6.12", IDXD, "idxd_copy_cr", "keep", "grab-only", [
        edit(IDXD, "\tstruct idxd_user_context *ctx;\n\tstruct mm_struct *mm;\n\n\tmutex_lock(&wq->uc_lock);\n",
             "\tstruct idxd_user_context *ctx;\n\n\tmutex_lock(&wq->uc_lock);\n"),
        edit(IDXD, "\tmm = ctx->mm;\n", ""),
        edit(IDXD, "\tkthread_use_mm(mm);\n\tleft = copy_to_user(",
             "\tkthread_use_mm(ctx->mm);\n\tleft = copy_to_user("),
        edit(IDXD, IDXD_UNBORROW, lambda s: s.replace("kthread_unuse_mm(mm)", "kthread_unuse_mm(ctx->mm)"))],
        why="the borrow on ctx->mm itself, not on a local copy"),
    mutant("idxd-61-early-goto", "6.1", IDXD, "idxd_copy_cr", "change", "pinned", [
        edit(IDXD, IDXD_BORROW, lambda s: s.replace(
            "\tkthread_use_mm(mm);\n", "\tif (!mmget_not_zero(mm))\n\t\tgoto out;\n\tkthread_use_mm(mm);\n")),
        edit(IDXD, IDXD_UNBORROW, lambda s: s.replace(
            "\tkthread_unuse_mm(mm);\n", "\tkthread_unuse_mm(mm);\n\tmmput_async(mm);\n"))],
        why="mmget_not_zero() before the borrow, mmput_async() (a mutex is held) after it"),
    mutant("idxd-61-rename", "6.1", IDXD, "idxd_copy_cr", "keep", "grab-only", [
        edit(IDXD, "\tstruct idxd_user_context *ctx;\n\tstruct mm_struct *mm;\n\n\tmutex_lock(&wq->uc_lock);\n",
             rename("mm", "ctx_mm")),
        edit(IDXD, "\tmm = ctx->mm;\n", "\tctx_mm = ctx->mm;\n"),
        edit(IDXD, "\tkthread_use_mm(mm);\n\tleft = copy_to_user(", rename("mm", "ctx_mm")),
        edit(IDXD, IDXD_UNBORROW, rename("mm", "ctx_mm"))],
        why="the local mm renamed"),

    # --- vhost ----------------------------------------------------------------
    mutant("vhost-612-all-pinned", "6.12", VHOST, "vhost_run_work_kthread_list", "change", "pinned", [
        edit(VHOST, VHOST_ATTACH, "\tdev->mm = get_task_mm(current);\n")],
        why="every owner takes get_task_mm()"),
    mutant("vhost-612-early-return", "6.12", VHOST, "vhost_run_work_kthread_list", "keep", "review", [
        edit(VHOST, VHOST_ATTACH, """\
\tif (dev->use_worker) {
\t\tdev->mm = get_task_mm(current);
\t\treturn;
\t}

\t/* vDPA device does not use worker thead: mm_count is enough */
\tdev->mm = current->mm;
\tmmgrab(dev->mm);
""")], why="the if/else of vhost_attach_mm() as an early return: still mixed"),
    mutant("vhost-61-worker-grab", "6.1", VHOST, "vhost_worker", "change", "grab-only", [
        edit(VHOST, VHOST_ATTACH, lambda s: s.replace(
            "\t\tdev->mm = get_task_mm(current);\n",
            "\t\tdev->mm = current->mm;\n\t\tmmgrab(dev->mm);\n"))],
        why="the worker's owner takes mmgrab() too: every store mm_count only"),
    mutant("vhost-61-grab-before-store", "6.1", VHOST, "vhost_worker", "keep", "review", [
        edit(VHOST, "\t\tdev->mm = current->mm;\n\t\tmmgrab(dev->mm);\n",
             "\t\tmmgrab(current->mm);\n\t\tdev->mm = current->mm;\n")],
        why="mmgrab() before the store: still mixed"),

    mutant("vhost-61-alias", "6.1", VHOST, "vhost_worker", "keep", "review", [
        edit(VHOST, "\tstruct vhost_dev *dev = data;\n\tstruct vhost_work *work, *work_next;\n"
             "\tstruct llist_node *node;\n\n\tkthread_use_mm(dev->mm);\n",
             "\tstruct vhost_dev *dev = data;\n\tstruct mm_struct *mm = dev->mm;\n"
             "\tstruct vhost_work *work, *work_next;\n\tstruct llist_node *node;\n\n"
             "\tkthread_use_mm(mm);\n"),
        edit(VHOST, "\tkthread_unuse_mm(dev->mm);\n\treturn 0;\n", "\tkthread_unuse_mm(mm);\n\treturn 0;\n")],
        why="the worker borrows a local copy of dev->mm"),

    # --- bcachefs -------------------------------------------------------------
    mutant("bcachefs-612-grab", "6.12", BCACHEFS, "bch2_dio_write_continue", "change", "grab-only", [
        insert_after(BCACHEFS, BCACHEFS_STORE, "\tif (dio->mm)\n\t\tmmgrab(dio->mm);\n")],
        why="mmgrab() at the store"),
    mutant("bcachefs-612-helper", "6.12", BCACHEFS, "bch2_dio_write_continue", "keep", "unreferenced", [
        *borrow_in_helper(BCACHEFS, BCACHEFS_FN, "bch2_dio_use_mm", BCACHEFS_CONTINUE, "mm")],
        check_function="bch2_dio_use_mm",
        why="the borrow in a helper; the caller passes an alias of dio->mm"),
    mutant("bcachefs-612-braces", "6.12", BCACHEFS, "bch2_dio_write_continue", "keep", "unreferenced", [
        edit(BCACHEFS, BCACHEFS_CONTINUE, """\
\tstruct mm_struct *mm = dio->mm;

\tbio_reset(&dio->op.wbio.bio, NULL, REQ_OP_WRITE);

\tif (mm) {
\t\tkthread_use_mm(mm);
\t\tbch2_dio_write_loop(dio);
\t\tkthread_unuse_mm(mm);
\t} else {
\t\tbch2_dio_write_loop(dio);
\t}
""")], why="one if/else instead of two one-line ifs"),

    # --- kunit ----------------------------------------------------------------
    mutant("kunit-612-mmput-first", "6.12", KUNIT, "kunit_attach_mm", "change", "unreferenced", [
        edit(KUNIT, KUNIT_BORROW, "\tmmput(mm);\n" + KUNIT_BORROW)],
        why="mmput() of the only (mm_alloc()) reference before the borrow: nothing holds the mm"),
    mutant("kunit-612-helper", "6.12", KUNIT, "kunit_attach_mm", "keep", "pinned", [
        *borrow_in_helper(KUNIT, KUNIT_FN, "kunit_use_mm", KUNIT_BORROW, "mm")],
        check_function="kunit_use_mm",
        why="the borrow in a helper, called with the mm_alloc() mm"),
]


# --- The refactors of the issue -------------------------------------------------
#
# Each refactor on at least two sites, in both trees where the site exists:
# the f_fs worker, vfio's dma_rw_chunk and kfd's SDMA worker are the same
# code in 6.1 and 6.12.  Keep mutants restructure the pin or the borrow
# (helpers of the same file, a flag); change mutants lose the pin on the
# borrow's own path.

FFS_FN = "static void ffs_user_copy_worker(struct work_struct *work)\n"
FFS_BLOCK = "\tif (io_data->read && ret > 0) {\n" + FFS_WRAP
FFS_REGION = """\
\t\t\tkthread_use_mm(io_data->mm);
\t\t\tret = ffs_copy_to_iter(io_data->buf, ret, &io_data->data);
\t\t\tkthread_unuse_mm(io_data->mm);
"""

VFIO_PIN = "\tmm = dma->mm;\n\tif (!mmget_not_zero(mm))\n\t\treturn -EPERM;\n"
VFIO_DECL = "\tbool kthread = current->mm == NULL;\n"
VFIO_TAIL = "\tif (kthread)\n\t\tkthread_unuse_mm(mm);\nout:\n\tmmput(mm);\n"

KFD_SDMA_DECL = """\
\tstruct kfd_process_device *pdd;
\tuint64_t val;
\tstruct mm_struct *mm;
\tstruct queue *q;
\tstruct qcm_process_device *qpd;
\tstruct device_queue_manager *dqm;
\tint ret = 0;
"""

KFD_SDMA_REGION = """\
\tkthread_use_mm(mm);

\tlist_for_each_entry(sdma_q, &sdma_q_list.list, list) {
\t\tval = 0;
\t\tret = read_sdma_queue_counter(sdma_q->rptr, &val);
\t\tif (ret) {
\t\t\tpr_debug("Failed to read SDMA queue active counter for queue id: %d",
\t\t\t\t sdma_q->queue_id);
\t\t} else {
\t\t\tsdma_q->sdma_val = val;
\t\t\tworkarea->sdma_activity_counter += val;
\t\t}
\t}

\tkthread_unuse_mm(mm);
"""

KFD_EXCEPTION_FN = "static void send_exception_work_handler(struct work_struct *work)\n"
KFD_DQM_FN = "static void copy_context_work_handler (struct work_struct *work)\n"
XE_SYNC_FN = "static void user_fence_worker(struct work_struct *w)\n"
IOMMUFD_FN = "int iopt_pages_rw_access(struct iopt_pages *pages, unsigned long start_byte,\n"

KFD_TASK_MM = """\
static struct mm_struct *kfd_lead_thread_mm(struct task_struct *lead_thread)
{
\treturn get_task_mm(lead_thread);
}

"""


def two_tree_mutants(site, function, refactor, kind, expect, edits, check_function=None, why=""):
    """REFACTOR of a site whose code is the same in 6.1 and 6.12, in both."""
    return [mutant("%s-%s-%s" % (site, series.replace(".", ""), refactor), series,
                   edits[0].path, function, kind, expect, edits,
                   check_function=check_function, why=why)
            for series in SERIES]


ISSUE_MUTANTS = (
    # 1. A pin helper: a bool helper returning mmget_not_zero() of the
    # object's field, or of the mm it is passed.
    two_tree_mutants("ffs", "ffs_user_copy_worker", "pin-helper", "keep", "pinned", [
        insert_before(FFS, FFS_FN, """\
static bool ffs_io_data_get_mm(struct ffs_io_data *io_data)
{
\treturn mmget_not_zero(io_data->mm);
}

"""),
        edit(FFS, "\t\tif (mmget_not_zero(io_data->mm)) {\n", "\t\tif (ffs_io_data_get_mm(io_data)) {\n")],
        why="1. pin helper: a bool helper returns mmget_not_zero(io_data->mm)")
    + [
        mutant("iommufd-612-pin-helper", "6.12", IOMMUFD, "iopt_pages_rw_access", "keep", "pinned", [
            insert_before(IOMMUFD, IOMMUFD_FN, """\
static bool iopt_pages_get_mm(struct iopt_pages *pages)
{
\treturn mmget_not_zero(pages->source_mm);
}

"""),
            edit(IOMMUFD, IOMMUFD_PIN, lambda s: s.replace(
                "if (!mmget_not_zero(pages->source_mm))", "if (!iopt_pages_get_mm(pages))"))],
            why="1. pin helper: if (!iopt_pages_get_mm(pages)) return ... before the borrow"),
        mutant("xe_sync-612-pin-helper", "6.12", XE_SYNC, "user_fence_worker", "keep", "pinned", [
            insert_before(XE_SYNC, XE_SYNC_FN, """\
static bool user_fence_get_mm(struct xe_user_fence *ufence)
{
\treturn mmget_not_zero(ufence->mm);
}

"""),
            edit(XE_SYNC, XE_SYNC_WORKER, lambda s: s.replace(
                "if (mmget_not_zero(ufence->mm))", "if (user_fence_get_mm(ufence))"))],
            why="1. pin helper: a bool helper returns mmget_not_zero(ufence->mm)"),
    ]
    + two_tree_mutants("vfio", "vfio_iommu_type1_dma_rw_chunk", "pin-helper-mm", "keep", "pinned", [
        insert_before(VFIO, VFIO_FN, """\
static bool vfio_dma_mmget(struct mm_struct *mm)
{
\treturn mmget_not_zero(mm);
}

"""),
        edit(VFIO, VFIO_PIN, lambda s: s.replace("mmget_not_zero(mm)", "vfio_dma_mmget(mm)"))],
        why="1. pin helper taking the mm itself: if (!vfio_dma_mmget(mm)) return -EPERM")
    + [
        mutant("vdpa_sim-612-pin-helper-mm", "6.12", VDPA, "vdpasim_work_fn", "keep", "pinned", [
            insert_before(VDPA, "static void vdpasim_work_fn(struct kthread_work *work)\n", """\
static bool vdpasim_mmget(struct mm_struct *mm)
{
\treturn mmget_not_zero(mm);
}

"""),
            edit(VDPA, VDPA_WORK, lambda s: s.replace("mmget_not_zero(mm)", "vdpasim_mmget(mm)"))],
            why="1. pin helper taking the mm itself: if (!vdpasim_mmget(mm)) return"),
    ]

    # 2. The borrow moved into a helper with more arguments than the mm.
    + two_tree_mutants("ffs", "ffs_user_copy_worker", "borrow-helper-args", "keep", "pinned", [
        insert_before(FFS, FFS_FN, """\
static int ffs_copy_in_mm(struct ffs_io_data *io_data, struct mm_struct *mm, int len)
{
\tint ret;

\tkthread_use_mm(mm);
\tret = ffs_copy_to_iter(io_data->buf, len, &io_data->data);
\tkthread_unuse_mm(mm);
\treturn ret;
}

"""),
        edit(FFS, FFS_REGION, "\t\t\tret = ffs_copy_in_mm(io_data, io_data->mm, ret);\n")],
        check_function="ffs_copy_in_mm",
        why="2. the borrow in ffs_copy_in_mm(io_data, mm, len), called under mmget_not_zero()")
    + two_tree_mutants("kfd", "kfd_sdma_activity_worker", "borrow-helper-args", "keep", "pinned", [
        insert_before(KFD, KFD_SDMA_FN, """\
static void kfd_sdma_read_counters(struct kfd_sdma_activity_handler_workarea *workarea,
\t\t\t\t   struct mm_struct *mm,
\t\t\t\t   struct temp_sdma_queue_list *sdma_q_list)
{
\tstruct temp_sdma_queue_list *sdma_q;
\tuint64_t val;
\tint ret;

\tkthread_use_mm(mm);

\tlist_for_each_entry(sdma_q, &sdma_q_list->list, list) {
\t\tval = 0;
\t\tret = read_sdma_queue_counter(sdma_q->rptr, &val);
\t\tif (ret) {
\t\t\tpr_debug("Failed to read SDMA queue active counter for queue id: %d",
\t\t\t\t sdma_q->queue_id);
\t\t} else {
\t\t\tsdma_q->sdma_val = val;
\t\t\tworkarea->sdma_activity_counter += val;
\t\t}
\t}

\tkthread_unuse_mm(mm);
}

"""),
        edit(KFD, KFD_SDMA_DECL, lambda s: s.replace("\tuint64_t val;\n", "").replace(
            "\tint ret = 0;\n", "")),
        edit(KFD, KFD_SDMA_REGION, "\tkfd_sdma_read_counters(workarea, mm, &sdma_q_list);\n")],
        check_function="kfd_sdma_read_counters",
        why="2. the counter loop and its borrow in kfd_sdma_read_counters(workarea, mm, list), "
            "called after get_task_mm()")

    # 3. Two helper levels: the borrow helper called by a second helper that
    # passes its mm parameter on.
    + two_tree_mutants("vfio", "vfio_iommu_type1_dma_rw_chunk", "two-levels", "keep", "pinned", [
        insert_before(VFIO, VFIO_FN, """\
static void vfio_dma_rw_use_mm(struct mm_struct *mm)
{
\tkthread_use_mm(mm);
}

static bool vfio_dma_rw_enter_mm(struct mm_struct *mm, bool kthread)
{
\tif (kthread)
\t\tvfio_dma_rw_use_mm(mm);
\treturn kthread || current->mm == mm;
}

"""),
        edit(VFIO, VFIO_BORROW, "\tif (!vfio_dma_rw_enter_mm(mm, kthread))\n\t\tgoto out;\n")],
        check_function="vfio_dma_rw_use_mm",
        why="3. two helper levels: vfio_dma_rw_enter_mm(mm, kthread) passes mm on to the borrow helper")
    + [
        mutant("kfd-612-exception-two-levels", "6.12", KFD, "send_exception_work_handler", "keep",
               "pinned", [
                   insert_before(KFD, KFD_EXCEPTION_FN, """\
static void kfd_exception_use_mm(struct mm_struct *mm)
{
\tkthread_use_mm(mm);
}

static struct queue *kfd_exception_enter_mm(struct kfd_process *p, struct mm_struct *mm,
\t\t\t\t\t    unsigned int queue_id)
{
\tkfd_exception_use_mm(mm);
\treturn pqm_get_user_queue(&p->pqm, queue_id);
}

"""),
                   edit(KFD, KFD_EXCEPTION, lambda s: s.replace(
                       "\tkthread_use_mm(mm);\n\n\tq = pqm_get_user_queue(&p->pqm, workarea->queue_id);\n",
                       "\tq = kfd_exception_enter_mm(p, mm, workarea->queue_id);\n"))],
               check_function="kfd_exception_use_mm",
               why="3. two helper levels: kfd_exception_enter_mm(p, mm, id) passes the get_task_mm() "
                   "mm on to the borrow helper"),
    ]

    # 4. A helper that borrows the mm field of the object it is passed; the
    # caller pins that field.
    + two_tree_mutants("ffs", "ffs_user_copy_worker", "struct-param", "keep", "pinned", [
        insert_before(FFS, FFS_FN, """\
static int ffs_copy_to_user_mm(struct ffs_io_data *io_data, int len)
{
\tint ret;

\tkthread_use_mm(io_data->mm);
\tret = ffs_copy_to_iter(io_data->buf, len, &io_data->data);
\tkthread_unuse_mm(io_data->mm);
\treturn ret;
}

"""),
        edit(FFS, FFS_REGION, "\t\t\tret = ffs_copy_to_user_mm(io_data, ret);\n")],
        check_function="ffs_copy_to_user_mm",
        why="4. the helper borrows io_data->mm; its caller pins io_data->mm first")
    + [
        mutant("xe_sync-612-struct-param", "6.12", XE_SYNC, "user_fence_worker", "keep", "pinned", [
            insert_before(XE_SYNC, XE_SYNC_FN, """\
static void user_fence_write(struct xe_user_fence *ufence)
{
\tkthread_use_mm(ufence->mm);
\tif (copy_to_user(ufence->addr, &ufence->value, sizeof(ufence->value)))
\t\tXE_WARN_ON("Copy to user failed");
\tkthread_unuse_mm(ufence->mm);
}

"""),
            edit(XE_SYNC, """\
\t\tkthread_use_mm(ufence->mm);
\t\tif (copy_to_user(ufence->addr, &ufence->value, sizeof(ufence->value)))
\t\t\tXE_WARN_ON("Copy to user failed");
\t\tkthread_unuse_mm(ufence->mm);
""", "\t\tuser_fence_write(ufence);\n")],
            check_function="user_fence_write",
            why="4. the helper borrows ufence->mm; its caller pins ufence->mm first"),
    ]

    # 5. A get_task_mm() wrapper.
    + two_tree_mutants("kfd", "kfd_sdma_activity_worker", "task-mm-wrapper", "keep", "pinned", [
        insert_before(KFD, KFD_SDMA_FN, KFD_TASK_MM),
        edit(KFD, KFD_SDMA_GET, "\tmm = kfd_lead_thread_mm(pdd->process->lead_thread);\n")],
        why="5. kfd_lead_thread_mm(task) returns get_task_mm(task)")
    + [
        mutant("kfd-612-exception-task-mm-wrapper", "6.12", KFD, "send_exception_work_handler", "keep",
               "pinned", [
                   insert_before(KFD, KFD_EXCEPTION_FN, KFD_TASK_MM),
                   edit(KFD, KFD_EXCEPTION, lambda s: s.replace(
                       "get_task_mm(p->lead_thread)", "kfd_lead_thread_mm(p->lead_thread)"))],
               why="5. kfd_lead_thread_mm(task) returns get_task_mm(task)"),
        mutant("kfd_dqm-612-task-mm-wrapper", "6.12", KFD_DQM, "copy_context_work_handler", "keep",
               "pinned", [
                   insert_before(KFD_DQM, KFD_DQM_FN, """\
static struct mm_struct *kfd_process_task_mm(struct kfd_process *p)
{
\treturn get_task_mm(p->lead_thread);
}

"""),
                   edit(KFD_DQM, KFD_DQM_GET, lambda s: s.replace(
                       "get_task_mm(p->lead_thread)", "kfd_process_task_mm(p)"))],
               why="5. kfd_process_task_mm(p) returns get_task_mm(p->lead_thread)"),
    ]

    # 6. The mmput() moved inside the borrowed region.
    + two_tree_mutants("ffs", "ffs_user_copy_worker", "put-in-region", "change", "unreferenced", [
        edit(FFS, FFS_WRAP, lambda s: s.replace(
            "\t\t\tkthread_unuse_mm(io_data->mm);\n\t\t\tmmput(io_data->mm);\n",
            "\t\t\tmmput(io_data->mm);\n\t\t\tkthread_unuse_mm(io_data->mm);\n"))],
        why="6. mmput() before kthread_unuse_mm(): the rest of the borrow is unpinned")
    + two_tree_mutants("kfd", "kfd_sdma_activity_worker", "put-in-region", "change", "unreferenced", [
        edit(KFD, KFD_SDMA_PUT, lambda s: s.replace(
            "\tkthread_unuse_mm(mm);\n\tmmput(mm);\n", "\tmmput(mm);\n\tkthread_unuse_mm(mm);\n"))],
        why="6. mmput() of the get_task_mm() reference before kthread_unuse_mm()")
    + [
        mutant("xe_sync-612-put-in-region", "6.12", XE_SYNC, "user_fence_worker", "change",
               "unreferenced", [
                   edit(XE_SYNC, XE_SYNC_WORKER, lambda s: s.replace(
                       "\t\tkthread_unuse_mm(ufence->mm);\n\t\tmmput(ufence->mm);\n",
                       "\t\tmmput(ufence->mm);\n\t\tkthread_unuse_mm(ufence->mm);\n"))],
               why="6. mmput() before kthread_unuse_mm()"),
    ]

    # 7. The borrow on the failure branch of mmget_not_zero().
    + two_tree_mutants("ffs", "ffs_user_copy_worker", "failure-branch", "change", "unreferenced", [
        edit(FFS, "\t\tif (mmget_not_zero(io_data->mm)) {\n", "\t\tif (!mmget_not_zero(io_data->mm)) {\n")],
        why="7. a stray '!': the borrow runs when mmget_not_zero() failed")
    + two_tree_mutants("vfio", "vfio_iommu_type1_dma_rw_chunk", "failure-branch", "change",
                       "unreferenced", [
                           edit(VFIO, VFIO_PIN, lambda s: s.replace("!mmget_not_zero", "mmget_not_zero"))],
                       why="7. the '!' lost: success returns, the borrow follows a failed mmget_not_zero()")
    + [
        mutant("xe_sync-612-failure-branch", "6.12", XE_SYNC, "user_fence_worker", "change",
               "unreferenced", [
                   edit(XE_SYNC, XE_SYNC_WORKER, lambda s: s.replace(
                       "if (mmget_not_zero(ufence->mm))", "if (!mmget_not_zero(ufence->mm))"))],
               why="7. a stray '!': the borrow runs when mmget_not_zero() failed"),
    ]

    # 8. The result of mmget_not_zero() ignored: the borrow happens regardless.
    + two_tree_mutants("ffs", "ffs_user_copy_worker", "ignored-result", "change", "unreferenced", [
        edit(FFS, FFS_BLOCK, """\
\tif (io_data->read && ret > 0) {
\t\tbool pinned = mmget_not_zero(io_data->mm);

\t\tkthread_use_mm(io_data->mm);
\t\tret = ffs_copy_to_iter(io_data->buf, ret, &io_data->data);
\t\tkthread_unuse_mm(io_data->mm);
\t\tif (pinned)
\t\t\tmmput(io_data->mm);
\t\tmmdrop(io_data->mm);
""")], why="8. the result kept only for the mmput(); the borrow is not guarded by it")
    + two_tree_mutants("ffs", "ffs_user_copy_worker", "ignored-result-bare", "change", "unreferenced", [
        edit(FFS, FFS_BLOCK, """\
\tif (io_data->read && ret > 0) {
\t\tmmget_not_zero(io_data->mm);
\t\tkthread_use_mm(io_data->mm);
\t\tret = ffs_copy_to_iter(io_data->buf, ret, &io_data->data);
\t\tkthread_unuse_mm(io_data->mm);
\t\tmmput(io_data->mm);
\t\tmmdrop(io_data->mm);
""")], why="8. a bare mmget_not_zero(io_data->mm); its result is never tested")
    + two_tree_mutants("vfio", "vfio_iommu_type1_dma_rw_chunk", "ignored-result", "change",
                       "unreferenced", [
                           insert_after(VFIO, VFIO_DECL, "\tbool mm_ok;\n"),
                           edit(VFIO, VFIO_PIN, "\tmm = dma->mm;\n\tmm_ok = mmget_not_zero(mm);\n"),
                           edit(VFIO, VFIO_TAIL, lambda s: s.replace(
                               "\tmmput(mm);\n", "\tif (mm_ok)\n\t\tmmput(mm);\n"))],
                       why="8. ok = mmget_not_zero(mm) tested only at the mmput()")
    + [
        mutant("vdpa_sim-612-ignored-result", "6.12", VDPA, "vdpasim_work_fn", "change", "unreferenced", [
            edit(VDPA, VDPA_WORK, lambda s: s.replace(
                "\t\tif (!mmget_not_zero(mm))\n\t\t\treturn;\n", "\t\tmmget_not_zero(mm);\n"))],
            why="8. a bare mmget_not_zero(mm); its result is never tested"),
    ]

    # 9. A flag carries the result of mmget_not_zero() to the test.
    + two_tree_mutants("ffs", "ffs_user_copy_worker", "flag", "keep", "pinned", [
        edit(FFS, FFS_BLOCK, """\
\tif (io_data->read && ret > 0) {
\t\tbool pinned = mmget_not_zero(io_data->mm);

\t\tif (!pinned) {
\t\t\tret = -EFAULT;
\t\t\tgoto drop;
\t\t}
\t\tkthread_use_mm(io_data->mm);
\t\tret = ffs_copy_to_iter(io_data->buf, ret, &io_data->data);
\t\tkthread_unuse_mm(io_data->mm);
\t\tmmput(io_data->mm);
drop:
\t\tmmdrop(io_data->mm);
""")], why="9. bool pinned = mmget_not_zero(); if (!pinned) goto drop; before the borrow")
    + two_tree_mutants("vfio", "vfio_iommu_type1_dma_rw_chunk", "flag", "keep", "pinned", [
        insert_after(VFIO, VFIO_DECL, "\tbool mm_ok;\n"),
        edit(VFIO, VFIO_PIN, "\tmm = dma->mm;\n\tmm_ok = mmget_not_zero(mm);\n\tif (!mm_ok)\n\t\treturn -EPERM;\n")],
        why="9. mm_ok = mmget_not_zero(mm); if (!mm_ok) return -EPERM;")
    + [
        mutant("vdpa_sim-612-flag", "6.12", VDPA, "vdpasim_work_fn", "keep", "pinned", [
            edit(VDPA, VDPA_WORK, lambda s: s.replace(
                "\t\tif (!mmget_not_zero(mm))\n\t\t\treturn;\n",
                "\t\tbool ok = mmget_not_zero(mm);\n\n\t\tif (!ok)\n\t\t\treturn;\n"))],
            why="9. bool ok = mmget_not_zero(mm); if (!ok) return;"),
    ]
)

MUTANTS += ISSUE_MUTANTS


# --- Running them -------------------------------------------------------------

def published(series):
    """The published findings.json of SERIES (reports/linux-SERIES.N)."""
    paths = glob.glob(os.path.join(support.ROOT, "reports", "linux-%s.*" % series, "findings.json"))
    paths = [p for p in paths if re.search(r"/linux-%s\.\d+/" % re.escape(series), p)]
    if len(paths) != 1:
        raise MutationError("want one published findings.json for %s, found %s" % (series, paths))
    with open(paths[0]) as f:
        return json.load(f)


def published_site(series, file, function):
    sites = [s for s in published(series)["sites"]
             if s["file"] == file and s["function"] == function and s["api"] == API]
    if len(sites) != 1:
        raise MutationError("%s: %d published sites in %s %s()" % (series, len(sites), file, function))
    return sites[0]


def tree_files(m):
    """The files of M's scratch tree: the site's, its evidence's (the
    stores of the owning field), the extra ones and the edited ones."""
    site = published_site(m.series, m.file, m.function)
    files = {m.file} | {e["file"] for e in site["evidence"]} | set(m.extra)
    files |= {e.path for e in m.edits}
    return tuple(sorted(files))


Baseline = collections.namedtuple("Baseline", "name series file function files expect")


def baselines(mutants):
    """One unmutated audit per distinct (site, files), expecting the published verdict."""
    seen = {}
    for m in mutants:
        files = tree_files(m)
        key = (m.series, m.file, m.function, files)
        if key not in seen:
            own = tree_files(m._replace(edits=(), extra=()))
            extra = "".join("+" + os.path.basename(f) for f in files if f not in own)
            name = "base-%s-%s-%s%s" % (m.series, os.path.basename(m.file), m.function, extra)
            seen[key] = Baseline(name, m.series, m.file, m.function, files,
                                 published_site(m.series, m.file, m.function)["verdict"])
    return list(seen.values())


def consistency_errors(mutants):
    """What is wrong with the definitions themselves."""
    errors = []
    names = collections.Counter(m.name for m in mutants)
    errors += ["%s: defined %d times" % (n, c) for n, c in names.items() if c > 1]
    for m in mutants:
        if m.series not in SERIES or m.kind not in KINDS:
            errors.append("%s: series %s, kind %s" % (m.name, m.series, m.kind))
            continue
        was = published_site(m.series, m.file, m.function)["verdict"]
        if (m.kind == "change") != (m.expect != was):
            errors.append("%s: a %s mutant expecting %s of a %s site" % (m.name, m.kind, m.expect, was))
    return errors


def apply_edits(text, edits, path):
    for e in edits:
        found = text.count(e.old)
        if found != e.count:
            raise MutationError("%s: the text to replace occurs %d times, not %d: %r"
                                % (path, found, e.count, e.old[:120]))
        new = e.new(e.old) if callable(e.new) else e.new
        if new == e.old:
            raise MutationError("%s: the edit changes nothing: %r" % (path, e.old[:120]))
        text = text.replace(e.old, new)
    return text


def mutated_files(m, tree):
    """{path: (original text, mutated text)} of the files M edits."""
    out = {}
    for path in sorted({e.path for e in m.edits}):
        with open(os.path.join(tree, path), "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
        out[path] = (text, apply_edits(text, [e for e in m.edits if e.path == path], path))
    return out


def mutation_diff(m, tree):
    parts = []
    for path, (old, new) in mutated_files(m, tree).items():
        parts += difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                      "a/" + path, "b/" + path, n=3)
    return "".join(parts)


def build(tree, files, changed, scratch):
    """SCRATCH becomes a tree of FILES copied from TREE, CHANGED ({path: text}) written over."""
    for rel in files:
        dest = os.path.join(scratch, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if rel in changed:
            with open(dest, "wb") as f:
                f.write(changed[rel].encode("utf-8", "surrogateescape"))
        else:
            shutil.copyfile(os.path.join(tree, rel), dest)


Result = collections.namedtuple("Result", "name kind expect got reason error seconds")


def audit_site(tree, files, changed, file, function):
    """(verdict, reason) of FILE's FUNCTION in a scratch tree of FILES."""
    scratch = tempfile.mkdtemp(prefix="mmaudit-mutant-")
    try:
        build(tree, files, changed, scratch)
        proc = support.run_mmaudit("audit", "-q", "--no-cache", "-j", "1", "--format", "json", scratch)
    finally:
        shutil.rmtree(scratch)
    if proc.returncode not in (0, 1):
        raise MutationError("mmaudit exited %d: %s" % (proc.returncode, proc.stderr.strip()))
    data = json.loads(proc.stdout)
    sites = [s for s in data["sites"]
             if s["file"] == file and s["function"] == function and s["api"] == API]
    if len(sites) != 1:
        raise MutationError("%d sites in %s %s() after the audit (%s)" % (
            len(sites), file, function,
            ", ".join("%s:%d %s" % (s["function"], s["line"], s["verdict"]) for s in data["sites"])))
    return sites[0]["verdict"], sites[0]["reason"]


_trees = {}


def kernel_tree(series):
    """The Debian tree, checked to be the release the findings were published for."""
    if series not in _trees:
        tree = support.kernel_tree(series)
        version = support.treemod.kernel_version(tree)
        want = published(series)["tree"]["version"]
        if version != want:
            raise MutationError("the %s tree is %s, the published findings are for %s"
                                % (series, version, want))
        _trees[series] = tree
    return _trees[series]


def run_one(job):
    """Audit one mutant or baseline; never raises."""
    started = time.monotonic()
    kind = job.kind if isinstance(job, Mutant) else "base"
    try:
        tree = kernel_tree(job.series)
        if isinstance(job, Mutant):
            files = tree_files(job)
            changed = {p: new for p, (_, new) in mutated_files(job, tree).items()}
            got, reason = audit_site(tree, files, changed, job.file, job.checked)
        else:
            got, reason = audit_site(tree, job.files, {}, job.file, job.function)
        return Result(job.name, kind, job.expect, got, reason, None, time.monotonic() - started)
    except (MutationError, OSError, ValueError) as err:
        return Result(job.name, kind, job.expect, None, None, str(err), time.monotonic() - started)


def run_all(jobs, workers=2):
    """{name: Result} of every job, WORKERS audits at a time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return {r.name: r for r in pool.map(run_one, jobs)}


def ok(result):
    return result.error is None and result.got == result.expect


def select(series=None, pattern=None):
    return [m for m in MUTANTS if (not series or m.series == series)
            and (not pattern or pattern in m.name)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", choices=SERIES)
    ap.add_argument("-k", dest="pattern", help="only the mutants whose name contains this")
    ap.add_argument("-j", dest="workers", type=int, default=2, help="audits at a time (2)")
    ap.add_argument("--diff", action="store_true", help="print each mutation as a diff, audit nothing")
    ap.add_argument("--no-baselines", action="store_true", help="audit the mutants only")
    args = ap.parse_args(argv)
    chosen = select(args.series, args.pattern)
    if not chosen:
        print("no mutant matches", file=sys.stderr)
        return 2
    errors = consistency_errors(chosen)
    for e in errors:
        print("definition error: " + e, file=sys.stderr)
    if args.diff:
        for m in chosen:
            print("### %s (%s, %s -> %s): %s" % (m.name, m.series, m.kind, m.expect, m.why))
            try:
                print(mutation_diff(m, kernel_tree(m.series)))
            except MutationError as err:
                print("ERROR: %s\n" % err)
        return 1 if errors else 0
    jobs = ([] if args.no_baselines else baselines(chosen)) + chosen
    started = time.monotonic()
    results = run_all(jobs, args.workers)
    elapsed = time.monotonic() - started
    rows = [("mutant", "series", "kind", "expected", "got", "ok")]
    for j in jobs:
        r = results[j.name]
        rows.append((j.name, j.series, r.kind, r.expect, r.got or "ERROR", "ok" if ok(r) else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    bad = [results[j.name] for j in jobs if not ok(results[j.name])]
    for r in bad:
        print("\n%s: %s" % (r.name, r.error or "expected %s, got %s: %s" % (r.expect, r.got, r.reason)))
    kinds = collections.Counter(m.kind for m in chosen)
    print("\n%d mutants (%d change, %d keep), %d baselines, %d not ok, %.0f s with %d workers"
          % (len(chosen), kinds["change"], kinds["keep"], len(jobs) - len(chosen), len(bad),
             elapsed, args.workers))
    return 1 if bad or errors else 0


if __name__ == "__main__":
    sys.exit(main())
