"""The pipeline's stages, and how a synthesized template says which function is which.

Plain data, no CDK: the stack labels each stage's function with it, and the tools that read a
synthesized template (``pipeline_tools/template.py``) find the stages by that label rather than
by parsing handler strings.
"""

from __future__ import annotations

#: The stages, in pipeline order.
STAGES = ("validator", "enricher", "processor")

#: CloudFormation ``Metadata`` key on each stage's ``AWS::Lambda::Function``: the stage name.
STAGE_METADATA_KEY = "pipeline:stage"

#: ``Metadata`` key on a function that serves the pipeline without being a stage (the scaling
#: pause of a deployment): the tools that read a template leave it out of the stages.
SUPPORT_METADATA_KEY = "pipeline:support"
