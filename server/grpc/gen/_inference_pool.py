"""The private descriptor pool of package ``inference`` (scripts/gen_proto.py)."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
