"""`make secrets` (ops/secrets_check.py) on a small git repository with its own baseline: a new finding fails and
names its file, line and type but never its value; a listed finding that only moved lines passes, and the baseline
is left as it was."""

from __future__ import annotations

import subprocess

import pytest

from ops import secrets_check

FAKE_KEY = "AKIA" + "IOSFODNN7EXAMPLF"  # an AWS-shaped access key id, built so this file holds no literal one


def git(repo, *words):
    subprocess.run(["git", *words], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "settings.py").write_text(f'aws_key = "{FAKE_KEY}"\n')
    (tmp_path / "clean.py").write_text("answer = 42\n")
    git(tmp_path, "add", ".")
    # the baseline accepts the key where it is now, as an audited false positive
    baseline = subprocess.run(
        ["detect-secrets", "scan"], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    (tmp_path / ".secrets.baseline").write_text(baseline)
    assert '"settings.py"' in baseline and '"clean.py"' not in baseline
    return tmp_path


def test_a_listed_finding_that_moved_lines_passes_and_the_baseline_is_untouched(repo, capsys):
    before = (repo / ".secrets.baseline").read_bytes()
    (repo / "settings.py").write_text(f'"""Settings."""\n\nregion = "eu"\naws_key = "{FAKE_KEY}"\n')

    assert secrets_check.main(["--root", str(repo)]) == 0
    assert "no new secrets in 2 tracked files" in capsys.readouterr().out
    assert (repo / ".secrets.baseline").read_bytes() == before


def test_a_new_finding_fails_naming_file_line_and_type_without_the_value(repo, capsys):
    other_key = "AKIA" + "Q3EGOZYX5ZN2ABCD"
    (repo / "clean.py").write_text(f"answer = 42\ntoken = '{other_key}'\n")

    assert secrets_check.main(["--root", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "clean.py:2: AWS Access Key" in out
    assert other_key not in out
    assert "settings.py" not in out


def test_an_untracked_file_is_not_scanned(repo, capsys):
    (repo / "scratch.py").write_text(f"key = '{'AKIA' + 'Q3EGOZYX5ZN2WXYZ'}'\n")

    assert secrets_check.main(["--root", str(repo)]) == 0
    capsys.readouterr()


def test_no_baseline_says_how_to_make_one(repo, capsys):
    (repo / ".secrets.baseline").unlink()

    assert secrets_check.main(["--root", str(repo)]) == 2
    assert "detect-secrets scan > .secrets.baseline" in capsys.readouterr().out
