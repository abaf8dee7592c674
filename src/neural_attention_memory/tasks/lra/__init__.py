"""Long Range Arena data: generated ListOps and Pathfinder, readers for Text, Retrieval and Image.

All offline: ListOps and Pathfinder are generated (seeded, cached with a manifest); IMDB, AAN and
CIFAR-10 are read from files the user provides (see :mod:`.files` for the layouts).
"""

from .data import (
    PairDataset,
    TokenDataset,
    collate_pairs,
    collate_tokens,
    listops_splits,
    pathfinder_splits,
)
from .files import (
    BYTE_VOCAB_SIZE,
    MissingDataError,
    encode_bytes,
    read_aan,
    read_cifar10_grey,
    read_imdb,
)
from .listops import (
    LISTOPS_VOCAB,
    ListOpsConfig,
    encode_listops,
    evaluate_listops,
    generate_listops,
    read_listops_tsv,
    to_lra_source,
    tree_depth,
    write_listops_tsv,
)
from .pathfinder import (
    DIFFICULTIES,
    PathfinderConfig,
    connected,
    generate_pathfinder,
    read_pathfinder_release,
    sample_pathfinder,
    write_pathfinder_release,
)

__all__ = [
    "BYTE_VOCAB_SIZE",
    "DIFFICULTIES",
    "LISTOPS_VOCAB",
    "ListOpsConfig",
    "MissingDataError",
    "PairDataset",
    "PathfinderConfig",
    "TokenDataset",
    "collate_pairs",
    "collate_tokens",
    "connected",
    "encode_bytes",
    "encode_listops",
    "evaluate_listops",
    "generate_listops",
    "generate_pathfinder",
    "listops_splits",
    "pathfinder_splits",
    "read_aan",
    "read_cifar10_grey",
    "read_imdb",
    "read_listops_tsv",
    "read_pathfinder_release",
    "sample_pathfinder",
    "to_lra_source",
    "tree_depth",
    "write_listops_tsv",
    "write_pathfinder_release",
]
