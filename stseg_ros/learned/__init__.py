"""Learned 4D semantic instance segmentation (model, data, training, inference)."""
