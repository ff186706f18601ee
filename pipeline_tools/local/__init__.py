"""Deploy the stack with the real CDK CLI into a local AWS emulator (moto) and drive records
through the deployed code. No AWS account, no Docker: see
``python -m pipeline_tools.local --help``."""
