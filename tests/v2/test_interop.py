"""tritonclient and our generated ``inference`` code in one process; reflection lists the service."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.grpc.serving import ROOT, LiveServer

OURS = "from server.grpc import inference; from server.grpc.gen import grpc_service_pb2 as ours"
THEIRS = "import tritonclient.grpc; from tritonclient.grpc import service_pb2 as theirs"
CHECK = """
request = ours.ModelInferRequest(model_name="m", id="7")
request.inputs.add(name="image", datatype="BYTES", shape=[1])
request.raw_input_contents.append(b"abc")
back = theirs.ModelInferRequest.FromString(request.SerializeToString())
assert (back.model_name, back.id, list(back.inputs[0].shape)) == ("m", "7", [1])
assert back.raw_input_contents[0] == b"abc"
assert ours.DESCRIPTOR.pool is not theirs.DESCRIPTOR.pool
print("ok")
"""


@pytest.mark.parametrize("first", ["ours", "theirs"])
def test_tritonclient_imports_beside_our_generated_code(first: str) -> None:
    imports = [OURS, THEIRS] if first == "ours" else [THEIRS, OURS]
    code = "\n".join([*imports, CHECK])
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_reflection_lists_and_describes_the_inference_service(live: LiveServer) -> None:
    with grpc.insecure_channel(live.grpc_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
        ask.append(
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService")
        )
        listed, described = list(stub.ServerReflectionInfo(iter(ask), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {"inference.GRPCInferenceService", "segformer.v1.SegmentationService"} <= names
    files = described.file_descriptor_response.file_descriptor_proto
    assert any(b"inference/grpc_service.proto" in f for f in files)
