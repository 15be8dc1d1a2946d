"""The long-term mapper's stages over plain arrays: fusion, registration,
segmentation, association and change detection."""
