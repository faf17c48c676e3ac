"""Builds the package and generates its gRPC stubs (framelane/v1/telemetry_pb2*.py) from the
repository's proto/ directory, so the SDK always speaks the daemon's current API."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent / "proto"
PROTO = PROTO_ROOT / "framelane" / "v1" / "telemetry.proto"


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        if not PROTO.is_file():
            raise SystemExit(f"framelane SDK: {PROTO} not found; build from a framelane checkout")
        from grpc_tools import protoc
        import grpc_tools

        out = Path(self.build_lib)
        includes = Path(grpc_tools.__file__).parent / "_proto"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{includes}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                f"--pyi_out={out}",
                str(PROTO),
            ]
        )
        if status != 0:
            raise SystemExit(f"framelane SDK: protoc failed on {PROTO} (status {status})")
        (out / "framelane" / "v1" / "__init__.py").touch()


setup(cmdclass={"build_py": BuildWithStubs})
