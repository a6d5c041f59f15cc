"""One descriptor pool for server reflection: the default pool's services and the private ``inference`` one.

The generated ``inference`` code lives in its own pool (``server/grpc/gen/_inference_pool.py``, so it can
be imported beside tritonclient); reflection answers from a single pool, so this copies every served
file, with its dependencies, into a fresh one.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor


def merged_pool(*files: FileDescriptor) -> descriptor_pool.DescriptorPool:
    """A new pool holding ``files`` and everything they import (each file once)."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
        added.add(file.name)

    for file in files:
        add(file)
    return pool
