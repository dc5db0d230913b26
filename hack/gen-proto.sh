#!/usr/bin/env bash
# Generate the Python CRI bindings from api/cri/runtime/v1/api.proto, and those of the
# containerd shim v2 task API cri-py speaks to VM runtimes from api/shimv2/, into cri_py/api/
# (or into the directory given as $1, which the drift test uses).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/cri_py/api}
python=${PYTHON:-$here/.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m grpc_tools.protoc -I "$here/api/cri" --python_out="$tmp" --pyi_out="$tmp" \
    --grpc_python_out="$tmp" "$here/api/cri/runtime/v1/api.proto"
mkdir -p "$out"
# protoc names the module after the proto path (runtime.v1.api_pb2); the package lives at cri_py.api.
sed -e 's/^from runtime\.v1 import api_pb2/from cri_py.api import api_pb2/' \
    "$tmp/runtime/v1/api_pb2_grpc.py" > "$out/api_pb2_grpc.py"
cp "$tmp/runtime/v1/api_pb2.py" "$tmp/runtime/v1/api_pb2.pyi" "$out/"
"$python" -m grpc_tools.protoc -I "$here/api/shimv2" --python_out="$tmp" --pyi_out="$tmp" \
    "$here/api/shimv2/containerd/task/v2/shim.proto"
cp "$tmp/containerd/task/v2/shim_pb2.py" "$out/shimv2_pb2.py"
cp "$tmp/containerd/task/v2/shim_pb2.pyi" "$out/shimv2_pb2.pyi"
[ -f "$out/__init__.py" ] || printf '"""Generated CRI v1 bindings (hack/gen-proto.sh); do not edit."""\n' > "$out/__init__.py"
