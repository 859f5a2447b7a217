"""A competition-layout data set with synthetic masks drawn on real photos (build) and the mask
renderer (mask_render)."""
