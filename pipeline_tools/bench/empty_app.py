"""The floor for synth: one stack, no resources, on the same Node and CDK as the real app."""

import aws_cdk as cdk

app = cdk.App()
cdk.Stack(app, "Empty")
app.synth()
