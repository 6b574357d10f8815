"""Check generated patches on a scratch copy of the real tree: they apply
once, pass checkpatch.pl --strict, build without new W=1 warnings, and the
re-audit calls the site pinned."""

import collections
import os
import re
import shutil
import subprocess
import tempfile

from . import UsageError, apply, balance

# Options a file needs beyond what its Makefile names, with their parents.
EXTRA_CONFIG = {
    "KVM_XEN": ["VIRTUALIZATION", "KVM", "KVM_INTEL"],
    "KVM": ["VIRTUALIZATION"],
    "INTEL_IDXD": ["DMADEVICES", "PCI_MSI"],
    "USB_GADGETFS": ["USB_GADGET"],
    "PPC_VAS": [],
}
CROSS = {"powerpc": ("powerpc64le-linux-gnu-", "ppc64le_defconfig")}
WARNING = re.compile(r"^(?P<file>[^:\s]+):\d+:\d+: (?P<kind>warning|error): (?P<msg>.*)$", re.M)


def _run(cmd, cwd, **kw):
    # Tools echo the tree's lines, which may be in any encoding.
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors="replace", **kw)


def config_symbols(tree, rel):
    """CONFIG_ symbols that build REL, from the Makefiles (two levels: a
    composite object and the symbol that builds it)."""
    directory, name = os.path.split(rel)
    obj = name[:-2] + ".o"
    try:
        with open(os.path.join(tree, directory, "Makefile")) as f:
            makefile = f.read().replace("\\\n", " ")
    except OSError:
        return []
    symbols = []
    for line in makefile.splitlines():
        if not re.search(r"(^|[\s=])%s(\s|$)" % re.escape(obj), line):
            continue
        m = re.match(r"\s*obj-\$\(CONFIG_(\w+)\)", line)
        if m:
            symbols.append(m.group(1))
            continue
        m = re.match(r"\s*(\w+?)-(y|objs|\$\(CONFIG_(\w+)\))\s*[:+]?=", line)
        if m:
            if m.group(3):
                symbols.append(m.group(3))
            composite = m.group(1) + ".o"
            for other in makefile.splitlines():
                c = re.match(r"\s*obj-\$\(CONFIG_(\w+)\)\s*[:+]?=.*\b%s\b" % re.escape(composite), other)
                if c:
                    symbols.append(c.group(1))
    return symbols


def arch_of(rel):
    m = re.match(r"arch/(\w+)/", rel)
    return m.group(1) if m and m.group(1) != "x86" else "x86"


