"""SegFormer model package. Imports nothing, so ``import model.labels`` stays torch-free."""
