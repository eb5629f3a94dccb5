"""Remotes: the Drive plugin gets as far as authenticating; missing credentials say what to set."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run
from tests.pipeline.conftest import copy_project, git_env


def network_isolation() -> tuple[list[str] | None, str]:
    """A command prefix that runs a program with no network but loopback, found by trying; else why not.

    Root gets a plain network namespace; an ordinary user gets one inside a user namespace where the
    kernel allows it. The answer comes from the kernel, not from whether a program is installed.
    """
    reasons = []
    for prefix in (["unshare", "--net"], ["unshare", "--user", "--map-root-user", "--net"]):
        try:
            attempt = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
        except FileNotFoundError as error:
            return None, f"cannot run {prefix[0]}: {error}"
        if attempt.returncode == 0:
            return prefix, ""
        reasons.append(f"`{' '.join(prefix)}`: {attempt.stderr.strip()}")
    return None, "no network namespace can be made here (" + "; ".join(reasons) + ")"


NO_NETWORK, NO_NETWORK_REASON = network_isolation()


def fake_service_account_key() -> str:
    """A syntactically real key made on the spot: nothing secret, nothing committed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "iris-test",
            "private_key_id": "0" * 40,
            "private_key": pem,
            "client_email": "iris-test@iris-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


def workspace(root) -> dict[str, str]:
    """Every file outside .git and DVC's own temp folder, with a hash of its content."""
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.parts and "tmp" not in p.relative_to(root).parts[:2]
    }


@pytest.fixture(scope="session")
def gdrive_project(tmp_path_factory) -> Path:
    """A copy of the project whose gdrive remote names a folder (`dvc remote modify`, once per worker)."""
    copy = copy_project(tmp_path_factory.mktemp("gdrive") / "project")
    run(["dvc", "remote", "modify", "gdrive", "url", "gdrive://iris-test-folder"], cwd=copy, env=git_env())
    return copy


@pytest.fixture()
def gdrive_copy(gdrive_project, tmp_path) -> tuple[Path, dict[str, str]]:
    """(a copy of `gdrive_project` of this test's own, environment with its own BentoML home)."""
    copy = tmp_path / "project"
    shutil.copytree(gdrive_project, copy, symlinks=True)
    return copy, {**git_env(), "BENTOML_HOME": str(copy / ".bentoml")}


def test_drive_plugin_imports_with_the_locked_crypto_stack():
    # The trap in CI-MACHINE.md: pyOpenSSL 22 + cryptography 50 broke this import.
    run(
        [
            sys.executable,
            "-c",
            "from pydrive2.auth import GoogleAuth; import dvc_gdrive; from OpenSSL import crypto; crypto.sign",
        ]
    )


@pytest.mark.skipif(NO_NETWORK is None, reason=NO_NETWORK_REASON)
def test_fake_key_fails_at_authentication_not_at_import(gdrive_copy):
    copy, env = gdrive_copy
    env = {**env, "GDRIVE_CREDENTIALS_DATA": fake_service_account_key()}
    before = workspace(copy)
    # A private network namespace: the token request cannot leave this process's loopback.
    result = run([*NO_NETWORK, "dvc", "pull", "-r", "gdrive"], cwd=copy, env=env, check=False)
    assert workspace(copy) == before  # nothing was written or removed
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "oauth2.googleapis.com" in output  # it signed a token request and tried to send it
    for symptom in ("ImportError", "AttributeError", "GEN_EMAIL", "No module named", "has no attribute"):
        assert symptom not in output
    assert "BEGIN PRIVATE KEY" not in output  # pragma: allowlist secret (a marker, not a key)


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (None, "no Google Drive credentials: set GDRIVE_CREDENTIALS_DATA"),
        ("not json at all", "$GDRIVE_CREDENTIALS_DATA is not valid JSON"),
        ('{"type": "authorized_user"}', "lacks client_email, private_key"),
        ('["a list"]', "is not a JSON object"),
    ],
)
def test_make_pull_without_usable_credentials_says_what_to_set(gdrive_copy, credentials, expected):
    copy, env = gdrive_copy
    env = {k: v for k, v in env.items() if k != "GDRIVE_CREDENTIALS_DATA"}
    if credentials is not None:
        env["GDRIVE_CREDENTIALS_DATA"] = credentials
    before = sorted(p.relative_to(copy) for p in copy.rglob("*") if ".git" not in p.parts)
    result = run(["make", "-s", "pull", "DVC_REMOTE=gdrive", f"VENV={ROOT / '.venv'}"], cwd=copy, env=env, check=False)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    if credentials:
        assert credentials not in result.stdout + result.stderr  # the key is never echoed
    after = sorted(p.relative_to(copy) for p in copy.rglob("*") if ".git" not in p.parts)
    assert after == before


def test_unset_drive_folder_names_the_make_target():
    result = run([sys.executable, "-m", "iris_classifier.data.remote", "check", "gdrive"], check=False)
    assert result.returncode == 2
    assert "make gdrive-folder FOLDER_ID=" in result.stderr


@pytest.mark.skipif(NO_NETWORK is None, reason=NO_NETWORK_REASON)
@pytest.mark.parametrize("credentials", [None, "{not json", "well-formed fake key"])
def test_an_explicit_remote_that_cannot_serve_stops_the_pipeline_before_training(gdrive_copy, credentials):
    """DVC_REMOTE=gdrive is a contract: no key, a malformed key or a rejected key all stop `make pipeline`."""
    copy, env = gdrive_copy
    env = {k: v for k, v in env.items() if k != "GDRIVE_CREDENTIALS_DATA"}
    if credentials == "well-formed fake key":
        credentials = fake_service_account_key()
    if credentials is not None:
        env["GDRIVE_CREDENTIALS_DATA"] = credentials
    before = workspace(copy)
    # In a private network namespace: the token request of the fake key cannot leave loopback.
    result = run(
        [*NO_NETWORK, "make", "-s", "pipeline", "DVC_REMOTE=gdrive", f"VENV={ROOT / '.venv'}"],
        cwd=copy,
        env=env,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "GDRIVE_CREDENTIALS_DATA" in result.stderr
    assert "Running stage" not in output and "train:" not in output  # stopped before any stage ran
    assert workspace(copy) == before
    if credentials:
        assert credentials not in output  # the key is never echoed
        assert "BEGIN PRIVATE KEY" not in output  # pragma: allowlist secret (a marker, not a key)


def test_only_the_default_remote_may_fall_back_and_dvc_says_why(project_copy, capsys):
    """`local` is a cache: when it cannot serve, the pipeline rebuilds; another remote stops it. DVC's reason shows."""
    from iris_classifier.data.remote import transfer

    copy, _ = project_copy
    # A remote DVC refuses at once and offline: its scheme's plugin is not installed.
    for name in ("local", "team"):
        run(["dvc", "remote", "add", "--force", name, "ssh://127.0.0.1:1/remote"], cwd=copy)
    assert transfer("pull", "local", root=copy) == 0
    fallback = capsys.readouterr().out
    assert "rebuilds" in fallback and "dvc-ssh" in fallback
    assert transfer("pull", "team", root=copy) == 1
    stopped = capsys.readouterr().err
    assert "chosen explicitly" in stopped and "dvc-ssh" in stopped
