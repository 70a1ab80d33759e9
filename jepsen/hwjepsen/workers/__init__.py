"""Client processes of the queue workload, one per library."""