class Builder:
    """One configured build per architecture, out of tree: kbuild writes
    only into BUILDS/<arch> (make O=), never into the hard-linked sources
    of SCRATCH, whose inodes the real tree shares."""

    def __init__(self, scratch, files, builds):
        self.scratch = scratch
        self.files = files
        self.builds = builds
        self.ready = {}
        self.cleaned = None

    def objdir(self, arch):
        return os.path.join(self.builds, arch)

    def make_args(self, arch):
        args = ["O=" + self.objdir(arch)]
        if arch == "x86":
            return args
        prefix, _ = CROSS[arch]
        return args + ["ARCH=" + arch, "CROSS_COMPILE=" + prefix]

    def clean(self):
        """Make the scratch sources fit for O= builds: a configured or built
        tree leaves .config, generated headers and objects behind, which
        kbuild refuses (or would pick up through VPATH). `make mrproper`
        only unlinks, so it removes the copy's links and leaves the real
        tree's files alone; so does rmtree. Once, before the first build."""
        if self.cleaned is None:
            self.cleaned = True
            proc = _run(["make", "-s", "mrproper"], self.scratch)
            if proc.returncode != 0:
                self.cleaned = "make mrproper failed: %s" % proc.stderr.strip()[-300:]
                return self.cleaned
            # mrproper removes the generated headers of the host's arch only.
            arches = os.path.join(self.scratch, "arch")
            for arch in sorted(os.listdir(arches)) if os.path.isdir(arches) else []:
                generated = os.path.join(arches, arch, "include", "generated")
                if os.path.isdir(generated) and not os.path.islink(generated):
                    shutil.rmtree(generated)
        return self.cleaned

    def prepare(self, arch):
        if arch in self.ready:
            return self.ready[arch]
        if arch != "x86" and (arch not in CROSS or not shutil.which(CROSS[arch][0] + "gcc")):
            self.ready[arch] = "no cross compiler for %s" % arch
            return self.ready[arch]
        cleaned = self.clean()
        if cleaned is not True:
            self.ready[arch] = cleaned
            return cleaned
        os.makedirs(self.objdir(arch), exist_ok=True)
        config_file = os.path.join(self.objdir(arch), ".config")
        defconfig = "x86_64_defconfig" if arch == "x86" else CROSS[arch][1]
        args = self.make_args(arch)
        wanted = []
        for rel in self.files:
            if arch_of(rel) == arch:
                for sym in config_symbols(self.scratch, rel):
                    wanted += EXTRA_CONFIG.get(sym, []) + [sym]
        steps = [["make", "-s"] + args + [defconfig],
                 ["scripts/config", "--file", config_file]
                 + sum((["-e", s] for s in dict.fromkeys(wanted)), []),
                 ["make", "-s"] + args + ["olddefconfig"],
                 ["make", "-s", "-j%d" % (os.cpu_count() or 2)] + args + ["prepare"]]
        for step in steps:
            proc = _run(step, self.scratch)
            if proc.returncode != 0:
                self.ready[arch] = "%s failed: %s" % (" ".join(step[:3]),
                                                      proc.stderr.strip()[-300:])
                return self.ready[arch]
        with open(config_file) as f:
            config = f.read()
        missing = [s for s in dict.fromkeys(wanted)
                   if not re.search(r"^CONFIG_%s=[ym]" % s, config, re.M)]
        self.ready[arch] = ("could not enable %s" % ", ".join(missing)) if missing else True
        return self.ready[arch]

    def compile(self, rel):
        """(ok, warnings as a Counter of (file, message) without line numbers, log)."""
        arch = arch_of(rel)
        state = self.prepare(arch)
        if state is not True:
            return None, collections.Counter(), state
        target = rel[:-2] + ".o"
        try:    # always compile, so that both builds print their warnings
            os.unlink(os.path.join(self.objdir(arch), target))
        except FileNotFoundError:
            pass
        proc = _run(["make", "-s", "W=1"] + self.make_args(arch) + [target], self.scratch)
        # Out of tree, kbuild names the sources by absolute path.
        log = proc.stderr.replace(self.scratch + "/", "")
        warnings = collections.Counter((m.group("file"), m.group("kind"), m.group("msg"))
                                       for m in WARNING.finditer(log))
        return proc.returncode == 0, warnings, log


def checkpatch(tree, patch_path):
    proc = _run(["perl", os.path.join(tree, "scripts", "checkpatch.pl"), "--strict",
                 "--no-tree", "--show-types", patch_path], tree)
    m = re.search(r"total: (\d+) errors, (\d+) warnings, (\d+) checks", proc.stdout)
    if not m:
        return {"errors": -1, "warnings": -1, "checks": -1, "log": proc.stdout[-2000:]}
    checks = [l for l in proc.stdout.splitlines() if l.startswith(("CHECK:", "WARNING:", "ERROR:"))]
    return {"errors": int(m.group(1)), "warnings": int(m.group(2)), "checks": int(m.group(3)),
            "log": "\n".join(checks)}


def _restore(tree, scratch, rels):
    """Put the scratch copy of RELS back as the tree has them: new inodes,
    the tree's bytes, modes and mtimes."""
    for rel in rels:
        path = os.path.join(scratch, rel)
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)
        original = os.path.join(tree, rel)
        if os.path.lexists(original):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copy2(original, path, follow_symlinks=False)
            continue
        parent = os.path.dirname(rel)      # directories the patch created
        while parent and not os.path.lexists(os.path.join(tree, parent)):
            try:
                os.rmdir(os.path.join(scratch, parent))
            except OSError:
                break
            parent = os.path.dirname(parent)


PATCH = ["patch", "-p1", "-N", "-t", "-s", "--no-backup-if-mismatch", "-r", "-"]


