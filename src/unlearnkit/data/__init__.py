"""Datasets, their in-memory views, and forget splits."""
from .datasets import DATASETS, DatasetSpec, from_torch, load_dataset
from .images import Augment, DataView, ImageDataset
from .splits import ForgetSplit, make_split, oracle_split

__all__ = ["DATASETS", "DatasetSpec", "from_torch", "load_dataset", "Augment", "DataView", "ImageDataset",
           "ForgetSplit", "make_split", "oracle_split"]
