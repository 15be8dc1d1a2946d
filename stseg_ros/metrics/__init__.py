"""Benchmark metrics: ScanNet instance AP, ReScene4D t-mAP, change detection, registration."""
