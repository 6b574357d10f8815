"""Check generated patches on a scratch copy of the real tree: they apply
once, pass checkpatch.pl --strict, build without new W=1 warnings, and the
re-audit calls the site pinned."""

import collections
import os
import re
import shutil
import subprocess
import tempfile

from . import UsageError

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
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)


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
    """One configured scratch build per architecture."""

    def __init__(self, scratch, files):
        self.scratch = scratch
        self.files = files
        self.ready = {}

    def make_args(self, arch):
        if arch == "x86":
            return []
        prefix, _ = CROSS[arch]
        return ["ARCH=" + arch, "CROSS_COMPILE=" + prefix]

    def prepare(self, arch):
        if arch in self.ready:
            return self.ready[arch]
        if arch != "x86" and (arch not in CROSS or not shutil.which(CROSS[arch][0] + "gcc")):
            self.ready[arch] = "no cross compiler for %s" % arch
            return self.ready[arch]
        defconfig = "x86_64_defconfig" if arch == "x86" else CROSS[arch][1]
        args = self.make_args(arch)
        wanted = []
        for rel in self.files:
            if arch_of(rel) == arch:
                for sym in config_symbols(self.scratch, rel):
                    wanted += EXTRA_CONFIG.get(sym, []) + [sym]
        steps = [["make", "-s"] + args + [defconfig],
                 ["scripts/config"] + sum((["-e", s] for s in dict.fromkeys(wanted)), []),
                 ["make", "-s"] + args + ["olddefconfig"],
                 ["make", "-s", "-j%d" % (os.cpu_count() or 2)] + args + ["prepare"]]
        for step in steps:
            proc = _run(step, self.scratch)
            if proc.returncode != 0:
                self.ready[arch] = "%s failed: %s" % (" ".join(step[:3]),
                                                      proc.stderr.strip()[-300:])
                return self.ready[arch]
        with open(os.path.join(self.scratch, ".config")) as f:
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
        proc = _run(["make", "-s", "W=1"] + self.make_args(arch) + [target], self.scratch)
        warnings = collections.Counter((m.group("file"), m.group("kind"), m.group("msg"))
                                       for m in WARNING.finditer(proc.stderr))
        return proc.returncode == 0, warnings, proc.stderr


def checkpatch(tree, patch_path):
    proc = _run(["perl", os.path.join(tree, "scripts", "checkpatch.pl"), "--strict",
                 "--no-tree", "--show-types", patch_path], tree)
    m = re.search(r"total: (\d+) errors, (\d+) warnings, (\d+) checks", proc.stdout)
    if not m:
        return {"errors": -1, "warnings": -1, "checks": -1, "log": proc.stdout[-2000:]}
    checks = [l for l in proc.stdout.splitlines() if l.startswith(("CHECK:", "WARNING:", "ERROR:"))]
    return {"errors": int(m.group(1)), "warnings": int(m.group(2)), "checks": int(m.group(3)),
            "log": "\n".join(checks)}


def verify(tree, patches, reaudit):
    """PATCHES: [(site, path of the mbox)].  REAUDIT(tree) -> findings data."""
    if not shutil.which("patch"):
        raise UsageError("patch(1) is missing; install it with: apt-get install patch")
    results = []
    with tempfile.TemporaryDirectory(prefix="mmaudit-verify-") as tmp:
        scratch = os.path.join(tmp, "tree")
        subprocess.run(["cp", "-al", tree, scratch], check=True)
        builder = Builder(scratch, sorted({s["file"] for s, _ in patches}))
        for site, path in patches:
            r = {"patch": os.path.basename(path), "site": "%s:%d" % (site["file"], site["line"])}
            dry = _run(["patch", "-p1", "--dry-run", "-s", "-i", path], tree)
            r["applies"] = dry.returncode == 0
            files = re.findall(r"^\+\+\+ b/(\S+)", open(path).read(), re.M)
            before = {f: builder.compile(f) for f in files if f.endswith(".c")}
            applied = _run(["patch", "-p1", "-s", "-i", path], scratch)
            again = _run(["patch", "-p1", "-N", "--dry-run", "-s", "-i", path], scratch)
            r["refused_twice"] = applied.returncode == 0 and again.returncode != 0
            r["checkpatch"] = checkpatch(tree, path)
            r["build"] = {}
            for f, (ok0, warn0, log0) in sorted(before.items()):
                ok1, warn1, log1 = builder.compile(f)
                if ok0 is None:
                    r["build"][f] = {"ok": None, "how": log0}
                    continue
                new = sorted("%s: %s: %s" % w for w in (warn1 - warn0))
                r["build"][f] = {"ok": bool(ok1), "new_warnings": new,
                                 "how": "make W=1 %s.o (%s)" % (f[:-2], arch_of(f))}
            data = reaudit(scratch)
            now = [s for s in data["sites"] if s["file"] == site["file"]
                   and s["function"] == site["function"]]
            r["reaudit"] = now[0]["verdict"] if now else "gone"
            _run(["patch", "-p1", "-R", "-s", "-i", path], scratch)
            results.append(r)
    return results


def passed(r):
    return (r["applies"] and r["refused_twice"] and r["checkpatch"]["errors"] == 0
            and r["checkpatch"]["warnings"] == 0 and r["reaudit"] == "pinned"
            and all(b["ok"] and not b["new_warnings"] for b in r["build"].values()
                    if b.get("ok") is not None)
            and all(b.get("ok") is not None for b in r["build"].values()))
