"""Reading and writing field data: the data model of :mod:`physml.datasets.store` and
PDEBench's layouts (:mod:`physml.datasets.pdebench`), and fields on meshes
(:mod:`physml.datasets.mesh_store`), under one name."""

from .datasets.mesh_store import mesh_dataset as mesh_dataset
from .datasets.mesh_store import mesh_of as mesh_of
from .datasets.mesh_store import read_mesh_dataset as read_mesh_dataset
from .datasets.pdebench import read_pdebench as read_pdebench
from .datasets.pdebench import write_pdebench as write_pdebench
from .datasets.store import open_dataset as open_dataset
from .datasets.store import samples_dataset as samples_dataset
from .datasets.store import trajectory_dataset as trajectory_dataset
from .datasets.store import with_cf_metadata as with_cf_metadata
from .datasets.store import write_dataset as write_dataset
