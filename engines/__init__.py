"""The networks at inference, shared by `train` and `monitor`: labels, the model contract, the face
detector and crop, and the classifier backends. Importing this package loads no heavy runtime."""
from engines.backends import Engine, load_engine
from engines.contract import FORMATS, ModelFileError, ModelMeta, format_for, read_meta
from engines.errors import UserError
from engines.faces import Face, FaceDetector, crop_box, crop_face

__all__ = ["Engine", "load_engine", "FORMATS", "ModelFileError", "ModelMeta", "format_for", "read_meta",
           "UserError", "Face", "FaceDetector", "crop_box", "crop_face"]
