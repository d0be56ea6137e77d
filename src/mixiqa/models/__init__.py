"""Models: backbones, heads and the per-dataset score mappers.

Submodules are imported where they are used (``from mixiqa.models.mappers import
create_mapper``); importing this package loads nothing heavy.
"""
