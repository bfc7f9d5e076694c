"""Data sets the audit reads (see :mod:`audit.data.source`)."""

from audit.data.source import FaceItem, face_items, face_source

__all__ = ["FaceItem", "face_items", "face_source"]
