"""Evolving-room benchmark: procedural rooms revisited over time, rendered or
sampled into scans, with ground truth in the prediction format."""
