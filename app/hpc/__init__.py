"""Small HPC facts shared by every workload: physical cores, thread caps, temp dirs, atomic writes."""
