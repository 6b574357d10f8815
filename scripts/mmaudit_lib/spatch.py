"""Locate and run Coccinelle's spatch."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from . import UsageError

# The rules use script constraints, position sets and --file-groups,
# all present since 1.1.0; Debian ships 1.1.1.
MIN_VERSION = (1, 1, 0)
PACKAGE_HINT = "install it with: apt-get install coccinelle"

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COCCI_DIR = os.path.join(ROOT, "cocci")
MACRO_FILE = os.path.join(COCCI_DIR, "macros.h")


def spatch_path():
    path = os.environ.get("SPATCH") or shutil.which("spatch")
    if not path:
        raise UsageError("spatch not found; " + PACKAGE_HINT)
    return path


def spatch_version(path=None):
    path = path or spatch_path()
    try:
        out = subprocess.run([path, "--version"], capture_output=True,
                             text=True, timeout=60).stdout
    except OSError as err:
        raise UsageError("cannot run %s: %s; %s" % (path, err.strerror, PACKAGE_HINT))
    m = re.search(r"spatch version (\d+)\.(\d+)\.(\d+)", out)
    if not m:
        raise UsageError("cannot tell the version of %s; %s" % (path, PACKAGE_HINT))
    version = tuple(int(x) for x in m.groups())
    if version < MIN_VERSION:
        raise UsageError("spatch %s is too old, %s or newer is needed; %s" % (
            ".".join(map(str, version)), ".".join(map(str, MIN_VERSION)), PACKAGE_HINT))
    return ".".join(map(str, version))


def base_command(rule, mode=None, macros=True):
    """spatch arguments shared by every run of one of our rules.  MACROS
    adds our parser workarounds; coccicheck runs a rule without them."""
    cmd = [spatch_path(), "--very-quiet", "--python", sys.executable,
           "--no-includes", "--include-headers", "--sp-file", rule]
    if macros:
        cmd += ["--macro-file", MACRO_FILE]
    if mode:
        cmd[1:1] = ["-D", mode]
    return cmd


_TMP_OUTPUT = re.compile(r"^(\+\+\+ )/tmp/cocci-output-[^ \t\n]*?-([^/\s]+)$", re.M)


def normalise_diff(text, name):
    """spatch names the new side of a diff after a temporary file."""
    return _TMP_OUTPUT.sub(lambda m: m.group(1) + name, text)


def run_rule_on_file(rule, path, mode, timeout=120):
    """Run one rule in one coccicheck mode on one file, as coccicheck would.

    Returns (stdout, stderr, returncode); diffs name the file as given."""
    cwd = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    with tempfile.TemporaryDirectory(prefix="mmaudit-") as tmp:
        env = dict(os.environ, TMPDIR=tmp)
        proc = subprocess.run(base_command(rule, mode, macros=False) + [name], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    return normalise_diff(proc.stdout, name), proc.stderr, proc.returncode
