"""The class-averaging pipeline: ClassAvgSource, presets, outputs, one-call runs."""

from .outputs import particle_partition, read_class_table, write_outputs
from .presets import PRESETS, Preset, get_preset, latest_preset, list_presets
from .run import prepare_source, run_classavg
from .select import select_classes
from .source import ClassAvgSource, DebugClassAvgSource, DefaultClassAvgSource

__all__ = ["ClassAvgSource", "DebugClassAvgSource", "DefaultClassAvgSource", "PRESETS",
           "Preset", "get_preset", "latest_preset", "list_presets", "run_classavg",
           "prepare_source", "write_outputs", "read_class_table", "particle_partition",
           "select_classes"]
