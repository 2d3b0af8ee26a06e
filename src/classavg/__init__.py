"""classavg: fast, accurate cryo-EM 2D class averaging.

The data flow (see the README): an :class:`ImageSource` of particles -> a ``Class2D``
classifier -> a ``ClassSelector`` -> an ``Averager2D`` -> a ``ClassAvgSource`` of class
averages and RELION-ready outputs.
"""

from ._progress import set_progress
from ._version import __version__
from .basis import FourierBesselBasis2D
from .classification import Class2D, RIRClass2D, SteerablePCA
from .io import (DataError, DataFileNotFoundError, RelionSource, StackError, StarFileError,
                 dataset_summary, save_source)
from ._tags import Tags, get_tags
from .averaging import (AligningAverager2D, AlignmentResult, Averager2D, BFRAverager2D,
                        BFSRAverager2D, BFSReddyChatterjiAverager2D, EMAverager2D,
                        FTKAverager2D, ImageStacker,
                        MeanImageStacker, MedianImageStacker, ReddyChatterjiAverager2D,
                        SigmaRejectionImageStacker, WinsorizedImageStacker)
from .pipeline import (ClassAvgSource, DebugClassAvgSource, DefaultClassAvgSource,
                       run_classavg)
from .report import write_report
from .selection import (BandedSNRImageQualityFunction, BandpassImageQualityFunction,
                        BumpWeightedImageQualityMixin,
                        BumpWeightedVarianceImageQualityFunction, ClassSelector,
                        DistanceClassSelector, DistanceWithRepulsionClassSelector,
                        GlobalClassSelector, GlobalWithRepulsionClassSelector,
                        GreedyClassRepulsionMixin, ImageQualityFunction,
                        NeighborVarianceClassSelector,
                        NeighborVarianceWithRepulsionClassSelector, RandomClassSelector,
                        RandomWithRepulsionClassSelector, RampWeightedImageQualityMixin,
                        RampWeightedVarianceImageQualityFunction, TopClassSelector,
                        TopWithRepulsionClassSelector, VarianceImageQualityFunction,
                        WeightedImageQualityMixin)
from .sources import (ArrayImageSource, GaussianBlobVolume, ImageSource, Simulation,
                      SourceChain, default_volume, evaluate_ctf, load_volume, resolve_chain,
                      simulate_dataset)

__all__ = [
    "__version__",
    "set_progress",
    # sources and I/O
    "ImageSource",
    "ArrayImageSource",
    "RelionSource",
    "save_source",
    "dataset_summary",
    "evaluate_ctf",
    "Simulation",
    "simulate_dataset",
    "GaussianBlobVolume",
    "default_volume",
    "load_volume",
    "DataError",
    "DataFileNotFoundError",
    "StackError",
    "StarFileError",
    # basis and classification
    "FourierBesselBasis2D",
    "Class2D",
    "RIRClass2D",
    "SteerablePCA",
    # averaging
    "Averager2D",
    "AligningAverager2D",
    "AlignmentResult",
    "BFRAverager2D",
    "BFSRAverager2D",
    "ReddyChatterjiAverager2D",
    "BFSReddyChatterjiAverager2D",
    "FTKAverager2D",
    "EMAverager2D",
    "Tags",
    "get_tags",
    "SourceChain",
    "resolve_chain",
    "ImageStacker",
    "MeanImageStacker",
    "MedianImageStacker",
    "SigmaRejectionImageStacker",
    "WinsorizedImageStacker",
    # selection
    "ClassSelector",
    "TopClassSelector",
    "RandomClassSelector",
    "NeighborVarianceClassSelector",
    "DistanceClassSelector",
    "GreedyClassRepulsionMixin",
    "TopWithRepulsionClassSelector",
    "RandomWithRepulsionClassSelector",
    "NeighborVarianceWithRepulsionClassSelector",
    "DistanceWithRepulsionClassSelector",
    "GlobalClassSelector",
    "GlobalWithRepulsionClassSelector",
    "ImageQualityFunction",
    "VarianceImageQualityFunction",
    "BandedSNRImageQualityFunction",
    "BandpassImageQualityFunction",
    "WeightedImageQualityMixin",
    "RampWeightedImageQualityMixin",
    "BumpWeightedImageQualityMixin",
    "RampWeightedVarianceImageQualityFunction",
    "BumpWeightedVarianceImageQualityFunction",
    # pipeline and outputs
    "ClassAvgSource",
    "DebugClassAvgSource",
    "DefaultClassAvgSource",
    "run_classavg",
    "write_report",
]
