"""Stage 2 of `slm prepare`: exact duplicates (same hash of normalised text) and near duplicates
(MinHash signatures, LSH bands, union-find), keeping the first copy. It works on disk, a part and a
band at a time (`DocFlags`, bucket files, a sparse union-find), so memory does not grow with the
corpus. It reads the parts through `DedupPart` and never imports the stage that writes them.
"""

from slmkit.data.dedup.dedup import DedupStats, Removal, band_pairs, deduplicate, near_duplicates
from slmkit.data.dedup.doc_flags import EXACT, KEPT, NEAR, DocFlags
from slmkit.data.dedup.exact_dedup import flag_exact_duplicates
from slmkit.data.dedup.minhash import MinHasher, estimated_jaccard, lsh_bands, lsh_shape
from slmkit.data.dedup.part import DedupPart
from slmkit.data.dedup.union_find import SparseUnionFind

__all__ = ["EXACT", "KEPT", "NEAR", "DedupPart", "DedupStats", "DocFlags", "MinHasher", "Removal", "SparseUnionFind",
           "band_pairs", "deduplicate", "estimated_jaccard", "flag_exact_duplicates", "lsh_bands", "lsh_shape",
           "near_duplicates"]
