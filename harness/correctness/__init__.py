"""Is it right: the tolerance policy, the sampled rows, judging a row, the gate,
pairwise agreement and the check grid."""
