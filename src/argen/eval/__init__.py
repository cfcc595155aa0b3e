"""Evaluation: metrics from features, feature extractors, reference statistics, sample files, HTML reports."""

from argen.config import ClassifierConfig
from argen.eval.features import Classifier, ClassifierExtractor, FeatureExtractor, load_classifier, save_classifier
from argen.eval.inception import InceptionExtractor, InceptionV3
from argen.eval.metrics import class_accuracy, fid_from_features, frechet_distance, inception_score, precision_recall
from argen.eval.npz import SampleBatch, read_image_folder, read_npz, read_samples, write_npz
from argen.eval.reference import ReferenceStatistics, compute_reference, evaluate

__all__ = [
    "Classifier",
    "ClassifierConfig",
    "ClassifierExtractor",
    "FeatureExtractor",
    "InceptionExtractor",
    "InceptionV3",
    "load_classifier",
    "save_classifier",
    "class_accuracy",
    "fid_from_features",
    "frechet_distance",
    "inception_score",
    "precision_recall",
    "SampleBatch",
    "read_image_folder",
    "read_npz",
    "read_samples",
    "write_npz",
    "ReferenceStatistics",
    "compute_reference",
    "evaluate",
]
