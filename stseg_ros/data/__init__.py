"""Data files shipped with stseg_ros."""
