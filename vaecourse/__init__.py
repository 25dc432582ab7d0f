"""vaecourse: the toolbox behind the course's notebooks on variational autoencoders."""

# cpu_kernels comes first: it picks torch's CPU kernels before any of them runs (see its docstring)
from . import cpu_kernels, plots, widgets  # so vc.plots / vc.widgets work after `import vaecourse as vc`
from .checkpoints import load_checkpoint, save_checkpoint
from .config import PROFILES, ProfileError, by_profile, pick_device, resolve_profile, seed_everything
from .data import DataNotFoundError, ImageData, available_datasets, load_dataset, train_val_split
from .history import History, NonFiniteLossError, TrainingInterrupted
from .results import CheckFailed, Lesson, start_lesson
from .train import evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "cpu_kernels", "plots", "widgets",
    "PROFILES", "ProfileError", "by_profile", "pick_device", "resolve_profile", "seed_everything",
    "DataNotFoundError", "ImageData", "available_datasets", "load_dataset", "train_val_split",
    "CheckFailed", "Lesson", "start_lesson",
    "History", "NonFiniteLossError", "TrainingInterrupted", "evaluate", "fit", "load_checkpoint", "save_checkpoint",
]
