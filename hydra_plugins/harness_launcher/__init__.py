"""The batched launcher plugin of mtl-harness."""
