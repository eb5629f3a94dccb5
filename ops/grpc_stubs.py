"""Generate the Python stubs of the Open Inference Protocol's gRPC service from its .proto (`make grpc-stubs`).

    python -m ops.grpc_stubs [--check]     write them beside the .proto; --check: exit 1 if the committed ones differ

The stubs are committed: a fresh clone, the Bento and the image need no build step, and grpcio-tools (protoc)
stays out of the serving image. tests/service/test_grpc_codec.py regenerates them with the locked grpcio-tools
and compares, so they never drift from the .proto or the tools.

One change to protoc's output: the messages live in a descriptor pool of their own instead of protobuf's default
pool, because tritonclient.grpc registers the same `inference.*` names (Triton's grpc_service.proto) in the
default pool, and a client or a test must be able to import both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from iris_classifier.project.paths import ROOT

PROTO = Path("iris_classifier/serving/v2/proto/open_inference_grpc.proto")  # relative to ROOT: the import path
STUBS = ("open_inference_grpc_pb2.py", "open_inference_grpc_pb2.pyi", "open_inference_grpc_pb2_grpc.py")
DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
OWN_POOL = (
    "# A descriptor pool of its own, not protobuf's default (ops/grpc_stubs.py): tritonclient.grpc registers the\n"
    "# same `inference.*` names in the default pool, and both must import in one process.\n"
    "POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = POOL.AddSerializedFile("
)


def generate(out_dir: Path) -> dict[str, str]:
    """The stubs' file names and texts, generated from PROTO by grpcio-tools' protoc into `out_dir`."""
    from grpc_tools import protoc

    outputs = [f"--{kind}_out={out_dir}" for kind in ("python", "pyi", "grpc_python")]
    status = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", *outputs, str(ROOT / PROTO)])
    if status != 0:
        raise SystemExit(f"grpc-stubs: protoc failed on {PROTO} (exit {status})")
    texts = {name: (out_dir / PROTO.parent / name).read_text() for name in STUBS}
    if texts[STUBS[0]].count(DEFAULT_POOL) != 1:
        raise SystemExit(f"grpc-stubs: protoc's output no longer has one `{DEFAULT_POOL}`: update ops/grpc_stubs.py")
    texts[STUBS[0]] = texts[STUBS[0]].replace(DEFAULT_POOL, OWN_POOL)
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed stubs; write nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        texts = generate(Path(scratch))
    folder = ROOT / PROTO.parent
    if args.check:
        stale = [name for name, text in texts.items() if (folder / name).read_text() != text]
        if stale:
            sys.exit(f"grpc-stubs: {', '.join(stale)} differ from what {PROTO} generates: run `make grpc-stubs`")
        print("grpc-stubs: the committed stubs are what the .proto generates")
        return
    for name, text in texts.items():
        (folder / name).write_text(text)
    print(f"grpc-stubs: wrote {', '.join(STUBS)} in {folder.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
