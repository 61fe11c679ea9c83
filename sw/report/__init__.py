"""Human-facing outputs: overlay images and summaries."""
