"""Bad input: one clear line on stderr and the documented exit code."""

import os

import support


def _one_line_error(proc, code, words):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmaudit: error: "), proc.stderr
    assert words in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_path(tmp_path):
    _one_line_error(support.run_mmaudit("audit", str(tmp_path / "nope")), 2,
                    "no such file or directory")


def test_directory_without_c_files(tmp_path):
    (tmp_path / "README").write_text("not C\n")
    _one_line_error(support.run_mmaudit("audit", str(tmp_path)), 2, "no C files")


def test_corrupt_tarball(tmp_path):
    bad = tmp_path / "linux-source-9.9.tar.xz"
    bad.write_bytes(b"\xfd7zXZ\x00\x00garbage" * 100)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    _one_line_error(support.run_mmaudit("audit", str(bad), env=env), 2, "corrupt or truncated")


def test_spatch_missing(tmp_path):
    env = dict(os.environ, SPATCH=str(tmp_path / "spatch"))
    _one_line_error(support.run_mmaudit("audit", support.AUDIT_FIXTURES + "/no_call_sites",
                                        env=env), 2, "apt-get install coccinelle")


def test_spatch_too_old(tmp_path):
    fake = tmp_path / "spatch"
    fake.write_text("#!/bin/sh\necho 'spatch version 1.0.8 compiled with OCaml version 4.11'\n")
    fake.chmod(0o755)
    env = dict(os.environ, SPATCH=str(fake))
    _one_line_error(support.run_mmaudit("audit", support.AUDIT_FIXTURES + "/no_call_sites",
                                        env=env), 2, "too old")


def test_no_call_sites_is_clean():
    proc = support.run_mmaudit("audit", "-q", support.AUDIT_FIXTURES + "/no_call_sites")
    assert proc.returncode == 0 and proc.stdout == ""


def test_unparsable_file_is_listed_not_dropped():
    proc = support.run_mmaudit("audit", "-q", support.AUDIT_FIXTURES + "/unparsable_file")
    assert proc.returncode == 1   # unanalyzed: the tree is not known clean
    assert "broken.c:3:2: unanalyzed" in proc.stdout
