"""CTF (coarse-to-fine token prediction, arXiv 2503.16194): codebook clusters, coarse labels, refiner sampling.

The AR model predicts each token's cluster (coarse label) with the ordinary Layout and decode loop; one
bidirectional refiner pass (`argen.model.refiner`) then predicts every fine token from the coarse map.
`cluster.py` partitions a codebook, `table.py` is the fine -> coarse table file, `sample.py` the two stages.
"""
