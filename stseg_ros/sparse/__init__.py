"""Sparse voxel tensors and sparse convolution in plain PyTorch (CPU and CUDA)."""
