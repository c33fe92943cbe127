"""Reading and writing field data: the data model of :mod:`physml.datasets.store` and
PDEBench's layouts (:mod:`physml.datasets.pdebench`), under one name."""

from .datasets.pdebench import read_pdebench as read_pdebench
from .datasets.pdebench import write_pdebench as write_pdebench
from .datasets.store import open_dataset as open_dataset
from .datasets.store import samples_dataset as samples_dataset
from .datasets.store import trajectory_dataset as trajectory_dataset
from .datasets.store import with_cf_metadata as with_cf_metadata
from .datasets.store import write_dataset as write_dataset
