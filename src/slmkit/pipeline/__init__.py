"""`slm pipeline`: raw text to an evaluated, aligned, quantized model behind a live API, with its report.

    from slmkit.pipeline import read_pipeline_config, run_pipeline
    state = run_pipeline(read_pipeline_config("configs/capstone/cpu.yaml"))
"""

from slmkit.pipeline.config import PipelineConfig, read_pipeline_config
from slmkit.pipeline.runner import StageFailed, plan_pipeline, run_pipeline
from slmkit.pipeline.stages import STAGE_NAMES, STAGES

__all__ = ["PipelineConfig", "read_pipeline_config", "run_pipeline", "plan_pipeline", "StageFailed", "STAGES",
           "STAGE_NAMES"]
