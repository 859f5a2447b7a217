"""The networks at inference, shared by `train` and `monitor`: labels, the model contract, the face
detector and crop, and the classifier backends. Importing this package loads no heavy runtime."""

from engines.backends.base import Engine
from engines.contract import ModelFileError, ModelMeta
from engines.errors import UserError
from engines.faces import Face, FaceDetector, crop_box, crop_face
from engines.formats import FORMATS, ModelFormat, format_for, load_engine, read_meta

__all__ = [
    "FORMATS",
    "Engine",
    "Face",
    "FaceDetector",
    "ModelFileError",
    "ModelFormat",
    "ModelMeta",
    "UserError",
    "crop_box",
    "crop_face",
    "format_for",
    "load_engine",
    "read_meta",
]
