"""From files to batches: datasets, splits, the input pipeline, batch plans, input statistics."""