def verify(tree, patches, reaudit):
    """PATCHES: [(site, path of the mbox)].  REAUDIT(tree) -> findings data.

    Nothing here writes the tree: the scratch copy's sources are hard links
    to it, so patches go only to unshared copies of the files they touch,
    and kbuild runs out of tree (see Builder)."""
    if not shutil.which("patch"):
        raise UsageError("patch(1) is missing; install it with: apt-get install patch")
    results = []
    with tempfile.TemporaryDirectory(prefix="mmaudit-verify-") as tmp:
        scratch = os.path.join(tmp, "tree")
        subprocess.run(["cp", "-al", tree, scratch], check=True)
        builder = Builder(scratch, sorted({s["file"] for s, _ in patches}),
                          os.path.join(tmp, "build"))
        for site, path in patches:
            r = {"patch": os.path.basename(path), "site": "%s:%d" % (site["file"], site["line"])}
            with open(path, errors="surrogateescape") as f:
                text = f.read()
            touched = [rel for rel in apply.touched_files(text)   # patch(1) refuses others
                       if not os.path.isabs(rel) and ".." not in rel.split("/")]
            dry = _run(PATCH + ["--dry-run", "-i", path], scratch, stdin=subprocess.DEVNULL)
            r["applies"] = dry.returncode == 0
            files = re.findall(r"^\+\+\+ b/(\S+)", text, re.M)
            before = {f: builder.compile(f) for f in files if f.endswith(".c")}
            for rel in touched:
                apply.unshare(scratch, rel)
            try:
                applied = _run(PATCH + ["-i", path], scratch, stdin=subprocess.DEVNULL)
                again = _run(PATCH + ["--dry-run", "-i", path], scratch,
                             stdin=subprocess.DEVNULL)
                r["refused_twice"] = applied.returncode == 0 and again.returncode != 0
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    r["balance"] = sorted(
                        "%s:%d: %s" % (rel, p["line"], p["problem"])
                        for rel, problems in balance.check_patch(tree, f.read()).items()
                        for p in problems)
                r["checkpatch"] = checkpatch(scratch, path)
                r["build"] = {}
                for f, (ok0, warn0, log0) in sorted(before.items()):
                    ok1, warn1, log1 = builder.compile(f)
                    if ok0 is None:
                        r["build"][f] = {"ok": None, "how": log0}
                        continue
                    if not ok0:     # the tree itself does not build: nothing to compare
                        errors = [l for l in log0.splitlines() if "error" in l.lower()]
                        r["build"][f] = {"ok": None, "baseline": False,
                                         "how": "baseline does not build: %s"
                                         % (errors[:1] or ["make failed"])[0].strip()[:200]}
                        continue
                    new = sorted("%s: %s: %s" % w for w in (warn1 - warn0))
                    r["build"][f] = {"ok": bool(ok1), "new_warnings": new,
                                     "how": "make W=1 %s.o (%s)" % (f[:-2], arch_of(f))}
                data = reaudit(scratch)
                now = [s for s in data["sites"] if s["file"] == site["file"]
                       and s["function"] == site["function"]]
                r["reaudit"] = now[0]["verdict"] if now else "gone"
            finally:
                _restore(tree, scratch, touched)
            results.append(r)
    return results


def status(r):
    """verified, FAILED verification, or baseline does not build (every
    other check passed, but the unpatched file itself does not build)."""
    if passed(r):
        return "verified"
    baseline = [b for b in r["build"].values() if b.get("baseline") is False]
    rest = dict(r, build={f: b for f, b in r["build"].items() if b.get("baseline") is not False})
    if baseline and passed(dict(rest, build={f: b for f, b in rest["build"].items()
                                             if b.get("ok") is not None})):
        return "baseline does not build"
    return "FAILED verification"


def passed(r):
    return (r["applies"] and r["refused_twice"] and not r.get("balance")
            and r["checkpatch"]["errors"] == 0
            and r["checkpatch"]["warnings"] == 0 and r["reaudit"] == "pinned"
            and all(b["ok"] and not b["new_warnings"] for b in r["build"].values()
                    if b.get("ok") is not None)
            and all(b.get("ok") is not None for b in r["build"].values()))
