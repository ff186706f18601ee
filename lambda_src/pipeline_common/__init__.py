"""Code shared by every pipeline stage; packaged into each function's asset."""
