"""Production's pods with a staged version as their shadow: the image built, published and deployed (docs/shadow.md).

python -m ops.shadow_deploy VERSION --dry-run   the plan, and build/k8s/production.yaml as the deploy would apply it
python -m ops.shadow_deploy VERSION             build production's image carrying VERSION's model at production's
                                                commit, publish it (REGISTRY, SIGN_KEY), deploy production with
                                                IRIS_SHADOW=VERSION (SIGN_PUBKEY, KUBECONFIG; ops.k8s.deploy)

A pod has no registry and no DVC, so the image must carry the shadow model, and it must serve what production
holds: it is built from production's commit (a git worktree of it), never from the checkout this runs in.
Its tags: iris-classifier:<production commit>-shadow-vS here, <registry>/iris-classifier:vP-shadow-vS pushed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from iris_classifier.project.paths import ROOT
from iris_classifier.registry.stage_model import StageModelError, resolve
from ops import k8s, publish
from ops.image import inspect as inspect_image

IMAGE = os.environ.get("IMAGE", "iris-classifier")
SOURCE = ROOT / "build" / "shadow-source"  # the worktree of production's commit, removed after the build


class ShadowDeployRefused(SystemExit):
    """Nothing was built, pushed or applied; the message says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"deploy-shadow: refused: {detail}")


@dataclass(frozen=True)
class ShadowDeploy:
    """Production's version and commit, and the version its pods are to shadow."""

    production_version: str  # vX.Y.Z
    production_commit: str
    shadow_version: str  # vX.Y.Z

    @property
    def local_image(self) -> str:
        """What `make image SHADOW=...` builds at production's commit (ops.image.build)."""
        return f"{IMAGE}:{self.production_commit}-shadow-{self.shadow_version}"

    @property
    def published_tag(self) -> str:
        return f"{self.production_version}-shadow-{self.shadow_version}"


def plan(version: str, root: Path = ROOT) -> ShadowDeploy:
    if not version:
        raise ShadowDeployRefused("name the version to shadow: make deploy-shadow VERSION=x.y.z")
    try:
        production_version, production_commit, _ = resolve("production", root)
        shadow_version, _, _ = resolve(version, root)
    except StageModelError as error:
        raise ShadowDeployRefused(f"{error}; a shadow runs beside the version production holds") from None
    if shadow_version == production_version:
        raise ShadowDeployRefused(f"{shadow_version} is what production holds; there is nothing to compare")
    return ShadowDeploy(production_version, production_commit, shadow_version)


def render(deploy: ShadowDeploy, *, registry: str | None, record: Path, out_dir: Path) -> Path:
    """The production manifest the deploy applies: the published image (by digest once recorded), IRIS_SHADOW set."""
    return k8s.render(
        "production", tag=deploy.published_tag, registry=registry, record=record, out_dir=out_dir,
        shadow=deploy.shadow_version,
    )  # fmt: skip


def git(*args: str, cwd: Path = ROOT) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True)


def dvc_config_local() -> str:
    """A worktree's .dvc/config.local: this checkout's DVC cache, and the `local` remote where this checkout's
    config puts it (its URL is relative to the config file)."""
    cache = subprocess.run([k8s.tool("dvc"), "cache", "dir"], cwd=ROOT, capture_output=True, text=True, check=True)
    local_remote = (ROOT / ".dvc-remote").resolve()
    return f"[cache]\n    dir = {cache.stdout.strip()}\n['remote \"local\"']\n    url = {local_remote}\n"


def build(deploy: ShadowDeploy, *, dvc_remote: str) -> str:
    """`make image SHADOW=vS` at production's commit, in a worktree of it with its DVC outputs pulled."""
    if SOURCE.exists():
        git("worktree", "remove", "--force", str(SOURCE))
    git("worktree", "add", "--detach", "--quiet", str(SOURCE), deploy.production_commit)
    try:
        (SOURCE / ".dvc" / "config.local").write_text(dvc_config_local())
        subprocess.run([k8s.tool("dvc"), "pull", "--quiet", "-r", dvc_remote], cwd=SOURCE, check=True)
        # this venv's interpreter, the worktree's code: `-m` puts the working directory first on sys.path
        command = [sys.executable, "-m", "ops.image", "build", "--shadow", deploy.shadow_version]
        subprocess.run(command, cwd=SOURCE, check=True)
    finally:
        git("worktree", "remove", "--force", str(SOURCE))
    labels = inspect_image(deploy.local_image)["Config"]["Labels"] or {}
    if labels.get("ai.iris.model.registry_version") != deploy.production_version:
        raise ShadowDeployRefused(
            f"{deploy.local_image} names registry version {labels.get('ai.iris.model.registry_version')!r}, "
            f"not production's {deploy.production_version}"
        )
    return deploy.local_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", nargs="?", default="", help="the version to shadow: x.y.z (the staged one)")
    parser.add_argument("--registry", default=os.environ.get("REGISTRY") or None)
    parser.add_argument("--sign-key", default=os.environ.get("SIGN_KEY") or None, help="the signing key (a file)")
    parser.add_argument("--pubkey", default=os.environ.get("SIGN_PUBKEY") or None, help="its public half (a file)")
    parser.add_argument("--dvc-remote", default="local", help="where production's DVC outputs are pulled from")
    parser.add_argument("--record", type=Path, default=Path(os.environ.get("IMAGE_RECORD") or publish.RECORD))
    parser.add_argument("--out-dir", type=Path, default=k8s.BUILD, help="where production.yaml goes (build/k8s)")
    parser.add_argument("--dry-run", action="store_true", help="the plan and the render only: nothing built or sent")
    args = parser.parse_args(argv)

    deploy = plan(args.version)
    print(
        f"deploy-shadow: production {deploy.production_version} (commit {deploy.production_commit[:12]}) with "
        f"{deploy.shadow_version} as its shadow: {deploy.local_image} -> "
        f"{k8s.image_reference(deploy.published_tag, args.registry)}"
    )
    if args.dry_run:
        path = render(deploy, registry=args.registry, record=args.record, out_dir=args.out_dir)
        print(f"deploy-shadow: dry run: wrote {path}; nothing built, pushed or applied")
        return 0
    # Refused before a build of several minutes: k8s.deploy would refuse all three after it.
    for value, name in ((args.registry, "REGISTRY"), (args.sign_key, "SIGN_KEY"), (args.pubkey, "SIGN_PUBKEY")):
        if not value:
            raise ShadowDeployRefused(f"{name} is empty: a deploy pulls a signed image from a registry by digest")
    if shutil.which("docker") is None:
        raise ShadowDeployRefused("no docker client; run `make docker-engine`")
    built = build(deploy, dvc_remote=args.dvc_remote)
    to = publish.target(k8s.image_reference(deploy.published_tag, args.registry), what="deploy-shadow")
    passphrase = os.environ.get("SIGN_PASSPHRASE_FILE") or None
    done = publish.publish(
        built, to, record=args.record, sign_key=Path(args.sign_key), registry=args.registry,
        passphrase_file=Path(passphrase) if passphrase else None,
    )  # fmt: skip
    print(f"deploy-shadow: pushed {to} ({done.digest}), signed by {done.signed_by}; record {args.record}")
    k8s.deploy(
        "production", tag=deploy.published_tag, registry=args.registry, public_key=Path(args.pubkey),
        record=args.record, out_dir=args.out_dir, shadow=deploy.shadow_version,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
