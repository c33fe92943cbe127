"""The bundled case files, shipped as package data of ``physml.case_files``: ``physml cases``
lists them and ``physml run NAME`` runs one by name."""
