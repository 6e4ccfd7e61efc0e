"""Tools beside the product: the fault script, the overhead and optimizer-memory benchmarks, the GPU check."""
