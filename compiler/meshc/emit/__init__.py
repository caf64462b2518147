"""Stage emit: artifacts -> the bundle files of one environment, and the atomic writer."""
