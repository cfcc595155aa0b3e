"""CTF (coarse-to-fine token prediction, arXiv 2503.16194): codebook clusters, coarse labels, refiner sampling.

The AR model predicts each token's cluster (coarse label) with the ordinary Layout and decode loop; one
bidirectional refiner pass (`argen.model.refiner`) then predicts every fine token from the coarse map.
"""

from argen.ctf.cluster import METHODS, Clustering, cluster_codebook, cluster_sizes
from argen.ctf.table import CoarseTable, cluster_tokenizer, load_table, save_table

__all__ = ["METHODS", "Clustering", "CoarseTable", "cluster_codebook", "cluster_sizes", "cluster_tokenizer",
           "load_table", "save_table"]
