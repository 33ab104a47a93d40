"""GQN datasets in DeepMind's TFRecord format, read in place without TensorFlow.

from gqn.data import read_scenes, write_scenes, SceneDataset, make_loader, model_inputs
"""

from gqn.data.batches import ViewSampler, make_loader, model_inputs, view_inputs, viewpoints
from gqn.data.dataset import SceneDataset
from gqn.data.layout import discover, find_split
from gqn.data.scenes import EncodedScene, Scene, read_scenes, write_scenes
from gqn.data.table import DATASETS, DatasetInfo, get_dataset

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "EncodedScene",
    "Scene",
    "SceneDataset",
    "ViewSampler",
    "discover",
    "find_split",
    "get_dataset",
    "make_loader",
    "model_inputs",
    "read_scenes",
    "view_inputs",
    "viewpoints",
    "write_scenes",
]
