"""SegFormer model package (PyTorch). Imports nothing at package level."""
