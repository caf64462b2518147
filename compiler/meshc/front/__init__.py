"""Stage front: meshc.yaml and environments/ -> merged, validated declarations."""
