"""AWS CDK v2 constructs for cost-optimized serverless pipelines.

Each construct lives in the module named for it: ``constructs_lib.optimized_function``
(``OptimizedFunction``), ``constructs_lib.monitoring`` (``PipelineMonitoring``),
``constructs_lib.alarm_topic`` (``AlarmTopic``), ``constructs_lib.release_probe``
(``ReleaseProbe``), ``constructs_lib.scaling_pause`` (``ScalingPause``),
``constructs_lib.scheduled_function`` (``ScheduledFunction``), ``constructs_lib.data_table``
(``DataTable``) and ``constructs_lib.dead_letter_queue`` (``DeadLetterQueue``).
"""

#: The distribution's version (``lib/pyproject.toml``; semantic versioning, see CHANGELOG.md).
__version__ = "0.1.0"
