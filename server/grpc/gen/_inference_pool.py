"""The descriptor pool of the generated ``inference`` package (scripts/gen_proto.py). Do not edit."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
